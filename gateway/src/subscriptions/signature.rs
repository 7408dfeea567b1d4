//! Standard Webhooks signing for subscriber deliveries: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, keyed with the base64-decoded part of the
//! subscription's `whsec_` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;

use crate::plugin::hmac_of;

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

/// The `webhook-signature` value for one delivery.
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
    fn secrets_are_whsec_and_unique() {
        let a = new_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&a[6..]).unwrap().len(), SECRET_BYTES);
        assert_ne!(a, new_secret());
    }
}
