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
//! You implement a trait per stage ([`Verifier`], [`Transformer`],
//! [`Router`]; each method is required) and name the stages in [`export!`],
//! which exports exactly those. The SDK hides the generated WIT bindings and
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
//! use hookgate_plugin_sdk::{self as sdk, Verifier, Request, Verdict, Error};
//!
//! struct SharedToken;
//!
//! impl Verifier for SharedToken {
//!     fn verify(req: Request) -> Result<Verdict, Error> {
//!         // `with: { secret: ... }` on the route.
//!         let secret = sdk::config::require_str("secret")?;
//!         let Some(token) = req.header("x-token") else {
//!             return Ok(Verdict::unauthorized("missing X-Token header"));
//!         };
//!         if !sdk::crypto::constant_time_eq(token.as_bytes(), secret.as_bytes()) {
//!             return Ok(Verdict::unauthorized("X-Token does not match"));
//!         }
//!         // The token is a credential: the gateway must not forward it.
//!         Ok(Verdict::accept_with(sdk::Accepted::new().consumed("x-token")))
//!     }
//! }
//!
//! sdk::export!(SharedToken, stages: [verify], config: [secret]);
//! ```
//!
//! A transform: a JSON event into a chat message (`serde_json` in the
//! plugin's dependencies).
//!
//! ```ignore
//! use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};
//!
//! struct ChatMessage;
//!
//! impl Transformer for ChatMessage {
//!     fn transform(msg: Message) -> Result<Vec<Message>, Error> {
//!         let prefix = sdk::config::optional_str("prefix")?.unwrap_or_else(|| "New event:".into());
//!         // A body that is not JSON is the sender's fault: answered 400.
//!         let data: serde_json::Value = msg.json()?;
//!         let event = msg.event_type.as_deref().unwrap_or("event");
//!         let out = serde_json::json!({ "text": format!("{prefix} {event}"), "data": data });
//!         // Same id and event type; an empty Vec would drop the message.
//!         Ok(vec![msg.with_json_body(&out)?])
//!     }
//! }
//!
//! sdk::export!(ChatMessage, stages: [transform], config: [prefix]);
//! ```
//!
//! A router: destinations by event type, else the route's `to:`.
//!
//! ```ignore
//! use std::collections::BTreeMap;
//!
//! use hookgate_plugin_sdk::{self as sdk, Error, Message, Router};
//!
//! struct ByEventType;
//!
//! impl Router for ByEventType {
//!     fn route(msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
//!         // with: { rules: { order.paid: [billing, audit] } }
//!         let rules: BTreeMap<String, Vec<String>> = match sdk::config::get("rules") {
//!             Some(json) => serde_json::from_str(&json)
//!                 .map_err(|e| Error::config(format!("rules: {e}")))?,
//!             None => BTreeMap::new(),
//!         };
//!         let event = msg.event_type.as_deref().unwrap_or_default();
//!         Ok(rules.get(event).cloned().unwrap_or(defaults))
//!     }
//! }
//!
//! sdk::export!(ByEventType, stages: [route], config: [rules]);
//! ```
//!
//! `hookgate plugin new NAME --lang rust --stage verify|transform|route`
//! writes such a project with fixtures, and `hookgate plugin build` and
//! `hookgate plugin test` build and test it. The same plugins in JavaScript
//! and Python are in the repository's `docs/plugins.md`.
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
    //!
    //! One module per exported stage, so that a component exports exactly
    //! the stages its plugin implements: the gateway reads a plugin's stages
    //! from its exports, and a stage that is not exported cannot be called.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../wit/plugin.wit",
        world: "hookgate:plugin/base@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_base",
        default_bindings_module: "hookgate_plugin_sdk::bindings",
    });

    /// The `verifier` export alone.
    pub mod verify {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            inline: "package hookgate:sdk-verify; world verify { export hookgate:plugin/verifier@0.2.0; }",
            with: { "hookgate:plugin/types@0.2.0": crate::bindings::hookgate::plugin::types },
            pub_export_macro: true,
            export_macro_name: "__export_verify",
            default_bindings_module: "hookgate_plugin_sdk::bindings::verify",
        });
    }

    /// The `transformer` export alone.
    pub mod transform {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            inline: "package hookgate:sdk-transform; world transform { export hookgate:plugin/transformer@0.2.0; }",
            with: { "hookgate:plugin/types@0.2.0": crate::bindings::hookgate::plugin::types },
            pub_export_macro: true,
            export_macro_name: "__export_transform",
            default_bindings_module: "hookgate_plugin_sdk::bindings::transform",
        });
    }

    /// The `router` export alone.
    pub mod route {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            inline: "package hookgate:sdk-route; world route { export hookgate:plugin/router@0.2.0; }",
            with: { "hookgate:plugin/types@0.2.0": crate::bindings::hookgate::plugin::types },
            pub_export_macro: true,
            export_macro_name: "__export_route",
            default_bindings_module: "hookgate_plugin_sdk::bindings::route",
        });
    }
}

mod message;
mod request;
mod verdict;

pub mod config;
pub mod crypto;
pub mod http;
pub mod log;
pub mod signature;
pub mod time;

use bindings::hookgate::plugin::types;

pub use types::{
    Accepted, ConfigError, Error, Header, Message, Rejection, Request, Response, Stage, Verdict,
};

/// The verify stage: authenticate the raw request, or answer a handshake.
/// There is no default: a plugin that says it verifies must decide.
pub trait Verifier {
    /// Decide on one inbound request.
    fn verify(req: Request) -> Result<Verdict, Error>;
}

/// The transform stage: turn one message into zero or more messages.
pub trait Transformer {
    /// Reshape `msg`; an empty list drops it.
    fn transform(msg: Message) -> Result<Vec<Message>, Error>;
}

/// The route stage: choose destinations.
pub trait Router {
    /// Names of destinations for `msg`; `defaults` is the route's `to:`.
    fn route(msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error>;
}

/// Exports a plugin's stages as the component's entry points.
///
/// ```ignore
/// hookgate_plugin_sdk::export!(MyPlugin, stages: [verify, transform], config: [secret, card]);
/// ```
///
/// `stages` lists what the plugin implements (`verify`, `transform`,
/// `route`); each needs the matching trait ([`Verifier`], [`Transformer`],
/// [`Router`]), so a stage that is declared but not implemented does not
/// compile, and only the listed stages are exported.
///
/// `config` (optional) lists the keys the plugin accepts in `with:`. With
/// it, the gateway refuses a route whose `with:` has any other key (`hookgate
/// check` reports `routes.r.verify.with.secert: unknown key`); without it,
/// any keys are accepted.
///
/// `check` (optional) is the function the plugin reads its settings with,
/// any `fn() -> Result<T, Error>`. The gateway calls it when it loads the
/// route (`hookgate check`, start-up, every reload), so a value that would
/// fail every request fails the load instead, at its key:
/// `routes.r.verify.with.tolerance: must be a whole number, not "soon"`.
/// Read settings with the [`config`] getters (or report your own errors as
/// `` Error::config("`with.KEY` what is wrong") ``) to get the key's path.
///
/// ```ignore
/// struct Settings { secret: String, tolerance: u64 }
///
/// fn settings() -> Result<Settings, Error> {
///     Ok(Settings {
///         secret: sdk::config::require_str("secret")?,
///         tolerance: sdk::config::get_u64("tolerance", 300)?,
///     })
/// }
///
/// sdk::export!(MyPlugin, stages: [verify], config: [secret, tolerance], check: settings);
/// ```
///
/// Use the macro once per crate.
#[macro_export]
macro_rules! export {
    ($plugin:ty, stages: [$($stage:ident),* $(,)?] $(, config: [$($key:ident),* $(,)?])? $(, check: $check:expr)? $(,)?) => {
        #[doc(hidden)]
        pub struct __HookgatePluginExports;

        impl $crate::bindings::exports::hookgate::plugin::metadata::Guest for __HookgatePluginExports {
            fn describe() -> $crate::bindings::exports::hookgate::plugin::metadata::Info {
                $crate::bindings::exports::hookgate::plugin::metadata::Info {
                    version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
                    stages: ::std::vec![$($crate::__stage!($stage)),*],
                }
            }

            fn validate_config(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::vec::Vec<$crate::ConfigError>> {
                #[allow(unused_mut, unused_assignments, reason = "without `config:` any key is accepted")]
                let mut keys: ::std::option::Option<&[&str]> = ::std::option::Option::None;
                $( keys = ::std::option::Option::Some(&[$(stringify!($key)),*]); )?
                let checked = $crate::config::validate_keys(&config, keys);
                $( let checked = checked.and_then(|()| $crate::config::run_check($check)); )?
                checked
            }
        }

        $crate::bindings::__export_base!(__HookgatePluginExports with_types_in $crate::bindings);
        $( $crate::__export_stage!($stage, $plugin); )*
    };
}

/// Exports one stage of `export!`; an unknown stage name is a compile error.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_stage {
    (verify, $plugin:ty) => {
        const _: () = {
            struct __Verify;
            impl $crate::bindings::verify::exports::hookgate::plugin::verifier::Guest for __Verify {
                fn verify(req: $crate::Request) -> ::std::result::Result<$crate::Verdict, $crate::Error> {
                    <$plugin as $crate::Verifier>::verify(req)
                }
            }
            $crate::bindings::verify::__export_verify!(__Verify with_types_in $crate::bindings::verify);
        };
    };
    (transform, $plugin:ty) => {
        const _: () = {
            struct __Transform;
            impl $crate::bindings::transform::exports::hookgate::plugin::transformer::Guest for __Transform {
                fn transform(msg: $crate::Message) -> ::std::result::Result<::std::vec::Vec<$crate::Message>, $crate::Error> {
                    <$plugin as $crate::Transformer>::transform(msg)
                }
            }
            $crate::bindings::transform::__export_transform!(__Transform with_types_in $crate::bindings::transform);
        };
    };
    (route, $plugin:ty) => {
        const _: () = {
            struct __Route;
            impl $crate::bindings::route::exports::hookgate::plugin::router::Guest for __Route {
                fn route(
                    msg: $crate::Message,
                    defaults: ::std::vec::Vec<::std::string::String>,
                ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::Error> {
                    <$plugin as $crate::Router>::route(msg, defaults)
                }
            }
            $crate::bindings::route::__export_route!(__Route with_types_in $crate::bindings::route);
        };
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

/// Finds a header by name (case-insensitive) in a header list; its value
/// as text, or `None` when absent or not UTF-8 (use [`find_header_bytes`]
/// for raw values).
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    find_header_bytes(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// Finds a header by name (case-insensitive); its raw value.
pub fn find_header_bytes<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

impl Header {
    /// A header with a lowercase name.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            name: name.into().to_ascii_lowercase(),
            value: value.into(),
        }
    }

    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
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
