//! `zoom`: verifies [Zoom](https://developers.zoom.us/docs/api/webhooks/)
//! webhooks and answers Zoom's endpoint URL validation.
//!
//! Zoom sends `x-zm-request-timestamp: <unix seconds>` and
//! `x-zm-signature: v0=<hex>`, the HMAC-SHA256 of
//! `"v0:{timestamp}:{body}"` keyed with the app's *secret token*.
//!
//! ```yaml
//! verify:
//!   plugin: zoom
//!   with:
//!     secret: "${ZOOM_SECRET_TOKEN}"
//!     tolerance: 300          # seconds, optional (default 300)
//! ```
//!
//! `with:` keys:
//!
//! - `secret` (required): the secret token of the event subscription.
//! - `tolerance` (default 300): how far, in seconds, the timestamp may be
//!   from the time of receipt, either way.
//!
//! URL validation: when the endpoint is saved (and every 72 hours after),
//! Zoom posts a signed `{"event": "endpoint.url_validation", "payload":
//! {"plainToken": "…"}}`. After checking the signature the plugin answers
//! `200 {"plainToken": "…", "encryptedToken": hex(HMAC-SHA256(secret,
//! plainToken))}` and forwards nothing.
//!
//! The event type is the body's `event` (`meeting.started`, …). Zoom sends
//! no delivery id.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, config::SecretAndTolerance,
    crypto::Algorithm, signature,
};
use serde::Deserialize;

/// Zoom documents no window; five minutes is what the other timestamped
/// schemes use.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Zoom;

/// `with.secret` and `with.tolerance`; also the load-time check
/// (`export!`'s `check:`).
fn settings() -> Result<SecretAndTolerance, Error> {
    sdk::config::secret_and_tolerance(DEFAULT_TOLERANCE_SECS)
}

impl Verifier for Zoom {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let SecretAndTolerance { secret, tolerance } = settings()?;
        if let Err(reason) = check(&req, secret.as_bytes(), tolerance) {
            return Ok(Verdict::unauthorized(reason));
        }

        let body: Body = serde_json::from_slice(&req.body).unwrap_or_default();
        if body.event.as_deref() == Some("endpoint.url_validation") {
            let Some(plain) = body.payload.and_then(|p| p.plain_token) else {
                return Ok(Verdict::reject(
                    400,
                    "endpoint.url_validation without payload.plainToken",
                ));
            };
            return Ok(Verdict::respond(validation_response(
                secret.as_bytes(),
                &plain,
            )));
        }

        let mut accepted = Accepted::new();
        if let Some(event) = body.event {
            accepted = accepted.event_type(event);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// Checks `x-zm-signature` over `v0:{timestamp}:{body}`, then the
/// timestamp's age (after the signature, so a forged timestamp reads as a
/// mismatch).
fn check(req: &Request, secret: &[u8], tolerance: u64) -> Result<(), String> {
    let timestamp = req
        .header("x-zm-request-timestamp")
        .map(str::trim)
        .ok_or("missing x-zm-request-timestamp header")?;
    let Ok(timestamp_secs) = timestamp.parse::<i64>() else {
        return Err("x-zm-request-timestamp is not a Unix timestamp".to_owned());
    };
    let header = req
        .header("x-zm-signature")
        .ok_or("missing x-zm-signature header")?;
    let hex =
        signature::strip_prefix(header, "v0=").ok_or("x-zm-signature must look like v0=<hex>")?;
    // Zoom signs the timestamp exactly as sent in the header.
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(&req.body);
    if !signature::verify_hex(Algorithm::Sha256, secret, &message, hex) {
        return Err("x-zm-signature does not match the body".to_owned());
    }
    if !sdk::time::within_tolerance(timestamp_secs, req.received_at_ms, tolerance) {
        return Err(format!(
            "x-zm-request-timestamp is more than {tolerance} s away from the time of receipt"
        ));
    }
    Ok(())
}

/// Zoom's expected answer to `endpoint.url_validation`.
fn validation_response(secret: &[u8], plain_token: &str) -> Response {
    let encrypted = signature::sign_hex(Algorithm::Sha256, secret, plain_token.as_bytes());
    Response::json(
        200,
        &serde_json::json!({ "plainToken": plain_token, "encryptedToken": encrypted }),
    )
}

#[derive(Deserialize, Default)]
struct Body {
    event: Option<String>,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "plainToken")]
    plain_token: Option<String>,
}

sdk::export!(Zoom, stages: [verify], config: [secret, tolerance], check: settings);
