//! `dropbox`: verifies Dropbox webhook notifications and answers the
//! endpoint verification challenge.
//!
//! When a webhook URI is added, Dropbox sends `GET ?challenge=<s>` and
//! expects `200` with body `<s>`; the plugin answers it as `text/plain` with
//! `X-Content-Type-Options: nosniff`, as Dropbox asks (echoing caller text
//! must not be sniffed into HTML). Notifications are `POST`s signed with
//! `X-Dropbox-Signature: <hex>`, the HMAC-SHA256 of the raw body keyed with
//! the app secret.
//!
//! ```yaml
//! verify:
//!   plugin: dropbox
//!   with:
//!     secret: "${DROPBOX_APP_SECRET}"
//! ```
//!
//! Dropbox signs no timestamp, so replays cannot be bounded here; a
//! notification only says "something changed for these accounts", so a
//! replayed one is harmless by design. It carries no delivery id either.

use hookgate_plugin_sdk::{
    self as sdk, Error, Request, Response, Verdict, Verifier, crypto::Algorithm, signature,
};

struct Dropbox;

impl Verifier for Dropbox {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        if req.method == "GET" {
            return Ok(match req.query_param("challenge") {
                Some(challenge) => Verdict::respond(Response::text(200, challenge)),
                None => Verdict::reject(400, "GET needs a challenge query parameter"),
            });
        }

        let Some(hex) = req.header("x-dropbox-signature") else {
            return Ok(Verdict::unauthorized("missing X-Dropbox-Signature header"));
        };
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, hex) {
            return Ok(Verdict::unauthorized(
                "X-Dropbox-Signature does not match the body",
            ));
        }
        Ok(Verdict::accept())
    }
}

sdk::export!(Dropbox, stages: [verify], config: [secret], check: sdk::config::secret);
