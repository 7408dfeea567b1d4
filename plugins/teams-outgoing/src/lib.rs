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
//! `with:` keys:
//!
//! - `secret` (required): the security token exactly as Teams shows it.
//! - `reply` (default `Received.`): the reply's text.
//! - `card`: reply with a card instead: an Adaptive Card (`{"type":
//!   "AdaptiveCard", …}`) or an Office 365 connector card (`{"@type":
//!   "MessageCard", …}`), as YAML or as JSON text. It is sent as the
//!   reply message's attachment (`application/vnd.microsoft.card.adaptive`
//!   or `application/vnd.microsoft.teams.card.o365connector`), with `reply`
//!   as the message text when that is given too. A whole Bot Framework
//!   message (`{"type": "message", …}`) is sent as it is.
//! - `card_template`: like `card`, but a [MiniJinja] template over the
//!   incoming activity, rendered for each request. It sees `body` (the
//!   activity) and the activity's top-level keys directly (`text`, `from`,
//!   `conversation`, …); insert values with `| tojson`. Its output must be
//!   one of the JSON shapes `card` takes. `card` and `card_template`
//!   exclude each other.
//! - `forward` (default `true`): `false` answers and forwards nothing.
//!
//! ```yaml
//! with:
//!   secret: "${TEAMS_SECURITY_TOKEN}"
//!   card_template: |
//!     {"type": "AdaptiveCard", "version": "1.4",
//!      "body": [{"type": "TextBlock", "wrap": true,
//!                "text": {{ ("Ticket opened by " ~ from.name) | tojson }}}]}
//! ```
//!
//! To answer with a backend's reply instead, relay the route (a gateway
//! setting beside `verify:`, not a `with:` key): `relay: { to: bot,
//! reply_timeout: 5s }` sends the activity to the `http` destination `bot`
//! and answers Teams with its reply when it comes within `reply_timeout`;
//! this plugin's reply (`reply`, `card` or `card_template`) is then the
//! fallback for a late or failing backend, and the activity is still
//! delivered to `bot` with retries.
//!
//! A card or template that is not such JSON is a config error, so a typo
//! is a 500 the operator sees, not a silent text reply.
//!
//! The message id is the activity's `id` and the event type its `type`
//! (`message`).
//!
//! [MiniJinja]: https://docs.rs/minijinja

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Response, Verdict, Verifier, crypto::Algorithm,
    signature,
};
use std::collections::BTreeMap;

use minijinja::{Environment, Value as Jinja};
use serde::Deserialize;
use serde_json::{Value, json};

/// What Teams shows when the route gives no `reply`.
const DEFAULT_REPLY: &str = "Received.";

struct TeamsOutgoing;

/// The reply's card, as `with:` gives it.
enum Card {
    None,
    /// `card`: fixed JSON.
    Fixed(Value),
    /// `card_template`: rendered over each activity.
    Template(String),
}

/// The route's `with:` block, the security token decoded.
struct Settings {
    key: Vec<u8>,
    reply: Option<String>,
    forward: bool,
    card: Card,
}

/// Reads `with:` (every request).
fn settings() -> Result<Settings, Error> {
    let secret = sdk::config::require_str("secret")?;
    let Some(key) = signature::decode_base64(&secret).filter(|key| !key.is_empty()) else {
        return Err(Error::config(
            "`with.secret` must be the base64 security token Teams shows for the webhook",
        ));
    };
    let reply = sdk::config::get("reply");
    let forward = sdk::config::get_bool("forward", true)?;
    let card = match (
        sdk::config::optional_str("card")?,
        sdk::config::optional_str("card_template")?,
    ) {
        (None, None) => Card::None,
        (Some(card), None) => Card::Fixed(
            serde_json::from_str::<Value>(&card)
                .map_err(|e| Error::config(format!("`with.card` is not JSON: {e}")))?,
        ),
        (None, Some(template)) => Card::Template(template),
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "`with.card` and `with.card_template` exclude each other",
            ));
        }
    };
    Ok(Settings {
        key,
        reply,
        forward,
        card,
    })
}

/// The load-time check (`export!`'s `check:`): the settings, a fixed card
/// checked as every reply checks it, and the card template compiled, so a
/// token that is not base64, a card that is not a card, or a template that
/// does not compile fails `hookgate check` rather than every request.
fn check() -> Result<(), Error> {
    let Settings { reply, card, .. } = settings()?;
    match card {
        Card::None => Ok(()),
        Card::Fixed(card) => reply_message(reply.as_deref(), Some(card))
            .map(drop)
            .map_err(Error::config),
        Card::Template(template) => compile_card(&Environment::new(), &template).map(drop),
    }
}

impl Verifier for TeamsOutgoing {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let Settings {
            key,
            reply: reply_text,
            forward,
            card,
        } = settings()?;

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

        let card = match card {
            Card::None => None,
            Card::Fixed(card) => Some(card),
            Card::Template(template) => Some(render_card(&template, &req.body)?),
        };
        let message = reply_message(reply_text.as_deref(), card).map_err(Error::config)?;
        let reply = Response::json(200, &message);
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

/// The reply message: text alone, or a card as its attachment (with
/// `text` when given), or a whole message as it is. The error says which
/// shapes a card may take.
pub fn reply_message(text: Option<&str>, card: Option<Value>) -> Result<Value, String> {
    let Some(card) = card else {
        return Ok(json!({ "type": "message", "text": text.unwrap_or(DEFAULT_REPLY) }));
    };
    let content_type = match (
        card.get("type").and_then(Value::as_str),
        card.get("@type").and_then(Value::as_str),
    ) {
        (Some("message"), _) => return Ok(card),
        (Some("AdaptiveCard"), _) => "application/vnd.microsoft.card.adaptive",
        (_, Some("MessageCard")) => "application/vnd.microsoft.teams.card.o365connector",
        _ => {
            return Err(
                "the reply card must be an Adaptive Card ({\"type\": \"AdaptiveCard\", …}), \
                 a MessageCard ({\"@type\": \"MessageCard\", …}) or a message ({\"type\": \"message\", …})"
                    .to_owned(),
            );
        }
    };
    let mut message = json!({
        "type": "message",
        "attachments": [{ "contentType": content_type, "content": card }],
    });
    if let Some(text) = text {
        message["text"] = Value::from(text);
    }
    Ok(message)
}

/// Renders `card_template` over the activity and parses the output.
fn render_card(source: &str, activity: &[u8]) -> Result<Value, Error> {
    let env = Environment::new();
    let template = compile_card(&env, source)?;
    let activity: Value = serde_json::from_slice(activity)
        .map_err(|_| Error::invalid_input("the activity is not JSON"))?;
    let mut context: BTreeMap<String, Jinja> = BTreeMap::new();
    if let Value::Object(map) = &activity {
        for (k, v) in map {
            context.insert(k.clone(), to_jinja(v));
        }
    }
    context.insert("body".into(), to_jinja(&activity));
    let rendered = template
        .render(Jinja::from(context))
        .map_err(|e| Error::invalid_input(format!("`with.card_template` failed to render: {e}")))?;
    serde_json::from_str(&rendered).map_err(|e| {
        Error::config(format!(
            "`with.card_template` output is not JSON ({e}); insert values with `| tojson`"
        ))
    })
}

/// `card_template` compiled. Named without an extension so nothing is
/// auto-escaped; `tojson` is the explicit escape, as in the `template`
/// plugin.
fn compile_card<'env, 'source>(
    env: &'env Environment<'env>,
    source: &'source str,
) -> Result<minijinja::Template<'env, 'source>, Error> {
    env.template_from_named_str("card_template", source)
        .map_err(|e| Error::config(format!("`with.card_template` does not compile: {e}")))
}

/// JSON to a MiniJinja value.
fn to_jinja(v: &Value) -> Jinja {
    match v {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Jinja::from(i),
            (_, Some(u)) => Jinja::from(u),
            _ => Jinja::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Jinja::from(s.as_str()),
        Value::Array(items) => items.iter().map(to_jinja).collect(),
        Value::Object(map) => Jinja::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<String, Jinja>>(),
        ),
    }
}

/// The fields of a Bot Framework activity this plugin reads.
#[derive(Deserialize)]
struct Activity {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(TeamsOutgoing, stages: [verify], config: [secret, reply, forward, card, card_template], check: check);
