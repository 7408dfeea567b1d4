//! `mailchimp`: receives [MailChimp](https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/)
//! (Marketing) audience webhooks.
//!
//! MailChimp signs nothing. As in ASP.NET WebHooks, the webhook URL carries
//! a secret, `https://gw/hooks/mailchimp?code=<secret>`. MailChimp checks the
//! URL with a `GET` before it saves it, then POSTs each event
//! form-encoded: `type=subscribe&fired_at=2009-03-26 21:35:57&data[id]=…&
//! data[merges][EMAIL]=…`.
//!
//! ```yaml
//! verify: { plugin: mailchimp, with: { secret: "${MAILCHIMP_CODE}" } }
//! transform: [ { plugin: mailchimp } ]     # the form fields as JSON
//! ```
//!
//! `with:` keys (verify):
//!
//! - `secret` (required): the value of `?code=` (use 32 or more random
//!   characters).
//!
//! Verify: `GET` is answered `200` with an empty body and forwards nothing
//! (it proves only that the URL answers; it triggers nothing). A `POST`
//! needs `?code=` to match `secret` (constant-time), else `401`. Other
//! methods get `405`. The event type is the form's `type` (`subscribe`,
//! `unsubscribe`, `profile`, `upemail`, `cleaned`, `campaign`).
//!
//! Transform (no `with:` keys): the form-encoded body becomes JSON with the
//! bracketed names nested, `{"type": "subscribe", "fired_at": "…", "data":
//! {"id": "…", "merges": {"EMAIL": "…"}}}`, with content type
//! `application/json`. A verifier cannot replace the body in plugin
//! interface 0.1, hence the second stage; list it to get JSON downstream.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Header, Message, Request, Response, Transformer, Verdict,
    Verifier, crypto,
};
use serde_json::{Map, Value};

/// ASP.NET WebHooks' query parameter for the secret.
const CODE_PARAM: &str = "code";

struct Mailchimp;

impl Verifier for Mailchimp {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        match req.method.as_str() {
            "GET" | "HEAD" => return Ok(Verdict::respond(Response::empty(200))),
            "POST" => {}
            _ => return Ok(Verdict::reject(405, "MailChimp webhooks are GET or POST")),
        }
        match req.query_param(CODE_PARAM) {
            None => return Ok(Verdict::unauthorized("missing ?code= query parameter")),
            Some(code) if !crypto::constant_time_eq(code.as_bytes(), secret.as_bytes()) => {
                return Ok(Verdict::unauthorized("?code= does not match"));
            }
            Some(_) => {}
        }
        let mut accepted = Accepted::new();
        if let Some((_, kind)) = req.form().into_iter().find(|(k, _)| k == "type") {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

impl Transformer for Mailchimp {
    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        let json = form_to_json(form_urlencoded::parse(&msg.body));
        msg.body = serde_json::to_vec(&json).map_err(|e| Error::other(e.to_string()))?;
        msg.content_type = "application/json".to_owned();
        msg.headers
            .retain(|h| !h.name.eq_ignore_ascii_case("content-type"));
        msg.headers
            .push(Header::new("content-type", "application/json"));
        Ok(vec![msg])
    }
}

/// Form pairs as a JSON object, `a[b][c]=v` nested as `{"a": {"b": {"c":
/// "v"}}}`. Indexes stay object keys (`"0"`), which keeps every field
/// whatever order MailChimp sends them in. When a name is both a value and
/// a parent (`a=1&a[b]=2`), the later one wins.
pub fn form_to_json<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Value {
    let mut root = Map::new();
    for (name, value) in pairs {
        let path = split_name(&name);
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    Value::Object(root)
}

/// `data[merges][EMAIL]` → `["data", "merges", "EMAIL"]`; a name without
/// well-formed brackets is one key.
fn split_name(name: &str) -> Vec<&str> {
    let Some(open) = name.find('[') else {
        return vec![name];
    };
    let mut parts = vec![&name[..open]];
    let mut rest = &name[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return vec![name];
        };
        parts.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() || parts[0].is_empty() {
        return vec![name];
    }
    parts
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let child = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                insert(child, rest, value);
            }
        }
    }
}

sdk::export!(Mailchimp, stages: [verify, transform], config: [secret]);
