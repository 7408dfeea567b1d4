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
    self as sdk, Accepted, Error, Request, Verdict, Verifier, signature::standard_webhooks,
};
use serde::Deserialize;

struct StandardWebhooks;

impl Verifier for StandardWebhooks {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let tolerance =
            sdk::config::get_u64("tolerance", standard_webhooks::DEFAULT_TOLERANCE_SECS)?;
        let key = standard_webhooks::decode_secret(&secret).ok_or_else(|| {
            Error::config("`with.secret` must be a whsec_<base64> signing secret")
        })?;

        // Svix's own headers, only when the standard ones are absent, so a
        // sender that sets both is checked against the standard set.
        let prefix = if req.header("webhook-signature").is_none()
            && req.header("svix-signature").is_some()
        {
            "svix"
        } else {
            "webhook"
        };
        let id = match standard_webhooks::verify(&req, prefix, &key, tolerance) {
            Ok(id) => id,
            Err(reason) => return Ok(Verdict::unauthorized(reason)),
        };

        let mut accepted = Accepted::new().id(id);
        if let Ok(Payload { kind: Some(kind) }) = serde_json::from_slice::<Payload>(&req.body) {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The spec's recommended payload shape: only `type` is read.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(StandardWebhooks, stages: [verify], config: [secret, tolerance]);
