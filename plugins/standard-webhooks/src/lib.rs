//! `standard-webhooks`: verifies [Standard Webhooks] signatures, which is
//! also what Svix sends (with `svix-` header names).
//!
//! The sender sets three headers:
//!
//! - `webhook-id`: the message id, unchanged across retries (the dedup key,
//!   and this plugin's message id);
//! - `webhook-timestamp`: Unix seconds;
//! - `webhook-signature`: space-separated `<version>,<base64>` entries. `v1`
//!   is HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed with the base64
//!   decoding of the secret after its `whsec_` prefix. Several `v1` entries
//!   appear while a secret is rotated: one match is enough. Other versions
//!   (`v1a` is Ed25519) are skipped, as the reference libraries do.
//!
//! Svix senders use `svix-id`, `svix-timestamp` and `svix-signature` with the
//! same meaning; they are used when no `webhook-signature` header is present.
//!
//! ```yaml
//! verify:
//!   plugin: standard-webhooks
//!   with:
//!     secret: "${WEBHOOK_SECRET}"   # whsec_<base64>; the prefix is optional
//!     tolerance: 300                # seconds, optional (default 300)
//! ```
//!
//! The timestamp must lie within `tolerance` seconds of the time the gateway
//! received the request, in either direction (the spec's replay rule). The
//! event type is the body's top-level `type`, when the body is JSON and has
//! one (the spec's recommended payload shape).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Plugin, Request, Verdict, crypto::Algorithm, signature,
};
use serde::Deserialize;

/// The spec's reference libraries use five minutes.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The secret's conventional prefix; the key is the base64 after it.
const SECRET_PREFIX: &str = "whsec_";

struct StandardWebhooks;

impl Plugin for StandardWebhooks {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let tolerance = sdk::config::get_u64("tolerance", DEFAULT_TOLERANCE_SECS)?;
        let key = decode_secret(&secret)?;

        // Svix's own headers, only when the standard ones are absent, so a
        // sender that sets both is checked against the standard set.
        let prefix = if req.header("webhook-signature").is_none()
            && req.header("svix-signature").is_some()
        {
            "svix"
        } else {
            "webhook"
        };
        let header = |suffix: &str| {
            let name = format!("{prefix}-{suffix}");
            match req.header(&name) {
                Some(value) => Ok(value.trim()),
                None => Err(Verdict::unauthorized(format!("missing {name} header"))),
            }
        };
        let (id, timestamp, signatures) =
            match (header("id"), header("timestamp"), header("signature")) {
                (Ok(id), Ok(timestamp), Ok(signatures)) => (id, timestamp, signatures),
                (Err(missing), _, _) | (_, Err(missing), _) | (_, _, Err(missing)) => {
                    return Ok(missing);
                }
            };
        let Ok(timestamp) = timestamp.parse::<i64>() else {
            return Ok(Verdict::unauthorized(format!(
                "{prefix}-timestamp is not a Unix timestamp"
            )));
        };

        // The reference libraries sign the timestamp as the integer parsed.
        let mut content = format!("{id}.{timestamp}.").into_bytes();
        content.extend_from_slice(&req.body);
        let expected = sdk::crypto::hmac(Algorithm::Sha256, &key, &content);

        let mut saw_v1 = false;
        let mut matched = false;
        for entry in signatures.split(' ') {
            let Some(("v1", sig)) = entry.split_once(',') else {
                continue;
            };
            saw_v1 = true;
            if let Some(sig) = signature::decode_base64(sig) {
                // No early exit: every candidate costs the same.
                matched |= sdk::crypto::constant_time_eq(&sig, &expected);
            }
        }
        if !saw_v1 {
            return Ok(Verdict::unauthorized(format!(
                "{prefix}-signature has no v1 signature"
            )));
        }
        if !matched {
            return Ok(Verdict::unauthorized(format!(
                "{prefix}-signature does not match the body"
            )));
        }
        if !sdk::time::within_tolerance(timestamp, req.received_at_ms, tolerance) {
            return Ok(Verdict::unauthorized(format!(
                "{prefix}-timestamp is more than {tolerance} s away from the time of receipt"
            )));
        }

        let mut accepted = Accepted::new().id(id);
        if let Ok(Payload { kind: Some(kind) }) = serde_json::from_slice::<Payload>(&req.body) {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The HMAC key: base64 after an optional `whsec_` prefix.
fn decode_secret(secret: &str) -> Result<Vec<u8>, Error> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    signature::decode_base64(encoded)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| Error::config("`with.secret` must be a whsec_<base64> signing secret"))
}

/// The spec's recommended payload shape: only `type` is read.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(StandardWebhooks, stages: [verify]);
