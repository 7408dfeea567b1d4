//! `slack`: verifies Slack request signatures and answers the Events API
//! `url_verification` handshake.
//!
//! Slack sends `X-Slack-Request-Timestamp: <unix>` and
//! `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of `"v0:{timestamp}:{body}"`
//! keyed with the app's signing secret. The timestamp must lie within
//! `tolerance` seconds of the time the gateway received the request: it is
//! part of the signed string, so this bounds replays.
//!
//! ```yaml
//! verify:
//!   plugin: slack
//!   with:
//!     secret: "${SLACK_SIGNING_SECRET}"
//!     tolerance: 300          # seconds, optional (default 300, Slack's advice)
//! ```
//!
//! When the Events API checks a request URL it posts a *signed*
//! `{"type": "url_verification", "challenge": "..."}`; after the signature is
//! verified the plugin answers `200 text/plain` with the challenge (one of the
//! three forms Slack accepts) and forwards nothing.
//!
//! For Events API callbacks the event type is `event.type` (`message`,
//! `app_mention`, ...) and the message id is `event_id`, which Slack keeps
//! across its retries (`X-Slack-Retry-Num`), so retries deduplicate. Other
//! JSON bodies take their top-level `type`. Form-encoded posts (slash
//! commands, interactivity) are verified the same way and forwarded without
//! an event type.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, config::SecretAndTolerance,
    crypto::Algorithm, signature,
};
use serde::Deserialize;

/// Slack's documentation says to ignore requests older than five minutes.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Slack;

/// `with.secret` and `with.tolerance`; also the load-time check
/// (`export!`'s `check:`).
fn settings() -> Result<SecretAndTolerance, Error> {
    sdk::config::secret_and_tolerance(DEFAULT_TOLERANCE_SECS)
}

impl Verifier for Slack {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let SecretAndTolerance { secret, tolerance } = settings()?;

        let Some(timestamp) = req.header("x-slack-request-timestamp") else {
            return Ok(Verdict::unauthorized(
                "missing X-Slack-Request-Timestamp header",
            ));
        };
        let Ok(timestamp_secs) = timestamp.trim().parse::<i64>() else {
            return Ok(Verdict::unauthorized(
                "X-Slack-Request-Timestamp is not a Unix timestamp",
            ));
        };
        let Some(header) = req.header("x-slack-signature") else {
            return Ok(Verdict::unauthorized("missing X-Slack-Signature header"));
        };
        let Some(hex) = signature::strip_prefix(header, "v0=") else {
            return Ok(Verdict::unauthorized(
                "X-Slack-Signature must look like v0=<hex>",
            ));
        };

        // Slack's SDKs sign the timestamp exactly as sent in the header.
        let mut base = format!("v0:{}:", timestamp.trim()).into_bytes();
        base.extend_from_slice(&req.body);
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &base, hex) {
            return Ok(Verdict::unauthorized(
                "X-Slack-Signature does not match the body",
            ));
        }
        if !sdk::time::within_tolerance(timestamp_secs, req.received_at_ms, tolerance) {
            return Ok(Verdict::unauthorized(format!(
                "X-Slack-Request-Timestamp is more than {tolerance} s away from the time of receipt"
            )));
        }

        let Ok(body) = serde_json::from_slice::<Body>(&req.body) else {
            // Slash commands and interactivity are form-encoded: authentic,
            // but without a JSON envelope to read.
            return Ok(Verdict::accept());
        };
        if body.kind.as_deref() == Some("url_verification") {
            return Ok(match body.challenge {
                Some(challenge) => Verdict::respond(Response::text(200, challenge)),
                None => Verdict::reject(400, "url_verification without a challenge"),
            });
        }

        let mut accepted = Accepted::new();
        let event_type = match (body.kind.as_deref(), body.event) {
            (Some("event_callback"), Some(Event { kind: Some(inner) })) => Some(inner),
            (Some(outer), _) => Some(outer.to_owned()),
            (None, _) => None,
        };
        if let Some(event_type) = event_type {
            accepted = accepted.event_type(event_type);
        }
        if let Some(id) = body.event_id {
            accepted = accepted.id(id);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The fields of a Slack Events API envelope this plugin reads.
#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<Event>,
}

/// The inner event of an `event_callback`.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(Slack, stages: [verify], config: [secret, tolerance], check: settings);
