//! Signing helpers, written from the providers' specifications rather than
//! shared with the plugins, so a test checks the plugin against an
//! independent implementation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `sha256=<hex>` for GitHub's `X-Hub-Signature-256`.
pub fn github(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `v0=<hex>` for Slack's `X-Slack-Signature` over `v0:{ts}:{body}`.
pub fn slack(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}
