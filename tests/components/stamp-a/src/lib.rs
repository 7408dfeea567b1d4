//! Test component: version "a" of a plugin that is hot-reloaded while
//! requests flow (`stamp-b` is version "b"; the two differ only in
//! [`STAMP`]). Used as both verifier and transform of one route, so a
//! delivery shows which version ran each stage:
//!
//! - verify checks `X-Hub-Signature-256` (HMAC-SHA256 of the body with
//!   `with.secret`), accepts with event type `stamp-<STAMP>` and answers
//!   the sender `200 stamp-<STAMP>` (so a client, e.g. the reload
//!   benchmark, sees which version served it);
//! - transform copies that event type to `x-verify-stamp`, adds its own
//!   `x-transform-stamp: <STAMP>`, and `x-tag: <with.tag>` when set.
//!
//! A request that ran two versions would arrive with two different stamps.
use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Message, Plugin, Request, Response, Verdict, crypto::Algorithm,
    signature,
};

/// What this build stamps.
const STAMP: &str = "a";

struct Stamp;

impl Plugin for Stamp {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let Some(sig) = req
            .header("x-hub-signature-256")
            .and_then(|h| signature::strip_prefix(h, "sha256="))
        else {
            return Ok(Verdict::unauthorized("missing X-Hub-Signature-256"));
        };
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, sig) {
            return Ok(Verdict::unauthorized("X-Hub-Signature-256 does not match"));
        }
        Ok(Verdict::accept_with(
            Accepted::new()
                .event_type(format!("stamp-{STAMP}"))
                .reply(Response::text(200, format!("stamp-{STAMP}"))),
        ))
    }

    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        let verified_by = msg.event_type.clone().unwrap_or_else(|| "none".into());
        msg.set_header("x-verify-stamp", verified_by);
        msg.set_header("x-transform-stamp", STAMP);
        if let Some(tag) = sdk::config::get("tag") {
            msg.set_header("x-tag", tag);
        }
        Ok(vec![msg])
    }
}

sdk::export!(Stamp, stages: [verify, transform]);
