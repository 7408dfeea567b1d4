//! Test support: a real `hookgate` binary on a port-0 listener
//! ([`gateway::TestGateway`]), a scriptable destination
//! ([`receiver::MockReceiver`]), in-process plugin calls
//! ([`plugin::TestPlugin`]) and signing helpers ([`sign`]).

#![allow(dead_code, reason = "each test module uses a different part")]

pub mod browser;
pub mod gateway;
pub mod pki;
pub mod plugin;
pub mod receiver;
pub mod sign;

use std::time::{Duration, Instant};

/// Waits until `check` returns true, polling, or panics after `timeout`
/// with `what`. Tests wait on conditions, never on fixed sleeps.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Directory holding the test components built by gateway/build.rs.
pub fn test_components_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("HOOKGATE_TEST_COMPONENTS"))
}

/// Bytes of test component `name` (e.g. `spin`).
pub fn test_component(name: &str) -> Vec<u8> {
    let path = test_components_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
