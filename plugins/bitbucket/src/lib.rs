//! `bitbucket`: verifies Bitbucket webhook signatures (Cloud and Data
//! Center, which use the same scheme).
//!
//! A webhook with a secret is signed with `X-Hub-Signature: sha256=<hex>`,
//! the HMAC-SHA256 of the raw body keyed with that secret. (Unlike GitHub,
//! Bitbucket puts SHA-256 in the header *without* the `-256` suffix.)
//!
//! ```yaml
//! verify: { plugin: bitbucket, with: { secret: "${BITBUCKET_WEBHOOK_SECRET}" } }
//! ```
//!
//! The event type is `X-Event-Key` (`repo:push`, `pullrequest:created`, ...).
//! The message id is Bitbucket Cloud's per-delivery `X-Request-UUID`, or
//! Data Center's `X-Request-Id`. Bitbucket signs no timestamp.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, crypto::Algorithm, signature,
};

struct Bitbucket;

impl Verifier for Bitbucket {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        let Some(header) = req.header("x-hub-signature") else {
            return Ok(Verdict::unauthorized("missing X-Hub-Signature header"));
        };
        let Some(hex) = signature::strip_prefix(header, "sha256=") else {
            return Ok(Verdict::unauthorized(
                "X-Hub-Signature must look like sha256=<hex>",
            ));
        };
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, hex) {
            return Ok(Verdict::unauthorized(
                "X-Hub-Signature does not match the body",
            ));
        }

        let mut accepted = Accepted::new();
        if let Some(event) = req.header("x-event-key") {
            accepted = accepted.event_type(event);
        }
        if let Some(id) = req
            .header("x-request-uuid")
            .or_else(|| req.header("x-request-id"))
        {
            accepted = accepted.id(id);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

sdk::export!(Bitbucket, stages: [verify], config: [secret], check: sdk::config::secret);
