//! Signature checks over the host's constant-time HMAC.
//!
//! Every function takes the signature as the provider sent it (hex or
//! base64 text) and returns `false` for anything malformed, so a plugin
//! never panics on hostile input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::{self, Algorithm};

/// Whether `signature_hex` (case-insensitive hex) is the HMAC of `data`.
pub fn verify_hex(algorithm: Algorithm, key: &[u8], data: &[u8], signature_hex: &str) -> bool {
    match hex::decode(signature_hex.trim()) {
        Ok(expected) => crypto::hmac_verify(algorithm, key, data, &expected),
        Err(_) => false,
    }
}

/// Whether `signature_b64` (standard base64, padded) is the HMAC of `data`.
pub fn verify_base64(algorithm: Algorithm, key: &[u8], data: &[u8], signature_b64: &str) -> bool {
    match STANDARD.decode(signature_b64.trim()) {
        Ok(expected) => crypto::hmac_verify(algorithm, key, data, &expected),
        Err(_) => false,
    }
}

/// HMAC of `data` as lowercase hex.
pub fn sign_hex(algorithm: Algorithm, key: &[u8], data: &[u8]) -> String {
    hex::encode(crypto::hmac(algorithm, key, data))
}

/// HMAC of `data` as standard base64.
pub fn sign_base64(algorithm: Algorithm, key: &[u8], data: &[u8]) -> String {
    STANDARD.encode(crypto::hmac(algorithm, key, data))
}

/// Decodes standard base64 (for keys given as base64, such as Teams security
/// tokens and `whsec_` secrets).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.trim()).ok()
}

/// `value` without `prefix` (for `sha256=<hex>` style headers), compared
/// case-insensitively; `None` when the prefix is missing.
pub fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let value = value.trim();
    // `get` rather than slicing: a multi-byte character at the boundary must
    // not panic on hostile input.
    match value.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => value.get(prefix.len()..),
        _ => None,
    }
}
