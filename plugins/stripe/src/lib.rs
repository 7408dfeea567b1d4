//! `stripe`: verifies Stripe webhook signatures.
//!
//! Stripe sends `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`. Each
//! `v1` is the HMAC-SHA256 of `"{t}.{body}"` keyed with the endpoint's
//! signing secret *as text* (the whole `whsec_...` string, not decoded).
//! During a secret roll Stripe signs with every active secret, so the header
//! carries several `v1` entries: one match is enough. Other schemes (`v0`,
//! test-mode extras) are ignored, as Stripe's own libraries do.
//!
//! ```yaml
//! verify:
//!   plugin: stripe
//!   with:
//!     secret: "${STRIPE_WEBHOOK_SECRET}"   # whsec_...
//!     tolerance: 300                       # seconds, optional (default 300)
//! ```
//!
//! `t` must lie within `tolerance` seconds of the time the gateway received
//! the request (either direction): the timestamp is signed, so this bounds
//! how long a captured request can be replayed. The message id is the event
//! id (`id` in the body, `evt_...`), which Stripe keeps across retries, and
//! the event type is the body's `type` (`invoice.paid`, ...).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, config::SecretAndTolerance,
    crypto::Algorithm, signature,
};
use serde::Deserialize;

/// Stripe's libraries default to five minutes.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Stripe;

/// `with.secret` and `with.tolerance`; also the load-time check
/// (`export!`'s `check:`).
fn settings() -> Result<SecretAndTolerance, Error> {
    sdk::config::secret_and_tolerance(DEFAULT_TOLERANCE_SECS)
}

impl Verifier for Stripe {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let SecretAndTolerance { secret, tolerance } = settings()?;

        let Some(header) = req.header("stripe-signature") else {
            return Ok(Verdict::unauthorized("missing Stripe-Signature header"));
        };
        let parsed = match parse_header(header) {
            Ok(parsed) => parsed,
            Err(reason) => return Ok(Verdict::unauthorized(reason)),
        };

        // Stripe's libraries sign the timestamp as the integer they parsed.
        let mut signed = format!("{}.", parsed.timestamp).into_bytes();
        signed.extend_from_slice(&req.body);
        // One HMAC, then a cheap constant-time compare per candidate: a
        // header stuffed with `v1` entries cannot multiply the hashing work.
        let expected = sdk::crypto::hmac(Algorithm::Sha256, secret.as_bytes(), &signed);
        // A malformed `v1` entry is one more mismatch, not a reason of its own.
        if signature::matches_any(&expected, signature::Encoding::Hex, parsed.signatures)
            != signature::Outcome::Match
        {
            return Ok(Verdict::unauthorized(
                "Stripe-Signature does not match the body",
            ));
        }
        if !sdk::time::within_tolerance(parsed.timestamp, req.received_at_ms, tolerance) {
            return Ok(Verdict::unauthorized(format!(
                "Stripe-Signature timestamp is more than {tolerance} s away from the time of receipt"
            )));
        }

        Ok(Verdict::accept_with(event_head(&req.body)))
    }
}

/// The parts of a `Stripe-Signature` header this plugin uses.
struct ParsedHeader<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

/// Splits `t=...,v1=...,v1=...`; the error is the rejection reason.
fn parse_header(header: &str) -> Result<ParsedHeader<'_>, String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = Some(value.trim()),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err("Stripe-Signature has no t=<timestamp> element".to_owned());
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return Err("Stripe-Signature t= is not a Unix timestamp".to_owned());
    };
    if signatures.is_empty() {
        return Err("Stripe-Signature has no v1 signature".to_owned());
    }
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

/// The two top-level fields of a Stripe event this plugin reads.
#[derive(Deserialize)]
struct EventHead {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Id and type from the (already authenticated) event body. A body that is
/// not an event is still authentic, so it is accepted without them.
fn event_head(body: &[u8]) -> Accepted {
    let mut accepted = Accepted::new();
    if let Ok(head) = serde_json::from_slice::<EventHead>(body) {
        if let Some(id) = head.id {
            accepted = accepted.id(id);
        }
        if let Some(kind) = head.kind {
            accepted = accepted.event_type(kind);
        }
    }
    accepted
}

sdk::export!(Stripe, stages: [verify], config: [secret, tolerance], check: settings);
