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

use super::bindings;
use super::bindings::v1::hookgate::plugin::host as v1h;
use super::bindings::v2::hookgate::plugin::host as v2h;
use super::bindings::v2::hookgate::plugin::http as v2http;
use super::bindings::v2::hookgate::plugin::types as v2types;
use super::limits::MemoryLimiter;
use super::warm::WarmPool;

/// Longest log line a plugin may write; the rest is cut so a plugin cannot
/// flood the gateway's log.
const MAX_LOG_LINE: usize = 4096;

/// Log lines one call may write. A verify or transform has a handful to
/// say; a plugin logging in a loop would otherwise flood the log with
/// attacker-triggered lines.
const MAX_LOG_LINES: u32 = 32;

/// The hash functions plugins may use, whatever WIT version they speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

/// A plugin's `with:` block, prepared once per config generation so calls
/// only clone an `Arc`.
///
/// It is also where the use keeps its warm instances (see [`warm`]): one
/// `PluginConfig` per use of a plugin, so instances that may have cached
/// something of this block never serve another.
///
/// [`warm`]: super::warm
#[derive(Debug, Default)]
pub struct PluginConfig {
    json: String,
    map: serde_json::Map<String, Value>,
    pub(super) warm: WarmPool,
}

impl PluginConfig {
    /// Prepares a `with:` block (an object, or nothing) for a use of a
    /// plugin whose calls reuse warm instances.
    pub fn new(with: Option<&serde_json::Map<String, Value>>) -> Self {
        let map = with.cloned().unwrap_or_default();
        PluginConfig {
            json: Value::Object(map.clone()).to_string(),
            map,
            warm: WarmPool::default(),
        }
    }

    /// Like [`new`](Self::new), for calls that each get a fresh instance
    /// (one-off calls, and measuring the fresh-instance path).
    pub fn single_use(with: Option<&serde_json::Map<String, Value>>) -> Self {
        PluginConfig {
            warm: WarmPool::off(),
            ..Self::new(with)
        }
    }

    /// Instances this use keeps warm right now.
    pub fn warm_instances(&self) -> usize {
        self.warm.parked()
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
    /// Outbound HTTP for this use of the plugin; `None` (the default) is off.
    pub http: Option<Arc<crate::delivery::plugin_http::PluginHttp>>,
}

/// Everything one plugin call's `Store` holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    ctx: CallContext,
    log_lines: u32,
    random_bytes: u64,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(super::limits::MAX_RESOURCES);
        CallState {
            wasi,
            table,
            limiter: MemoryLimiter::new(memory_limit),
            ctx,
            log_lines: 0,
            random_bytes: 0,
        }
    }
}

impl CallState {
    /// The limits this call runs under.
    pub(super) fn limits(&self) -> super::PluginLimits {
        self.ctx.limits
    }

    /// Readies a warm instance's state for its next call: this call's
    /// context, memory cap and fresh per-call budgets. The memory in use
    /// stays: it is the instance's.
    pub(super) fn begin(&mut self, ctx: CallContext, memory_limit: usize) {
        self.ctx = ctx;
        self.limiter.renew(memory_limit);
        self.log_lines = 0;
        self.random_bytes = 0;
    }

    /// Lets go of the call's context before the instance is parked: the
    /// parked store lives in the context's [`PluginConfig`], which must
    /// not hold itself alive.
    pub(super) fn park(&mut self) {
        static PARKED: std::sync::OnceLock<Arc<PluginConfig>> = std::sync::OnceLock::new();
        let config = PARKED
            .get_or_init(|| Arc::new(PluginConfig::single_use(None)))
            .clone();
        self.ctx.config = config;
        self.ctx.http = None;
    }

    /// Linear memory the instance uses now, summed over its memories.
    pub(super) fn memory_used(&self) -> usize {
        self.limiter.used()
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

impl CallState {
    fn config_json(&self) -> String {
        self.ctx.config.json.clone()
    }

    fn config_value(&self, key: &str) -> Option<String> {
        match self.ctx.config.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    }

    /// One plugin log line: newlines escaped so a plugin cannot forge
    /// lines of the gateway's log, cut at [`MAX_LOG_LINE`], and at most
    /// [`MAX_LOG_LINES`] per call (the rest are counted, and the count is
    /// logged once).
    fn log_line(&mut self, level: tracing::Level, message: &str) {
        self.log_lines += 1;
        let plugin = &*self.ctx.plugin;
        let route = &*self.ctx.route;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(target: "hookgate::plugin", plugin, route, "plugin logged more than {MAX_LOG_LINES} lines in one call; dropping the rest");
            }
            return;
        }
        let message = escape_log(message);
        match level {
            tracing::Level::TRACE => {
                tracing::trace!(target: "hookgate::plugin", plugin, route, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "hookgate::plugin", plugin, route, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "hookgate::plugin", plugin, route, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "hookgate::plugin", plugin, route, "{message}")
            }
            tracing::Level::ERROR => {
                tracing::error!(target: "hookgate::plugin", plugin, route, "{message}")
            }
        }
    }
}

/// `message` with control characters escaped (`\n`, `\r`, `\u{1b}`, ...)
/// and cut at [`MAX_LOG_LINE`] bytes.
fn escape_log(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LOG_LINE) + 8);
    for c in message.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn level_v1(level: v1h::Level) -> tracing::Level {
    match level {
        v1h::Level::Trace => tracing::Level::TRACE,
        v1h::Level::Debug => tracing::Level::DEBUG,
        v1h::Level::Info => tracing::Level::INFO,
        v1h::Level::Warn => tracing::Level::WARN,
        v1h::Level::Error => tracing::Level::ERROR,
    }
}

fn level_v2(level: v2h::Level) -> tracing::Level {
    match level {
        v2h::Level::Trace => tracing::Level::TRACE,
        v2h::Level::Debug => tracing::Level::DEBUG,
        v2h::Level::Info => tracing::Level::INFO,
        v2h::Level::Warn => tracing::Level::WARN,
        v2h::Level::Error => tracing::Level::ERROR,
    }
}

fn hash_v1(a: v1h::HashAlgorithm) -> HashAlgorithm {
    match a {
        v1h::HashAlgorithm::Sha1 => HashAlgorithm::Sha1,
        v1h::HashAlgorithm::Sha256 => HashAlgorithm::Sha256,
        v1h::HashAlgorithm::Sha512 => HashAlgorithm::Sha512,
    }
}

fn hash_v2(a: v2h::HashAlgorithm) -> HashAlgorithm {
    match a {
        v2h::HashAlgorithm::Sha1 => HashAlgorithm::Sha1,
        v2h::HashAlgorithm::Sha256 => HashAlgorithm::Sha256,
        v2h::HashAlgorithm::Sha512 => HashAlgorithm::Sha512,
    }
}

impl bindings::v1::hookgate::plugin::types::Host for CallState {}
impl bindings::v2::hookgate::plugin::types::Host for CallState {}

impl v1h::Host for CallState {
    fn config(&mut self) -> String {
        self.config_json()
    }
    fn config_get(&mut self, key: String) -> Option<String> {
        self.config_value(&key)
    }
    fn log(&mut self, level: v1h::Level, message: String) {
        self.log_line(level_v1(level), &message);
    }
    fn hmac(&mut self, algorithm: v1h::HashAlgorithm, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        hmac_of(hash_v1(algorithm), &key, &data)
    }
    fn hmac_verify(
        &mut self,
        algorithm: v1h::HashAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
        expected: Vec<u8>,
    ) -> bool {
        constant_time_eq(&hmac_of(hash_v1(algorithm), &key, &data), &expected)
    }
    fn digest(&mut self, algorithm: v1h::HashAlgorithm, data: Vec<u8>) -> Vec<u8> {
        digest_of(hash_v1(algorithm), &data)
    }
    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        constant_time_eq(&a, &b)
    }
    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }
}

impl v2h::Host for CallState {
    fn config(&mut self) -> String {
        self.config_json()
    }
    fn config_get(&mut self, key: String) -> Option<String> {
        self.config_value(&key)
    }
    fn log(&mut self, level: v2h::Level, message: String) {
        self.log_line(level_v2(level), &message);
    }
    fn hmac(&mut self, algorithm: v2h::HashAlgorithm, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        hmac_of(hash_v2(algorithm), &key, &data)
    }
    fn hmac_verify(
        &mut self,
        algorithm: v2h::HashAlgorithm,
        key: Vec<u8>,
        data: Vec<u8>,
        expected: Vec<u8>,
    ) -> bool {
        constant_time_eq(&hmac_of(hash_v2(algorithm), &key, &data), &expected)
    }
    fn digest(&mut self, algorithm: v2h::HashAlgorithm, data: Vec<u8>) -> Vec<u8> {
        digest_of(hash_v2(algorithm), &data)
    }
    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        constant_time_eq(&a, &b)
    }
    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }
}

impl v2http::Host for CallState {
    async fn send(
        &mut self,
        req: v2http::OutgoingRequest,
    ) -> Result<v2http::IncomingResponse, v2http::HttpError> {
        use crate::delivery::plugin_http::{PluginHttpError, PluginHttpRequest};
        let Some(http) = self.ctx.http.clone() else {
            return Err(v2http::HttpError::Denied(
                "outbound HTTP is off for this plugin (allow it with `http: { allow: [...] }` on the route)".to_owned(),
            ));
        };
        let request = PluginHttpRequest {
            method: req.method,
            url: req.url,
            headers: req.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: req.body,
        };
        match http.send(request).await {
            Ok(resp) => Ok(v2http::IncomingResponse {
                status: resp.status,
                headers: resp
                    .headers
                    .into_iter()
                    .map(|(name, value)| v2types::HeaderResult { name, value })
                    .collect(),
                body: resp.body,
            }),
            Err(PluginHttpError::Denied(why)) => Err(v2http::HttpError::Denied(why)),
            Err(PluginHttpError::Redirect(to)) => Err(v2http::HttpError::Redirect(to)),
            Err(PluginHttpError::TooLarge) => Err(v2http::HttpError::TooLarge),
            Err(PluginHttpError::Timeout) => Err(v2http::HttpError::Timeout),
            Err(PluginHttpError::Failed(why)) => Err(v2http::HttpError::Failed(why)),
        }
    }
}

/// `HasData` for the WASI I/O interfaces, which only need the resource
/// table (wasmtime-wasi keeps its own such marker private).
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links the part of WASI 0.2 a plugin may use: clocks, random, I/O
/// streams and polls, the CLI world's environment, exit and stdio (all
/// empty or closed: see [`CallState::new`]), and the filesystem types and
/// preopens (no directory is ever preopened, so nothing is reachable:
/// language runtimes such as componentize-py ask for the list at start).
///
/// Deliberately absent: `wasi:sockets` and `wasi:http`. A component that
/// imports them (`std::net` in Rust, a JavaScript runtime) still loads:
/// [`stub_unlinked_wasi`] puts traps in their place, and a plugin that
/// calls one traps instead of reaching the network. Outbound HTTP goes
/// only through the host's own `http` import, with its allow-list.
pub(super) fn add_minimal_wasi(
    l: &mut wasmtime::component::Linker<CallState>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random};
    use wasmtime_wasi::random::WasiRandom;

    io::error::add_to_linker::<CallState, WasiIo>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<CallState, WasiIo>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<CallState, WasiIo>(l, |t| &mut t.table)?;
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    random::random::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    filesystem::types::add_to_linker::<CallState, WasiFilesystem>(l, CallState::filesystem)?;
    filesystem::preopens::add_to_linker::<CallState, WasiFilesystem>(l, CallState::filesystem)?;
    Ok(())
}

/// The WASI interfaces [`add_minimal_wasi`] links, without versions.
const LINKED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Defines every WASI interface `component` imports that the host does not
/// link (`wasi:sockets/*`, `wasi:http/*`, ...) as functions that trap and
/// resources nobody can make.
///
/// Not wasmtime's `define_unknown_imports_as_traps`: that one looks
/// imports up by their exact version, so it would also stub an interface
/// the linker serves at another compatible 0.2.x version (a guest's
/// `monotonic-clock@0.2.6` where the host links 0.2.12), and the stub
/// would win over the real thing.
pub(super) fn stub_unlinked_wasi(
    linker: &mut wasmtime::component::Linker<CallState>,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};

    // The stubbed interfaces `use` resources of linked ones (a socket's
    // `pollable` and streams): those must keep their real host types, or
    // the component's types would not line up. Found by the resource's
    // identity in the component's own view of its imports.
    let real = |interface: &str, resource: &str| match (interface, resource) {
        ("wasi:io/poll", "pollable") => Some(ResourceType::host::<DynPollable>()),
        ("wasi:io/streams", "input-stream") => Some(ResourceType::host::<DynInputStream>()),
        ("wasi:io/streams", "output-stream") => Some(ResourceType::host::<DynOutputStream>()),
        ("wasi:io/error", "error") => Some(ResourceType::host::<IoError>()),
        _ => None,
    };
    let mut shared: Vec<(ResourceType, ResourceType)> = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        for (export, item) in instance.exports(engine) {
            if let (ComponentItem::Resource(seen), Some(host)) = (item.ty, real(interface, export))
            {
                shared.push((seen, host));
            }
        }
    }

    for (name, item) in component.component_type().imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        if !name.starts_with("wasi:") || LINKED_WASI.contains(&interface) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stub = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("plugins have no {what}: the host does not link it")
                    })?;
                }
                ComponentItem::Resource(seen) => {
                    let ty = shared
                        .iter()
                        .find(|(s, _)| *s == seen)
                        .map_or_else(ResourceType::host::<()>, |(_, host)| *host);
                    stub.resource(export, ty, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Replaces WASI's `get-random-bytes` and `get-random-u64` with versions
/// that count what one call draws and trap past
/// [`MAX_RANDOM_BYTES`](super::limits::MAX_RANDOM_BYTES). Guests of any
/// 0.2.x WASI link to these (the linker matches semver-compatible names).
pub(super) fn add_random_budget(
    linker: &mut wasmtime::component::Linker<CallState>,
) -> wasmtime::Result<()> {
    use rand::RngCore;
    use wasmtime::StoreContextMut;

    fn take(state: &mut CallState, n: u64) -> wasmtime::Result<()> {
        state.random_bytes = state.random_bytes.saturating_add(n);
        if state.random_bytes > super::limits::MAX_RANDOM_BYTES {
            wasmtime::bail!(
                "plugin drew more than {} random bytes in one call",
                super::limits::MAX_RANDOM_BYTES
            );
        }
        Ok(())
    }

    linker.allow_shadowing(true);
    let mut random = linker.instance("wasi:random/random@0.2.12")?;
    random.func_wrap(
        "get-random-bytes",
        |mut store: StoreContextMut<'_, CallState>, (len,): (u64,)| {
            take(store.data_mut(), len)?;
            let mut buf = vec![0u8; len as usize];
            rand::rng().fill_bytes(&mut buf);
            Ok((buf,))
        },
    )?;
    random.func_wrap(
        "get-random-u64",
        |mut store: StoreContextMut<'_, CallState>, (): ()| {
            take(store.data_mut(), 8)?;
            Ok((rand::rng().next_u64(),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Digest of `data`.
fn digest_of(algorithm: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    match algorithm {
        HashAlgorithm::Sha1 => Sha1::digest(data).to_vec(),
        HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
        HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
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
    fn log_lines_cannot_forge_lines_or_run_on() {
        assert_eq!(escape_log("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        let long = "x".repeat(MAX_LOG_LINE * 2);
        assert!(escape_log(&long).len() <= MAX_LOG_LINE + '…'.len_utf8());
    }

    #[test]
    fn unequal_lengths_are_not_equal() {
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
