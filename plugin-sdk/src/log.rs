//! Logging into the gateway's log, tagged with plugin and route.
//!
//! Never log secrets or full signatures: the gateway's log is shared.

use crate::bindings::hookgate::plugin::host::{self, Level};

/// Debug-level line.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Info-level line.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Warning-level line.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Error-level line: use only when an operator must act.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
