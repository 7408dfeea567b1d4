//! `kaizala`: checks Microsoft Kaizala webhook callbacks and answers the
//! callback-URL validation.
//!
//! A Kaizala webhook subscription may set a `callBackToken`; Kaizala then
//! sends it in the `kz-callback-token` header of every callback. This plugin
//! compares it, in constant time, with `with.secret`. (There is no body
//! signature in this scheme: the token is a shared password, so use HTTPS.)
//!
//! ```yaml
//! verify:
//!   plugin: kaizala
//!   with:
//!     secret: "${KAIZALA_CALLBACK_TOKEN}"   # the subscription's callBackToken
//! ```
//!
//! Before creating a subscription Kaizala validates the callback URL: it
//! sends a `validationToken` query parameter and expects the token back as
//! plain text within five seconds. Any request carrying `validationToken`
//! (as a query parameter, or as `{"validationToken": ...}` in a JSON body) is
//! answered `200 text/plain` with exactly that token and forwarded nowhere.
//! Echoing is safe without the callback token: the answer reveals nothing the
//! caller did not send, and nothing reaches a destination.
//!
//! The event type is the body's `eventType` (`TextMessageCreated`, ...) and
//! the message id its `eventId`, when present.

use hookgate_plugin_sdk::{self as sdk, Accepted, Error, Request, Response, Verdict, Verifier};
use serde::Deserialize;

struct Kaizala;

impl Verifier for Kaizala {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        let body = serde_json::from_slice::<Body>(&req.body).ok();
        let validation_token = req
            .query_param("validationToken")
            .or_else(|| body.as_ref().and_then(|b| b.validation_token.clone()));
        if let Some(token) = validation_token {
            return Ok(Verdict::respond(Response::text(200, token)));
        }

        let Some(token) = req.header("kz-callback-token") else {
            return Ok(Verdict::unauthorized("missing kz-callback-token header"));
        };
        if !sdk::crypto::constant_time_eq(token.trim().as_bytes(), secret.as_bytes()) {
            return Ok(Verdict::unauthorized(
                "kz-callback-token does not match the subscription's callback token",
            ));
        }

        let mut accepted = Accepted::new();
        if let Some(body) = body {
            if let Some(id) = body.event_id {
                accepted = accepted.id(id);
            }
            if let Some(kind) = body.event_type {
                accepted = accepted.event_type(kind);
            }
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The fields of a Kaizala callback this plugin reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    validation_token: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
}

sdk::export!(Kaizala, stages: [verify], config: [secret], check: sdk::config::secret);
