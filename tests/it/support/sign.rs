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

/// Stripe's `Stripe-Signature` value, `t=<unix>,v1=<hex>`: HMAC-SHA256
/// keyed with the whole secret as text over `{t}.{body}`.
pub fn stripe(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// `v0=<hex>` for Slack's `X-Slack-Signature` over `v0:{ts}:{body}`.
pub fn slack(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies a Standard Webhooks signature from the specification alone:
/// HMAC-SHA256 keyed with base64-decode(secret without `whsec_`) over
/// `{id}.{timestamp}.{body}`, base64, any of the space-separated `v1,`
/// entries. Written here, apart from the gateway's signer, on purpose.
pub fn standard_webhooks_valid(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(key) = b64.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = b64.encode(mac.finalize().into_bytes());
    signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

/// ASP.NET WebHooks' `ms-signature` value: `sha256=` + hex HMAC-SHA256 of
/// the body keyed with the secret's UTF-8 bytes.
pub fn ms_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
