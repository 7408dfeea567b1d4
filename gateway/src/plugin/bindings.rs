//! Host bindings for `wit/plugin.wit`, generated once and kept private: the
//! rest of the gateway uses the types in [`super::types`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "hookgate:plugin/plugin",
});

pub use hookgate::plugin::host::{HashAlgorithm, Host, Level};
pub use hookgate::plugin::types;
