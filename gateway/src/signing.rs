//! Signing of outbound deliveries (a subscription's, or a destination's
//! with `signing:`), in one of two schemes:
//!
//! - Standard Webhooks (default): `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//!   keyed with the base64-decoded part of the `whsec_` secret.
//! - ASP.NET WebHooks' sender: `ms-signature: sha256=<hex HMAC-SHA256 of the
//!   body>`, keyed with the secret's UTF-8 bytes (as ASP.NET does).
//!
//! Also the rules a chosen secret (a subscriber's, or a destination's in
//! the config) must meet in each scheme.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore as _;

use crate::plugin::hmac_of;
use crate::store::SignatureScheme;

/// Random bytes in a new signing key: 256 bits.
const SECRET_BYTES: usize = 32;

/// A fresh `whsec_…` secret.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// A fresh random token (validation challenges).
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Shortest and longest key a Standard Webhooks secret may decode to (the
/// specification's 24 to 64 bytes).
const STANDARD_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Length range of an ASP.NET secret, as ASP.NET WebHooks requires.
const MS_SECRET_CHARS: std::ops::RangeInclusive<usize> = 32..=64;

/// Why `secret` cannot sign in `scheme`, if it cannot. Generated secrets
/// (`whsec_` + 32 random bytes) fit both schemes.
pub fn check_secret(scheme: SignatureScheme, secret: &str) -> Result<(), String> {
    match scheme {
        SignatureScheme::StandardWebhooks => {
            let key = secret
                .strip_prefix("whsec_")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .ok_or("a Standard Webhooks secret is `whsec_` followed by base64")?;
            if STANDARD_KEY_BYTES.contains(&key.len()) {
                Ok(())
            } else {
                Err(format!(
                    "a Standard Webhooks secret decodes to {} to {} bytes, not {}",
                    STANDARD_KEY_BYTES.start(),
                    STANDARD_KEY_BYTES.end(),
                    key.len()
                ))
            }
        }
        SignatureScheme::MsSignature => {
            let n = secret.chars().count();
            if !MS_SECRET_CHARS.contains(&n) {
                Err(format!(
                    "an ms-signature secret has {} to {} characters, not {n}",
                    MS_SECRET_CHARS.start(),
                    MS_SECRET_CHARS.end()
                ))
            } else if !secret.chars().all(|c| c.is_ascii_graphic()) {
                Err("an ms-signature secret is printable ASCII without spaces".into())
            } else {
                Ok(())
            }
        }
    }
}

/// The `ms-signature` value for one delivery: `sha256=<hex>`.
pub fn sign_ms(secret: &str, body: &[u8]) -> String {
    let mac = hmac_of(
        crate::plugin::HashAlgorithm::Sha256,
        secret.as_bytes(),
        body,
    );
    format!("sha256={}", hex::encode(mac))
}

/// One `v1,<base64>` entry of `webhook-signature` for one delivery.
pub fn sign(secret: &str, id: &str, timestamp_secs: u64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp_secs.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mac = hmac_of(crate::plugin::HashAlgorithm::Sha256, &key, &signed);
    format!("v1,{}", STANDARD.encode(mac))
}

/// Adds one delivery's signature headers, signed at `now_ms` by each of
/// `secrets` (the current one first). `webhook-id` is the caller's: every
/// delivery carries it, signed or not.
pub fn apply(
    headers: &mut HeaderMap,
    scheme: SignatureScheme,
    secrets: &[impl AsRef<str>],
    id: &str,
    now_ms: u64,
    body: &[u8],
) {
    match scheme {
        SignatureScheme::StandardWebhooks => {
            let timestamp = now_ms / 1000;
            // Several signatures are space-separated (Standard Webhooks):
            // during a rotation a receiver holding either secret verifies.
            let signatures: Vec<String> = secrets
                .iter()
                .map(|s| sign(s.as_ref(), id, timestamp, body))
                .collect();
            for (name, value) in [
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signatures.join(" ")),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            }
        }
        SignatureScheme::MsSignature => {
            // One `ms-signature` field per secret, newest first: a receiver
            // that reads every value verifies with either secret.
            headers.remove("ms-signature");
            for s in secrets {
                if let Ok(v) = HeaderValue::from_str(&sign_ms(s.as_ref(), body)) {
                    headers.append(HeaderName::from_static("ms-signature"), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ms_signature_is_hex_hmac_of_the_body_keyed_with_the_secret_text() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"),
        // the textbook vector.
        assert_eq!(
            sign_ms("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn chosen_secrets_are_checked_per_scheme() {
        let generated = new_secret();
        assert!(check_secret(SignatureScheme::StandardWebhooks, &generated).is_ok());
        assert!(check_secret(SignatureScheme::MsSignature, &generated).is_ok());
        assert!(
            check_secret(
                SignatureScheme::StandardWebhooks,
                "plain-text-secret-of-32-chars-ok"
            )
            .is_err()
        );
        assert!(
            check_secret(
                SignatureScheme::MsSignature,
                "plain-text-secret-of-32-chars-ok"
            )
            .is_ok()
        );
        assert!(check_secret(SignatureScheme::MsSignature, "too-short").is_err());
        assert!(
            check_secret(
                SignatureScheme::MsSignature,
                "has a space in it but long enough...."
            )
            .is_err()
        );
        // 16 bytes is under the specification's minimum of 24.
        assert!(
            check_secret(
                SignatureScheme::StandardWebhooks,
                "whsec_AAAAAAAAAAAAAAAAAAAAAA=="
            )
            .is_err()
        );
    }

    #[test]
    fn secrets_are_whsec_and_unique() {
        let a = new_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&a[6..]).unwrap().len(), SECRET_BYTES);
        assert_ne!(a, new_secret());
    }
}
