//! A fault hook for the integration tests, compiled into debug builds only
//! (`cfg(debug_assertions)`): release builds have no code here, so no
//! config, environment or request can reach it in production.
//!
//! `HOOKGATE_TEST_FAULT_PANIC_ROUTE=<route>` makes the writer panic while
//! it stores an event of that route, inside the operation (as a bug in a
//! store operation would), so a test can watch the writer survive it.

use std::sync::OnceLock;

/// The environment variable naming the route whose inserts panic.
const PANIC_ROUTE_VAR: &str = "HOOKGATE_TEST_FAULT_PANIC_ROUTE";

/// Panics when `route` is the one the test named.
pub fn on_insert(route: &str) {
    static ROUTE: OnceLock<Option<String>> = OnceLock::new();
    let armed = ROUTE.get_or_init(|| {
        std::env::var(PANIC_ROUTE_VAR)
            .ok()
            .filter(|r| !r.is_empty())
    });
    if armed.as_deref() == Some(route) {
        panic!("test fault: {PANIC_ROUTE_VAR} names route {route:?}");
    }
}
