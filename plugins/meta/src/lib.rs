//! `meta`: verifies Meta webhooks (Facebook, Instagram, WhatsApp, Messenger)
//! and answers the subscription verification request.
//!
//! When a callback URL is configured, Meta sends
//! `GET ?hub.mode=subscribe&hub.challenge=<n>&hub.verify_token=<t>`; if `t`
//! equals the verify token typed into the app dashboard (`with.verify_token`,
//! compared in constant time) the plugin answers `200 text/plain` with `<n>`,
//! otherwise `403`. Event notifications are `POST`s signed with
//! `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed
//! with the *app secret* (`with.secret`), which is a different value from the
//! verify token.
//!
//! ```yaml
//! verify:
//!   plugin: meta
//!   with:
//!     secret: "${META_APP_SECRET}"
//!     verify_token: "${META_VERIFY_TOKEN}"   # needed to answer the GET handshake
//! ```
//!
//! The event type is the body's `object` (`page`, `instagram`,
//! `whatsapp_business_account`, ...). Meta batches entries and sends no
//! delivery id, so none is set. Meta signs no timestamp either.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, crypto::Algorithm,
    signature,
};
use serde::Deserialize;

struct Meta;

impl Verifier for Meta {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        if req.method == "GET" {
            return handshake(&req);
        }

        let Some(header) = req.header("x-hub-signature-256") else {
            return Ok(Verdict::unauthorized("missing X-Hub-Signature-256 header"));
        };
        let Some(hex) = signature::strip_prefix(header, "sha256=") else {
            return Ok(Verdict::unauthorized(
                "X-Hub-Signature-256 must look like sha256=<hex>",
            ));
        };
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, hex) {
            return Ok(Verdict::unauthorized(
                "X-Hub-Signature-256 does not match the body",
            ));
        }

        let mut accepted = Accepted::new();
        if let Ok(Notification {
            object: Some(object),
        }) = serde_json::from_slice(&req.body)
        {
            accepted = accepted.event_type(object);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// Answers `GET ?hub.mode=subscribe&hub.challenge=..&hub.verify_token=..`.
fn handshake(req: &Request) -> Result<Verdict, Error> {
    // Only required here, so a route that never needs the handshake (the
    // subscription already exists) still works without it.
    let verify_token = sdk::config::require_str("verify_token")?;

    if req.query_param("hub.mode").as_deref() != Some("subscribe") {
        return Ok(Verdict::forbidden("hub.mode must be subscribe"));
    }
    let token = req.query_param("hub.verify_token").unwrap_or_default();
    if !sdk::crypto::constant_time_eq(token.as_bytes(), verify_token.as_bytes()) {
        return Ok(Verdict::forbidden("hub.verify_token does not match"));
    }
    Ok(match req.query_param("hub.challenge") {
        Some(challenge) => Verdict::respond(Response::text(200, challenge)),
        None => Verdict::reject(400, "missing hub.challenge query parameter"),
    })
}

/// The top-level field of a Meta notification this plugin reads.
#[derive(Deserialize)]
struct Notification {
    object: Option<String>,
}

sdk::export!(Meta, stages: [verify], config: [secret, verify_token], check: sdk::config::secret);
