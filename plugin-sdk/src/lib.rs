//! Write [hookgate](https://example.invalid/hookgate) plugins in Rust.
//!
//! A plugin is a WebAssembly component that implements one or more stages of
//! a webhook's path through the gateway:
//!
//! - **verify**: authenticate the raw request (signatures, tokens) or answer
//!   a handshake at once;
//! - **transform**: turn one message into zero or more messages;
//! - **route**: choose destinations.
//!
//! You implement [`Plugin`] (every method has a default) and name the stages
//! you implement in [`export!`]. The SDK hides the generated WIT bindings and
//! gives you typed helpers: [`Request::header`], [`Request::json`],
//! [`config`], [`signature`] checks over the host's constant-time crypto
//! (with whole schemes such as [`signature::standard_webhooks`]),
//! [`time`] for providers' timestamps, and [`log`].
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "shared-token"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! hookgate-plugin-sdk = { path = "../plugin-sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```ignore
//! use hookgate_plugin_sdk::{self as sdk, Plugin, Request, Verdict, Error};
//!
//! struct SharedToken;
//!
//! impl Plugin for SharedToken {
//!     fn verify(req: Request) -> Result<Verdict, Error> {
//!         // `with: { secret: ... }` on the route.
//!         let secret = sdk::config::require_str("secret")?;
//!         let Some(token) = req.header("x-token") else {
//!             return Ok(Verdict::unauthorized("missing X-Token header"));
//!         };
//!         if !sdk::crypto::constant_time_eq(token.as_bytes(), secret.as_bytes()) {
//!             return Ok(Verdict::unauthorized("X-Token does not match"));
//!         }
//!         Ok(Verdict::accept())
//!     }
//! }
//!
//! sdk::export!(SharedToken, stages: [verify]);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and copy
//! `target/wasm32-wasip2/release/shared_token.wasm` into the gateway's
//! `plugins.dir` as `shared-token.wasm`; a route then uses it with
//! `verify: { plugin: shared-token, with: { secret: "${TOKEN}" } }`.
//!
//! Plugins run sandboxed: no filesystem, network or environment; each call
//! has a deadline and a memory cap. The only I/O is the host interface this
//! crate wraps.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    //! Raw `wit-bindgen` output for `wit/plugin.wit`. Not a stable API.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "hookgate:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "hookgate_plugin_sdk::bindings",
    });
}

mod message;
mod request;
mod verdict;

pub mod config;
pub mod crypto;
pub mod log;
pub mod signature;
pub mod time;

use bindings::hookgate::plugin::types;

pub use types::{Accepted, Error, Header, Message, Rejection, Request, Response, Stage, Verdict};

/// A hookgate plugin. Override the stages you implement and list them in
/// [`export!`]; the defaults are what the gateway does without a plugin.
pub trait Plugin {
    /// Authenticate the raw request. Default: accept.
    fn verify(req: Request) -> Result<Verdict, Error> {
        let _ = req;
        Ok(Verdict::accept())
    }

    /// Reshape a message. Default: pass it on unchanged.
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        Ok(vec![msg])
    }

    /// Choose destinations. Default: the route's `to:` list.
    fn route(msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
        let _ = msg;
        Ok(defaults)
    }
}

/// Exports a [`Plugin`] implementation as the component's entry points.
///
/// ```ignore
/// hookgate_plugin_sdk::export!(MyPlugin, stages: [verify, transform]);
/// ```
///
/// `stages` lists what the plugin really implements (`verify`, `transform`,
/// `route`). The gateway refuses a route that uses the plugin for any other
/// stage, so a transform-only plugin can never be mistaken for a verifier.
/// Use it once per crate.
#[macro_export]
macro_rules! export {
    ($plugin:ty, stages: [$($stage:ident),* $(,)?]) => {
        #[doc(hidden)]
        pub struct __HookgatePluginExports;

        impl $crate::bindings::exports::hookgate::plugin::metadata::Guest for __HookgatePluginExports {
            fn describe() -> $crate::bindings::exports::hookgate::plugin::metadata::Info {
                $crate::bindings::exports::hookgate::plugin::metadata::Info {
                    version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
                    stages: ::std::vec![$($crate::__stage!($stage)),*],
                }
            }
        }

        impl $crate::bindings::exports::hookgate::plugin::verifier::Guest for __HookgatePluginExports {
            fn verify(req: $crate::Request) -> ::std::result::Result<$crate::Verdict, $crate::Error> {
                <$plugin as $crate::Plugin>::verify(req)
            }
        }

        impl $crate::bindings::exports::hookgate::plugin::transformer::Guest for __HookgatePluginExports {
            fn transform(msg: $crate::Message) -> ::std::result::Result<::std::vec::Vec<$crate::Message>, $crate::Error> {
                <$plugin as $crate::Plugin>::transform(msg)
            }
        }

        impl $crate::bindings::exports::hookgate::plugin::router::Guest for __HookgatePluginExports {
            fn route(
                msg: $crate::Message,
                defaults: ::std::vec::Vec<::std::string::String>,
            ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::Error> {
                <$plugin as $crate::Plugin>::route(msg, defaults)
            }
        }

        $crate::bindings::__export_plugin_world!(__HookgatePluginExports with_types_in $crate::bindings);
    };
}

/// Maps a stage name in [`export!`] to [`Stage`]; anything else is a compile
/// error.
#[doc(hidden)]
#[macro_export]
macro_rules! __stage {
    (verify) => {
        $crate::Stage::Verify
    };
    (transform) => {
        $crate::Stage::Transform
    };
    (route) => {
        $crate::Stage::Route
    };
}

/// Finds a header by name (case-insensitive) in a header list.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl Header {
    /// A header with a lowercase name.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into().to_ascii_lowercase(),
            value: value.into(),
        }
    }
}

impl Error {
    /// The route's `with:` block is unusable.
    pub fn config(reason: impl Into<String>) -> Self {
        Error::Config(reason.into())
    }

    /// The input cannot be handled (answered 400).
    pub fn invalid_input(reason: impl Into<String>) -> Self {
        Error::InvalidInput(reason.into())
    }

    /// Any other failure (answered 500).
    pub fn other(reason: impl Into<String>) -> Self {
        Error::Other(reason.into())
    }
}
