//! First-party plugins compiled into the binary by `build.rs`, so
//! `plugin: github` works with no build step. A `NAME.wasm` in
//! `plugins.dir` overrides the built-in of the same name.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of built-in plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of every built-in plugin.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Hosts built-in plugin `name` may call over HTTP when its route gives
/// no `http:` block: its provider's own endpoints, and nothing else. A
/// route's `http:` block replaces the list; a `NAME.wasm` that overrides
/// the built-in gets no default.
pub fn default_http_allow(name: &str) -> Option<&'static [&'static str]> {
    match name {
        // PayPal IPN verify-back, live and sandbox.
        "paypal" => Some(&["ipnpb.paypal.com", "ipnpb.sandbox.paypal.com"]),
        _ => None,
    }
}
