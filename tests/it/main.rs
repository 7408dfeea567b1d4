//! hookgate's integration tests: one binary, a module per feature, all
//! running the real `hookgate` binary or the real wasm plugins.

mod authoring;
mod backup;
mod check;
mod components;
mod console;
mod credentials;
mod delivery;
mod disk_full;
mod docs;
mod door;
mod durability;
mod fuzz;
mod guests;
mod handshake;
mod https;
mod ingress;
mod openapi;
#[cfg(feature = "otel")]
mod otel;
mod paypal;
mod pipeline;
mod plugins;
mod relay;
mod reload;
mod sandbox;
mod scale_out;
mod sending;
mod stored_text;
mod subscriptions;
mod support;
mod teams;
