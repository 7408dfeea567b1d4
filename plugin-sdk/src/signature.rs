//! Signature checks over the host's constant-time HMAC.
//!
//! Every function takes the signature as the provider sent it (hex or
//! base64 text) and treats anything malformed as a mismatch, so a plugin
//! never panics on hostile input.
//!
//! One signature: [`verify_hex`] or [`verify_base64`]. Several (a header
//! that lists one per active secret while keys rotate): compute the MAC once
//! with [`crypto::hmac`] and hand it to [`matches_any`], so a header stuffed
//! with candidates costs one HMAC, not one per candidate.
//! [`standard_webhooks`] is the whole Standard Webhooks scheme.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::{self, Algorithm};

pub mod standard_webhooks;

/// How a provider writes a signature (or a key) as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64, padded.
    Base64,
}

impl Encoding {
    /// The bytes `text` encodes, ignoring surrounding white space (header
    /// values often carry some); `None` when it is malformed.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text.trim()).ok(),
            Encoding::Base64 => STANDARD.decode(text.trim()).ok(),
        }
    }
}

/// What [`matches_any`] found among the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One of them is the expected MAC.
    Match,
    /// Some decode, but none is the expected MAC.
    Mismatch,
    /// None decodes (there were none, or all are malformed), which plugins
    /// usually report differently from a wrong signature.
    Malformed,
}

/// Compares `expected`, a MAC computed once (with [`crypto::hmac`]), with
/// every candidate signature written in `encoding`, each in constant time
/// through the host. Malformed candidates are skipped; one match is enough.
///
/// Every candidate is compared even after a match, so the time taken does
/// not reveal which candidate (which of the rotating secrets) matched.
pub fn matches_any<'a>(
    expected: &[u8],
    encoding: Encoding,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Outcome {
    let mut decoded_any = false;
    let mut matched = false;
    for candidate in candidates {
        let Some(candidate) = encoding.decode(candidate) else {
            continue;
        };
        decoded_any = true;
        matched |= crypto::constant_time_eq(&candidate, expected);
    }
    match (matched, decoded_any) {
        (true, _) => Outcome::Match,
        (false, true) => Outcome::Mismatch,
        (false, false) => Outcome::Malformed,
    }
}

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
    Encoding::Base64.decode(text)
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

#[cfg(test)]
mod tests {
    use super::{Encoding, strip_prefix};

    #[test]
    fn decode_trims_and_refuses_malformed_text() {
        assert_eq!(Encoding::Hex.decode(" 0aFf\t"), Some(vec![0x0a, 0xff]));
        assert_eq!(
            Encoding::Base64.decode(" AAr/ "),
            Some(vec![0x00, 0x0a, 0xff])
        );
        assert_eq!(Encoding::Hex.decode(""), Some(Vec::new()));
        for bad in ["0", "zz", "0a 0b", "é"] {
            assert_eq!(Encoding::Hex.decode(bad), None, "{bad:?}");
        }
        // Unpadded and URL-safe base64 are other encodings.
        for bad in ["AAr", "AAr_", "A===", "é"] {
            assert_eq!(Encoding::Base64.decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn strip_prefix_is_case_insensitive_and_never_panics() {
        assert_eq!(strip_prefix(" SHA256=ab ", "sha256="), Some("ab"));
        assert_eq!(strip_prefix("sha1=ab", "sha256="), None);
        assert_eq!(strip_prefix("ab", "sha256="), None);
        // A multi-byte character across the prefix's end.
        assert_eq!(strip_prefix("sha256é", "sha256="), None);
    }
}
