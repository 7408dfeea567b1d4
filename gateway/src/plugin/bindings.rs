//! Host bindings for the plugin WIT, generated once and kept private: the
//! rest of the gateway uses the types in [`super::types`].
//!
//! Two versions are served side by side: 0.2.0 (`wit/plugin.wit`) and the
//! frozen 0.1.0 (`wit/deps/plugin-0.1.0/`). A component binds to exactly one
//! of them, by the names of its exports.

/// `hookgate:plugin@0.2.0`. The `host-view` world exports every stage; a
/// component exports only its own, so calls go through the per-interface
/// `GuestIndices` looked up at load, never through the world's
/// all-or-nothing instantiation.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin.wit",
        world: "hookgate:plugin/host-view@0.2.0",
        // Calls run on fibers so that a plugin yields to tokio at every
        // epoch tick: a looping plugin never pins a runtime worker, and
        // WASI's streams (a guest panic writes to stderr) can await.
        exports: { default: async },
        // Outbound HTTP awaits the network.
        imports: { "hookgate:plugin/http.send": async },
        // What the host passes into a call is borrowed from the request
        // or message it already holds, not copied into owned types first.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// `hookgate:plugin@0.1.0`, frozen: every component exports all stages and
/// says in `describe` which ones are real.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/plugin-0.1.0/plugin.wit",
        world: "hookgate:plugin/plugin@0.1.0",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}
