//! Host bindings for `wit/plugin.wit`, generated once and kept private: the
//! rest of the gateway uses the types in [`super::types`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "hookgate:plugin/plugin",
    // Calls run on fibers so that a plugin yields to tokio at every epoch
    // tick: a looping plugin never pins a runtime worker, and WASI's
    // streams (a guest panic writes to stderr) can await.
    exports: { default: async },
});

// `self::`: the generated module `hookgate` shares its name with this crate,
// and rustdoc (doc tests) sees the crate as an extern too.
pub use self::hookgate::plugin::host::{HashAlgorithm, Host, Level};
pub use self::hookgate::plugin::types;
