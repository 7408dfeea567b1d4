//! `graph`: handles Microsoft Graph change notifications (subscriptions to
//! mail, calendar, Teams chat messages, drive items, ...).
//!
//! Graph does not sign notifications with an HMAC. Its checks are:
//!
//! 1. **Endpoint validation.** Creating or renewing a subscription makes
//!    Graph `POST` to the notification URL with a `validationToken` query
//!    parameter; the endpoint must answer within ten seconds with `200`,
//!    `text/plain` and the *decoded* token as the body. The plugin does that
//!    and forwards nothing.
//! 2. **`clientState`.** A subscription may set a secret `clientState`; Graph
//!    then repeats it in every item of the notification's `value` array. With
//!    `with.client_state` set, every item must carry it (constant-time
//!    compare) or the request is refused with `403`.
//!
//! ```yaml
//! verify:
//!   plugin: graph
//!   with:
//!     client_state: "${GRAPH_CLIENT_STATE}"   # optional but strongly advised
//! ```
//!
//! Without `client_state` any well-formed request is accepted: use it, or
//! an unguessable route path, or both. (Rich notifications also carry
//! `validationTokens` JWTs; checking those needs Entra ID keys and is out of
//! scope here.)
//!
//! The event type is the first item's `changeType` (`created`, `updated`,
//! `deleted`) or, for lifecycle notifications, its `lifecycleEvent`. When the
//! collection holds exactly one item with an `id`, that id is the message id.

use hookgate_plugin_sdk::{self as sdk, Accepted, Error, Request, Response, Verdict, Verifier};
use serde::Deserialize;

struct Graph;

/// `with.client_state`; also the load-time check (`export!`'s `check:`).
fn client_state() -> Result<Option<String>, Error> {
    sdk::config::optional_str("client_state")
}

impl Verifier for Graph {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let client_state = client_state()?;

        // `query_param` percent-decodes: Graph wants the token decoded.
        if let Some(token) = req.query_param("validationToken") {
            return Ok(Verdict::respond(Response::text(200, token)));
        }

        let collection = match serde_json::from_slice::<Collection>(&req.body) {
            Ok(collection) => collection,
            Err(_) if client_state.is_none() => return Ok(Verdict::accept()),
            Err(_) => {
                return Ok(Verdict::reject(
                    400,
                    "body is not a Graph notification collection ({\"value\": [...]})",
                ));
            }
        };

        if let Some(expected) = &client_state {
            if collection.value.is_empty() {
                return Ok(Verdict::reject(400, "notification collection is empty"));
            }
            // Every item is checked, with no early exit: one forged item in
            // an otherwise genuine batch must not slip through.
            let all_match = collection.value.iter().fold(true, |ok, item| {
                let sent = item.client_state.as_deref().unwrap_or_default();
                sdk::crypto::constant_time_eq(sent.as_bytes(), expected.as_bytes()) & ok
            });
            if !all_match {
                return Ok(Verdict::forbidden(
                    "clientState does not match the subscription's client state",
                ));
            }
        }

        let mut accepted = Accepted::new();
        if let Some(first) = collection.value.first()
            && let Some(kind) = first
                .change_type
                .clone()
                .or_else(|| first.lifecycle_event.clone())
        {
            accepted = accepted.event_type(kind);
        }
        if let [Notification { id: Some(id), .. }] = collection.value.as_slice() {
            accepted = accepted.id(id.clone());
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// A `changeNotificationCollection`.
#[derive(Deserialize)]
struct Collection {
    value: Vec<Notification>,
}

/// The fields of a `changeNotification` this plugin reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    id: Option<String>,
    client_state: Option<String>,
    change_type: Option<String>,
    lifecycle_event: Option<String>,
}

sdk::export!(Graph, stages: [verify], config: [client_state], check: client_state);
