//! `twitter`: answers the X (Twitter) webhook Challenge-Response Check and
//! verifies the events X posts (Account Activity API, X API v2 webhooks).
//!
//! ```yaml
//! verify: { plugin: twitter, with: { secret: "${X_CONSUMER_SECRET}" } }
//! ```
//!
//! `with:` keys:
//!
//! - `secret` (required): the app's consumer secret (API key secret).
//!
//! CRC: X sends `GET ?crc_token=<token>` when the webhook is registered and
//! then regularly (hourly to daily); the plugin answers `200
//! {"response_token": "sha256=<base64 HMAC-SHA256(secret, token)>"}` at once
//! and forwards nothing. Only the secret's holder can compute that answer,
//! so the GET itself needs no credentials.
//!
//! Events: a POST with `x-twitter-webhooks-signature: sha256=<base64>`, the
//! HMAC-SHA256 of the raw body keyed with the same secret. X's scheme has no
//! timestamp. The event type is the first top-level key that ends in
//! `_events` (`tweet_create_events`, `favorite_events`, …).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, crypto::Algorithm,
    signature,
};

struct Twitter;

impl Verifier for Twitter {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        if req.method == "GET" {
            return Ok(match req.query_param("crc_token") {
                Some(token) => Verdict::respond(crc_response(secret.as_bytes(), &token)),
                None => Verdict::reject(400, "GET without crc_token"),
            });
        }

        let Some(header) = req.header("x-twitter-webhooks-signature") else {
            return Ok(Verdict::unauthorized(
                "missing x-twitter-webhooks-signature header",
            ));
        };
        let Some(mac) = signature::strip_prefix(header, "sha256=") else {
            return Ok(Verdict::unauthorized(
                "x-twitter-webhooks-signature must look like sha256=<base64>",
            ));
        };
        if !signature::verify_base64(Algorithm::Sha256, secret.as_bytes(), &req.body, mac) {
            return Ok(Verdict::unauthorized(
                "x-twitter-webhooks-signature does not match the body",
            ));
        }

        let mut accepted = Accepted::new();
        if let Some(kind) = event_type(&req.body) {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The CRC answer X expects.
fn crc_response(secret: &[u8], token: &str) -> Response {
    let mac = signature::sign_base64(Algorithm::Sha256, secret, token.as_bytes());
    Response::json(
        200,
        &serde_json::json!({ "response_token": format!("sha256={mac}") }),
    )
}

/// The first `*_events` key of an Account Activity payload.
fn event_type(body: &[u8]) -> Option<String> {
    // serde_json keeps keys sorted (no `preserve_order`), so "first" is
    // alphabetical: stable for the rare payload with several arrays.
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    body.keys().find(|k| k.ends_with("_events")).cloned()
}

sdk::export!(Twitter, stages: [verify], config: [secret], check: sdk::config::secret);
