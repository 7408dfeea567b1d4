//! Hashing, HMAC and constant-time comparison, computed natively by the host.
//!
//! Doing these in the host is faster than in wasm and keeps one audited
//! implementation (RustCrypto) for every plugin.

use crate::bindings::hookgate::plugin::host;

pub use host::HashAlgorithm as Algorithm;

/// HMAC of `data` keyed with `key`.
pub fn hmac(algorithm: Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    host::hmac(algorithm, key, data)
}

/// Whether `expected` is the HMAC of `data` with `key`, compared in constant
/// time.
pub fn hmac_verify(algorithm: Algorithm, key: &[u8], data: &[u8], expected: &[u8]) -> bool {
    host::hmac_verify(algorithm, key, data, expected)
}

/// Digest of `data`.
pub fn digest(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    host::digest(algorithm, data)
}

/// Constant-time equality (false when the lengths differ).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    host::constant_time_eq(a, b)
}
