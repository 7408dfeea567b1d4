//! `zendesk`: verifies Zendesk webhook signatures.
//!
//! Zendesk sends `X-Zendesk-Webhook-Signature-Timestamp` and
//! `X-Zendesk-Webhook-Signature: <base64>`, the HMAC-SHA256 of the timestamp
//! header's text immediately followed by the raw body (no separator), keyed
//! with the webhook's signing secret as text.
//!
//! ```yaml
//! verify:
//!   plugin: zendesk
//!   with:
//!     secret: "${ZENDESK_SIGNING_SECRET}"
//!     tolerance: 300       # seconds, optional (default 300)
//! ```
//!
//! Zendesk's timestamp is an RFC 3339 / ISO 8601 UTC time such as
//! `2021-07-25T10:00:00Z` (Unix seconds are accepted too). It is signed, so
//! requiring it to lie within `tolerance` seconds of the time of receipt
//! bounds replays.
//!
//! The event type is the body's `type` (`zen:event-type:ticket.created`,
//! ...) and the message id its `id`, when the body is a Zendesk event
//! (trigger and automation webhooks have free-form bodies and get neither).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, config::SecretAndTolerance,
    crypto::Algorithm, signature,
};
use serde::Deserialize;

/// Five minutes, the window most providers and libraries use.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Zendesk;

/// `with.secret` and `with.tolerance`; also the load-time check
/// (`export!`'s `check:`).
fn settings() -> Result<SecretAndTolerance, Error> {
    sdk::config::secret_and_tolerance(DEFAULT_TOLERANCE_SECS)
}

impl Verifier for Zendesk {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let SecretAndTolerance { secret, tolerance } = settings()?;

        let Some(timestamp) = req.header("x-zendesk-webhook-signature-timestamp") else {
            return Ok(Verdict::unauthorized(
                "missing X-Zendesk-Webhook-Signature-Timestamp header",
            ));
        };
        let Some(timestamp_secs) = parse_timestamp(timestamp.trim()) else {
            return Ok(Verdict::unauthorized(
                "X-Zendesk-Webhook-Signature-Timestamp is not an RFC 3339 time",
            ));
        };
        let Some(mac) = req.header("x-zendesk-webhook-signature") else {
            return Ok(Verdict::unauthorized(
                "missing X-Zendesk-Webhook-Signature header",
            ));
        };

        // The timestamp is signed exactly as sent.
        let mut content = timestamp.as_bytes().to_vec();
        content.extend_from_slice(&req.body);
        if !signature::verify_base64(Algorithm::Sha256, secret.as_bytes(), &content, mac) {
            return Ok(Verdict::unauthorized(
                "X-Zendesk-Webhook-Signature does not match the timestamp and body",
            ));
        }
        if !sdk::time::within_tolerance(timestamp_secs, req.received_at_ms, tolerance) {
            return Ok(Verdict::unauthorized(format!(
                "X-Zendesk-Webhook-Signature-Timestamp is more than {tolerance} s away from the time of receipt"
            )));
        }

        let mut accepted = Accepted::new();
        if let Ok(event) = serde_json::from_slice::<Event>(&req.body) {
            if let Some(id) = event.id {
                accepted = accepted.id(id);
            }
            if let Some(kind) = event.kind {
                accepted = accepted.event_type(kind);
            }
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The fields of a Zendesk event body this plugin reads.
#[derive(Deserialize)]
struct Event {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Unix seconds of the timestamp header: plain Unix seconds, or an RFC 3339
/// time (Zendesk's documented form).
fn parse_timestamp(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .or_else(|| sdk::time::parse_rfc3339(text))
}

sdk::export!(Zendesk, stages: [verify], config: [secret, tolerance], check: settings);
