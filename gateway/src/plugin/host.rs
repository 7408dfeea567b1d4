//! The host side of the plugin interface: per-call store state and the
//! functions plugins import (config lookup, logging, crypto, time).
//!
//! Crypto is RustCrypto, run natively: faster than the same code in wasm and
//! one audited implementation for every plugin. Nothing here touches the
//! network or the filesystem.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, HashAlgorithm, Level};
use super::limits::MemoryLimiter;

/// Longest log line a plugin may write; the rest is cut so a plugin cannot
/// flood the gateway's log.
const MAX_LOG_LINE: usize = 4096;

/// A plugin's `with:` block, prepared once per config generation so calls
/// only clone an `Arc`.
#[derive(Debug, Default)]
pub struct PluginConfig {
    json: String,
    map: serde_json::Map<String, Value>,
}

impl PluginConfig {
    /// Prepares a `with:` block (an object, or nothing).
    pub fn new(with: Option<&serde_json::Map<String, Value>>) -> Self {
        let map = with.cloned().unwrap_or_default();
        PluginConfig {
            json: Value::Object(map.clone()).to_string(),
            map,
        }
    }
}

/// Who is calling: plugin name, route and the route's `with:` block.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// Plugin name, for logs and metrics.
    pub plugin: Arc<str>,
    /// Route id, for logs.
    pub route: Arc<str>,
    /// The `with:` block.
    pub config: Arc<PluginConfig>,
    /// Deadline and memory cap of this use of the plugin.
    pub limits: super::PluginLimits,
}

/// Everything one plugin call's `Store` holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    ctx: CallContext,
}

impl CallState {
    pub(super) fn new(ctx: CallContext, memory_limit: usize) -> Self {
        // Deny by default: no preopened directories, no environment, no
        // arguments, no sockets, no name lookups, stdio closed.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            ctx,
        }
    }
}

impl CallState {
    /// The limits this call runs under.
    pub(super) fn limits(&self) -> super::PluginLimits {
        self.ctx.limits
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::types::Host for CallState {}

impl bindings::Host for CallState {
    fn config(&mut self) -> String {
        self.ctx.config.json.clone()
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        match self.ctx.config.map.get(&key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    }

    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &*self.ctx.plugin;
        let route = &*self.ctx.route;
        match level {
            Level::Trace => tracing::trace!(target: "hookgate::plugin", plugin, route, "{message}"),
            Level::Debug => tracing::debug!(target: "hookgate::plugin", plugin, route, "{message}"),
            Level::Info => tracing::info!(target: "hookgate::plugin", plugin, route, "{message}"),
            Level::Warn => tracing::warn!(target: "hookgate::plugin", plugin, route, "{message}"),
            Level::Error => tracing::error!(target: "hookgate::plugin", plugin, route, "{message}"),
        }
    }

    fn hmac(&mut self, algorithm: HashAlgorithm, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        hmac_of(algorithm, &key, &data)
    }

    fn hmac_verify(
        &mut self,
        algorithm: HashAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
        expected: Vec<u8>,
    ) -> bool {
        constant_time_eq(&hmac_of(algorithm, &key, &data), &expected)
    }

    fn digest(&mut self, algorithm: HashAlgorithm, data: Vec<u8>) -> Vec<u8> {
        match algorithm {
            HashAlgorithm::Sha1 => Sha1::digest(&data).to_vec(),
            HashAlgorithm::Sha256 => Sha256::digest(&data).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(&data).to_vec(),
        }
    }

    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        constant_time_eq(&a, &b)
    }

    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }
}

/// HMAC with any supported hash. Keys of any length are valid for HMAC, so
/// `new_from_slice` cannot fail.
pub fn hmac_of(algorithm: HashAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HashAlgorithm::Sha1 => mac::<Hmac<Sha1>>(key, data),
        HashAlgorithm::Sha256 => mac::<Hmac<Sha256>>(key, data),
        HashAlgorithm::Sha512 => mac::<Hmac<Sha512>>(key, data),
    }
}

/// Constant time for equal lengths; unequal lengths are not secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_githubs_published_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let mac = hmac_of(
            HashAlgorithm::Sha256,
            b"It's a Secret to Everybody",
            b"Hello, World!",
        );
        assert_eq!(
            hex::encode(mac),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn unequal_lengths_are_not_equal() {
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
