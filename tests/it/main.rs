//! hookgate's integration tests: one binary, a module per feature, all
//! running the real `hookgate` binary or the real wasm plugins.

mod check;
mod components;
mod console;
mod docs;
mod durability;
mod handshake;
mod ingress;
mod pipeline;
mod plugins;
mod reload;
mod sandbox;
mod subscriptions;
mod support;
