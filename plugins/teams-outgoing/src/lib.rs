//! `teams-outgoing`: verifies Microsoft Teams *outgoing webhook* requests and
//! answers them synchronously.
//!
//! When someone @mentions an outgoing webhook in a channel, Teams posts the
//! message (a Bot Framework activity) with `Authorization: HMAC <base64>`:
//! the HMAC-SHA256 of the raw body keyed with the *base64-decoded* security
//! token Teams showed when the webhook was created. Teams waits (about ten
//! seconds) for a reply message and shows it in the channel, so on success
//! this plugin answers `200 {"type": "message", "text": <reply>}` itself and,
//! by default, still forwards the activity to the route's destinations.
//!
//! ```yaml
//! verify:
//!   plugin: teams-outgoing
//!   with:
//!     secret: "${TEAMS_SECURITY_TOKEN}"  # the token exactly as Teams shows it (base64)
//!     reply: "On it!"                    # optional reply text (default below)
//!     forward: true                      # optional; false answers and forwards nothing
//! ```
//!
//! The message id is the activity's `id` and the event type its `type`
//! (`message`).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, crypto::Algorithm,
    signature,
};
use serde::Deserialize;

/// What Teams shows when the route gives no `reply`.
const DEFAULT_REPLY: &str = "Received.";

struct TeamsOutgoing;

impl Verifier for TeamsOutgoing {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let Some(key) = signature::decode_base64(&secret).filter(|key| !key.is_empty()) else {
            return Err(Error::config(
                "`with.secret` must be the base64 security token Teams shows for the webhook",
            ));
        };
        let reply_text = sdk::config::get("reply").unwrap_or_else(|| DEFAULT_REPLY.to_owned());
        let forward = sdk::config::get_bool("forward", true)?;

        let Some(header) = req.header("authorization") else {
            return Ok(Verdict::unauthorized("missing Authorization header"));
        };
        let Some(mac) = signature::strip_prefix(header, "HMAC ") else {
            return Ok(Verdict::unauthorized(
                "Authorization must look like HMAC <base64>",
            ));
        };
        if !signature::verify_base64(Algorithm::Sha256, &key, &req.body, mac) {
            return Ok(Verdict::unauthorized(
                "Authorization HMAC does not match the body",
            ));
        }

        let reply = Response::json(
            200,
            &serde_json::json!({ "type": "message", "text": reply_text }),
        );
        if !forward {
            return Ok(Verdict::respond(reply));
        }

        let mut accepted = Accepted::new().reply(reply);
        if let Ok(activity) = serde_json::from_slice::<Activity>(&req.body) {
            if let Some(id) = activity.id {
                accepted = accepted.id(id);
            }
            if let Some(kind) = activity.kind {
                accepted = accepted.event_type(kind);
            }
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The fields of a Bot Framework activity this plugin reads.
#[derive(Deserialize)]
struct Activity {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(TeamsOutgoing, stages: [verify], config: [secret, reply, forward]);
