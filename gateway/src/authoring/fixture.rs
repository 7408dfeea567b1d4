//! A fixture: one input for a plugin (a request for a verifier, a message
//! for a transform or a router), the route's `with:` block, and what the
//! plugin should make of it (`expect`, optional).
//!
//! ```yaml
//! with: { secret: change-me }
//! request:                      # verify
//!   headers: { x-signature: 89c0… }
//!   body_file: request.json     # or body: '…'
//! expect: { verdict: accept, consumed: [x-signature] }
//! ```
//!
//! A transform's or router's fixture has `message:` (and a router's
//! `defaults:`, the route's `to:`); `expect` takes `messages:` or
//! `destinations:`, or `error:` with the kind of failure (`trap`,
//! `timeout`, `out_of_memory`, `guest_config`, `guest_invalid_input`,
//! `guest_error`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plugin::{InboundRequest, Message, PluginError, Verdict};

/// One fixture file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureConfig {
    /// The route's `with:` block.
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    /// The inbound request (verify).
    #[serde(default)]
    pub request: Option<RequestConfig>,
    /// The message (transform, route).
    #[serde(default)]
    pub message: Option<MessageConfig>,
    /// The route's `to:` (route).
    #[serde(default)]
    pub defaults: Vec<String>,
    /// What should come out; without it the outcome is only printed.
    #[serde(default)]
    pub expect: Option<ExpectConfig>,
}

/// An inbound request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Method (default `POST`).
    #[serde(default)]
    pub method: Option<String>,
    /// Path (default `/hooks/test`).
    #[serde(default)]
    pub path: Option<String>,
    /// Raw query string, without `?`.
    #[serde(default)]
    pub query: String,
    /// Headers (names are lowercased).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: Option<String>,
    /// Body bytes from a file, relative to the fixture.
    #[serde(default)]
    pub body_file: Option<PathBuf>,
    /// Arrival time, ms since the Unix epoch (default: now). Pin it for a
    /// signature over a timestamp.
    #[serde(default)]
    pub received_at_ms: Option<u64>,
}

/// A pipeline message.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageConfig {
    /// Message id.
    #[serde(default)]
    pub id: Option<String>,
    /// Event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Media type (default `application/json`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: Option<String>,
    /// Body bytes from a file, relative to the fixture.
    #[serde(default)]
    pub body_file: Option<PathBuf>,
}

/// The verdict a verifier should give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    /// Accepted.
    Accept,
    /// Refused.
    Reject,
    /// Answered at once.
    Respond,
}

/// What should come out. Only the keys given are checked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Verify: the verdict.
    #[serde(default)]
    pub verdict: Option<VerdictKind>,
    /// Verify: the status of a rejection or a response.
    #[serde(default)]
    pub status: Option<u16>,
    /// Verify: text the rejection's reason contains.
    #[serde(default)]
    pub reason: Option<String>,
    /// Verify: the accepted delivery id.
    #[serde(default)]
    pub id: Option<String>,
    /// Verify: the accepted event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Verify: the headers the verifier consumed.
    #[serde(default)]
    pub consumed: Option<Vec<String>>,
    /// Verify: text a response's body contains.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Transform: the messages, in order (as many as listed).
    #[serde(default)]
    pub messages: Option<Vec<MessageExpectConfig>>,
    /// Route: the destinations, in order.
    #[serde(default)]
    pub destinations: Option<Vec<String>>,
    /// The call fails with this kind of error instead.
    #[serde(default)]
    pub error: Option<String>,
}

/// One expected message; only the keys given are checked.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageExpectConfig {
    /// Event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Media type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body, exactly.
    #[serde(default)]
    pub body: Option<String>,
    /// The body parsed as JSON equals this.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Text the body contains.
    #[serde(default)]
    pub body_contains: Option<String>,
}

impl FixtureConfig {
    /// Reads a fixture file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())
    }

    /// A fixture that hands `body` to the plugin as it is: a POST for a
    /// verifier, a JSON message for a transform or router.
    pub fn from_body(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body).into_owned();
        FixtureConfig {
            request: Some(RequestConfig {
                body: Some(text.clone()),
                headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
                ..RequestConfig::default()
            }),
            message: Some(MessageConfig {
                body: Some(text),
                ..MessageConfig::default()
            }),
            ..FixtureConfig::default()
        }
    }

    /// The inbound request, with files read relative to `base`.
    pub fn inbound(&self, base: &Path) -> Result<InboundRequest, String> {
        let r = self
            .request
            .as_ref()
            .ok_or("a verifier's fixture needs `request:`")?;
        Ok(InboundRequest {
            method: r.method.as_deref().unwrap_or("POST").to_ascii_uppercase(),
            path: r.path.clone().unwrap_or_else(|| "/hooks/test".into()),
            query: r.query.clone(),
            headers: headers(&r.headers),
            body: body(base, r.body.as_deref(), r.body_file.as_deref())?.into(),
            route: "test".into(),
            received_at_ms: r.received_at_ms.unwrap_or_else(crate::clock::now_ms),
        })
    }

    /// The message, with files read relative to `base`.
    pub fn message(&self, base: &Path) -> Result<Message, String> {
        let m = self
            .message
            .as_ref()
            .ok_or("a transform's or router's fixture needs `message:`")?;
        let content_type = m
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".into());
        let mut hs = headers(&m.headers);
        if !hs.iter().any(|(k, _)| k == "content-type") {
            hs.push(("content-type".into(), content_type.clone()));
        }
        Ok(Message {
            id: m.id.clone(),
            event_type: m.event_type.clone(),
            content_type,
            headers: hs,
            body: body(base, m.body.as_deref(), m.body_file.as_deref())?.into(),
        })
    }
}

fn headers(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn body(base: &Path, text: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, String> {
    match (text, file) {
        (Some(_), Some(_)) => Err("give `body` or `body_file`, not both".into()),
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(f)) => {
            let path = base.join(f);
            std::fs::read(&path).map_err(|e| format!("body_file {}: {e}", path.display()))
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// Every way `outcome` differs from `expect` (empty: it passed).
pub fn check_verdict(expect: &ExpectConfig, outcome: &Result<Verdict, PluginError>) -> Vec<String> {
    let mut diffs = Vec::new();
    let Some(verdict) = check_error(expect, outcome, &mut diffs) else {
        return diffs;
    };
    let (kind, status) = match verdict {
        Verdict::Accept { .. } => (VerdictKind::Accept, None),
        Verdict::Reject { status, .. } => (VerdictKind::Reject, Some(*status)),
        Verdict::Respond(r) => (VerdictKind::Respond, Some(r.status)),
    };
    if let Some(want) = expect.verdict
        && want != kind
    {
        diffs.push(format!("verdict: expected {want:?}, got {kind:?}").to_lowercase());
    }
    if let Some(want) = expect.status
        && Some(want) != status
    {
        diffs.push(format!("status: expected {want}, got {status:?}"));
    }
    match verdict {
        Verdict::Accept {
            id,
            event_type,
            consumed,
            ..
        } => {
            same(&mut diffs, "id", expect.id.as_ref(), id.as_ref());
            same(
                &mut diffs,
                "event_type",
                expect.event_type.as_ref(),
                event_type.as_ref(),
            );
            if let Some(want) = &expect.consumed
                && want != consumed
            {
                diffs.push(format!("consumed: expected {want:?}, got {consumed:?}"));
            }
        }
        Verdict::Reject { reason, .. } => {
            if let Some(want) = &expect.reason
                && !reason.contains(want.as_str())
            {
                diffs.push(format!(
                    "reason: expected it to contain {want:?}, got {reason:?}"
                ));
            }
        }
        Verdict::Respond(r) => {
            if let Some(want) = &expect.body_contains {
                let body = String::from_utf8_lossy(&r.body);
                if !body.contains(want.as_str()) {
                    diffs.push(format!(
                        "body: expected it to contain {want:?}, got {body:?}"
                    ));
                }
            }
        }
    }
    diffs
}

/// Every way a transform's output differs from `expect`.
pub fn check_messages(
    expect: &ExpectConfig,
    outcome: &Result<Vec<Message>, PluginError>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let Some(messages) = check_error(expect, outcome, &mut diffs) else {
        return diffs;
    };
    let Some(want) = &expect.messages else {
        return diffs;
    };
    if want.len() != messages.len() {
        diffs.push(format!(
            "messages: expected {}, got {}",
            want.len(),
            messages.len()
        ));
        return diffs;
    }
    for (i, (w, m)) in want.iter().zip(messages).enumerate() {
        let at = |what: &str| format!("messages[{i}].{what}");
        same(
            &mut diffs,
            &at("event_type"),
            w.event_type.as_ref(),
            m.event_type.as_ref(),
        );
        same(
            &mut diffs,
            &at("content_type"),
            w.content_type.as_ref(),
            Some(&m.content_type),
        );
        let body = String::from_utf8_lossy(&m.body);
        if let Some(b) = &w.body
            && *b != body
        {
            diffs.push(format!("{}: expected {b:?}, got {body:?}", at("body")));
        }
        if let Some(c) = &w.body_contains
            && !body.contains(c.as_str())
        {
            diffs.push(format!(
                "{}: expected it to contain {c:?}, got {body:?}",
                at("body")
            ));
        }
        if let Some(j) = &w.json {
            match serde_json::from_slice::<serde_json::Value>(&m.body) {
                Ok(got) if got == *j => {}
                Ok(got) => diffs.push(format!("{}: expected {j}, got {got}", at("json"))),
                Err(e) => diffs.push(format!("{}: body is not JSON ({e}): {body:?}", at("json"))),
            }
        }
    }
    diffs
}

/// Every way a router's output differs from `expect`.
pub fn check_destinations(
    expect: &ExpectConfig,
    outcome: &Result<Vec<String>, PluginError>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let Some(got) = check_error(expect, outcome, &mut diffs) else {
        return diffs;
    };
    if let Some(want) = &expect.destinations
        && want != got
    {
        diffs.push(format!("destinations: expected {want:?}, got {got:?}"));
    }
    diffs
}

/// Checks `expect.error` against the outcome; the value when the call
/// succeeded and no error was expected.
fn check_error<'a, T>(
    expect: &ExpectConfig,
    outcome: &'a Result<T, PluginError>,
    diffs: &mut Vec<String>,
) -> Option<&'a T> {
    match (outcome, &expect.error) {
        (Ok(v), None) => Some(v),
        (Ok(_), Some(kind)) => {
            diffs.push(format!(
                "expected an error ({kind}), but the call succeeded"
            ));
            None
        }
        (Err(e), None) => {
            // The error itself is printed with the outcome.
            diffs.push(format!(
                "expected it to succeed, but the call failed ({})",
                e.kind()
            ));
            None
        }
        (Err(e), Some(kind)) => {
            if e.kind() != kind {
                diffs.push(format!("error: expected {kind}, got {} ({e})", e.kind()));
            }
            None
        }
    }
}

fn same(diffs: &mut Vec<String>, what: &str, want: Option<&String>, got: Option<&String>) {
    if let Some(w) = want
        && Some(w) != got
    {
        diffs.push(format!("{what}: expected {w:?}, got {got:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_that_was_expected_to_accept_fails_with_the_difference() {
        let expect = ExpectConfig {
            verdict: Some(VerdictKind::Accept),
            ..ExpectConfig::default()
        };
        let got = Ok(Verdict::Reject {
            status: 401,
            reason: "nope".into(),
        });
        let diffs = check_verdict(&expect, &got);
        assert_eq!(
            diffs,
            vec!["verdict: expected accept, got reject".to_owned()]
        );
    }

    #[test]
    fn transform_messages_compare_as_json() {
        let expect: ExpectConfig =
            serde_saphyr::from_str("messages: [ { json: { a: 1, b: [2] } } ]").unwrap();
        let ok = Ok(vec![Message::json(
            None,
            &serde_json::json!({"b": [2], "a": 1}),
        )]);
        assert!(check_messages(&expect, &ok).is_empty());
        let wrong = Ok(vec![Message::json(None, &serde_json::json!({"a": 2}))]);
        assert_eq!(check_messages(&expect, &wrong).len(), 1);
        assert_eq!(check_messages(&expect, &Ok(vec![])).len(), 1);
    }

    #[test]
    fn an_expected_error_kind_must_match() {
        let expect: ExpectConfig = serde_saphyr::from_str("error: trap").unwrap();
        let trap: Result<Vec<String>, _> = Err(PluginError::Trap {
            plugin: "p".into(),
            message: "unreachable".into(),
        });
        assert!(check_destinations(&expect, &trap).is_empty());
        assert_eq!(check_destinations(&expect, &Ok(vec![])).len(), 1);
    }
}
