//! [Standard Webhooks] signatures, which Svix and GitLab (with a signing
//! token) send too.
//!
//! The sender sets `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: space-separated `<version>,<base64>` entries, where
//! `v1` is the HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed with the
//! secret's base64 after `whsec_`. Several `v1` entries appear while a
//! secret is rotated; other versions (`v1a` is Ed25519) are skipped, as the
//! reference libraries do. Svix uses the same scheme with `svix-` header
//! names.
//!
//! ```ignore
//! use hookgate_plugin_sdk::signature::standard_webhooks;
//!
//! let key = standard_webhooks::decode_secret(&secret)
//!     .ok_or_else(|| Error::config("`with.secret` must be a whsec_<base64> secret"))?;
//! match standard_webhooks::verify(&req, "webhook", &key, standard_webhooks::DEFAULT_TOLERANCE_SECS) {
//!     Ok(id) => Ok(Verdict::accept_with(Accepted::new().id(id))),
//!     Err(reason) => Ok(Verdict::unauthorized(reason)),
//! }
//! ```
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use super::{Encoding, Outcome, matches_any};
use crate::Request;
use crate::crypto::{self, Algorithm};

/// The spec's reference libraries allow five minutes either way.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The conventional prefix of a signing secret; the key is the base64 after
/// it.
const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a signing secret: the base64 after an optional `whsec_`
/// prefix. `None` when that is not base64 or decodes to nothing; the plugin
/// reports it as a config error naming its own `with:` key.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    Encoding::Base64
        .decode(encoded)
        .filter(|key| !key.is_empty())
}

/// Checks the `{header_prefix}-id`, `-timestamp` and `-signature` headers
/// of `req` (`header_prefix` is `"webhook"` for the spec's names, `"svix"`
/// for Svix's) against its body, with `key` from [`decode_secret`].
///
/// On success returns the id header's value, the message id the spec says
/// to deduplicate on. The error is a rejection reason naming the header at
/// fault and never quoting a signature. The timestamp must lie within
/// `tolerance_secs` of [`Request::received_at_ms`], either way; it is
/// checked after the signature, so a forged timestamp is reported as a
/// mismatch.
pub fn verify<'r>(
    req: &'r Request,
    header_prefix: &str,
    key: &[u8],
    tolerance_secs: u64,
) -> Result<&'r str, String> {
    let header = |suffix: &str| {
        let name = format!("{header_prefix}-{suffix}");
        req.header(&name)
            .map(str::trim)
            .ok_or_else(|| format!("missing {name} header"))
    };
    let id = header("id")?;
    let timestamp = header("timestamp")?;
    let signatures = header("signature")?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("{header_prefix}-timestamp is not a Unix timestamp"))?;

    let v1: Vec<&str> = signatures
        .split(' ')
        .filter_map(|entry| match entry.split_once(',') {
            Some(("v1", signature)) => Some(signature),
            _ => None,
        })
        .collect();
    if v1.is_empty() {
        return Err(format!("{header_prefix}-signature has no v1 signature"));
    }

    // The reference libraries sign the timestamp as the integer parsed, not
    // the header's text.
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&req.body);
    let expected = crypto::hmac(Algorithm::Sha256, key, &content);
    if matches_any(&expected, Encoding::Base64, v1) != Outcome::Match {
        return Err(format!("{header_prefix}-signature does not match the body"));
    }
    if !crate::time::within_tolerance(timestamp, req.received_at_ms, tolerance_secs) {
        return Err(format!(
            "{header_prefix}-timestamp is more than {tolerance_secs} s away from the time of receipt"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::decode_secret;

    #[test]
    fn secret_prefix_is_optional_and_the_key_must_be_base64() {
        // The spec's example secret.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Some(key));
        for bad in ["", "whsec_", "whsec_not base64!", "whsec_AA"] {
            assert_eq!(decode_secret(bad), None, "{bad:?}");
        }
    }
}
