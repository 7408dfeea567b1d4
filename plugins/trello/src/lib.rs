//! `trello`: verifies Trello webhook signatures and answers Trello's
//! creation check.
//!
//! Trello signs each callback with `X-Trello-Webhook: <base64>`, the
//! HMAC-SHA1 of the raw body *followed by the callback URL exactly as it was
//! registered* (`callbackURL` when the webhook was created), keyed with the
//! application's OAuth secret. The URL is part of the signed content, so
//! `with.callback_url` must match the registration character for character
//! (scheme, host, path, query, trailing slash).
//!
//! ```yaml
//! verify:
//!   plugin: trello
//!   with:
//!     secret: "${TRELLO_APP_SECRET}"
//!     callback_url: "https://hooks.example.com/hooks/trello"
//! ```
//!
//! When a webhook is created Trello sends a `HEAD` request to the callback
//! URL and needs `200`; the plugin answers it with an empty `200`.
//!
//! The event type is the action's `type` (`updateCard`, ...) and the message
//! id the action's `id`, unique per action. Trello signs no timestamp.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, crypto::Algorithm,
    signature,
};
use serde::Deserialize;

struct Trello;

/// The route's `with:` block.
struct Settings {
    secret: String,
    callback_url: String,
}

/// Reads `with:`; also the load-time check (`export!`'s `check:`), so a
/// value that would fail every request fails `hookgate check` instead.
fn settings() -> Result<Settings, Error> {
    Ok(Settings {
        secret: sdk::config::require_str("secret")?,
        callback_url: sdk::config::require_str("callback_url")?,
    })
}

impl Verifier for Trello {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let Settings {
            secret,
            callback_url,
        } = settings()?;

        if req.method == "HEAD" {
            return Ok(Verdict::respond(Response::empty(200)));
        }

        let Some(mac) = req.header("x-trello-webhook") else {
            return Ok(Verdict::unauthorized("missing X-Trello-Webhook header"));
        };
        let mut content = req.body.clone();
        content.extend_from_slice(callback_url.as_bytes());
        if !signature::verify_base64(Algorithm::Sha1, secret.as_bytes(), &content, mac) {
            return Ok(Verdict::unauthorized(
                "X-Trello-Webhook does not match the body and callback URL",
            ));
        }

        let mut accepted = Accepted::new();
        if let Ok(Callback {
            action: Some(action),
        }) = serde_json::from_slice(&req.body)
        {
            if let Some(id) = action.id {
                accepted = accepted.id(id);
            }
            if let Some(kind) = action.kind {
                accepted = accepted.event_type(kind);
            }
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The part of a Trello callback this plugin reads.
#[derive(Deserialize)]
struct Callback {
    action: Option<Action>,
}

/// The action that triggered the callback.
#[derive(Deserialize)]
struct Action {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(Trello, stages: [verify], config: [secret, callback_url], check: settings);
