//! Matching messages against conditions, shared by the `by-event` router and
//! the `filter` transform so both read their `with:` blocks the same way.
//!
//! A [`Conditions`] block has up to four keys; a message matches when every
//! key that is given matches (a block with none matches everything):
//!
//! | key       | value                                   | matches when |
//! |-----------|-----------------------------------------|--------------|
//! | `event`   | glob, or list of globs                  | the message's event type matches any of them |
//! | `header`  | `{name, value}` (or a list of them)     | for each: some value of header `name` (case-insensitive) matches the `value` glob; without `value`, the header is present |
//! | `pointer` | JSON pointer (RFC 6901), e.g. `/action` | the body is JSON and has a non-null value there |
//! | `equals`  | glob, or list of globs (needs `pointer`)| the value at `pointer` matches any of them (strings as they are, numbers and booleans as their JSON text; for an array, any element) |
//!
//! Globs: `*` is any run of characters (also none), `?` exactly one, `\`
//! escapes the next character; everything else is literal and
//! case-sensitive. `pull_request*` matches `pull_request` and
//! `pull_request_review`.

use std::cell::OnceCell;

use hookgate_plugin_sdk::Message;
use serde::Deserialize;
use serde_json::Value;

/// Whether `text` matches the glob `pattern` (see the crate doc).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Tokenise once: `\x` becomes a literal x.
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Any,
        Lit(char),
    }
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Linear-time wildcard matching with one backtrack point (the last star).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::Any) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

/// One value or a list of them, as YAML authors write either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A list (tried first, so a list of JSON values is not one value).
    Many(Vec<T>),
    /// A single value.
    One(T),
}

impl<T> OneOrMany<T> {
    /// The values as a list, however they were written.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A header condition as written in `with:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    /// Header name, case-insensitive.
    pub name: String,
    /// Glob for the value; absent means "the header is present".
    #[serde(default)]
    pub value: Option<String>,
}

/// The conditions as written in `with:`; [`Conditions::compile`] checks them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionsSpec {
    /// Event type glob(s).
    #[serde(default)]
    pub event: Option<OneOrMany<String>>,
    /// Header condition(s).
    #[serde(default)]
    pub header: Option<OneOrMany<HeaderSpec>>,
    /// JSON pointer into the body.
    #[serde(default)]
    pub pointer: Option<String>,
    /// Glob(s) for the value at `pointer` (strings, numbers or booleans).
    #[serde(default)]
    pub equals: Option<OneOrMany<Value>>,
}

/// Checked conditions, ready to match.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    events: Option<Vec<String>>,
    headers: Vec<(String, Option<String>)>,
    pointer: Option<String>,
    equals: Option<Vec<String>>,
}

/// The keys a conditions block may have (for callers that add their own).
pub const KEYS: [&str; 4] = ["event", "header", "pointer", "equals"];

impl Conditions {
    /// Parses and checks a conditions block (a JSON object with only
    /// [`KEYS`]). The error is a sentence naming the offending key, for
    /// `Error::config`.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let spec: ConditionsSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        Self::compile(spec)
    }

    /// Checks a parsed conditions block.
    pub fn compile(spec: ConditionsSpec) -> Result<Self, String> {
        let events = match spec.event {
            None => None,
            Some(e) => {
                let list = e.into_vec();
                if list.is_empty() {
                    return Err("`event` is an empty list (it would match nothing)".into());
                }
                Some(list)
            }
        };
        let mut headers = Vec::new();
        for h in spec.header.map(OneOrMany::into_vec).unwrap_or_default() {
            if h.name.trim().is_empty() {
                return Err("`header.name` is empty".into());
            }
            headers.push((h.name.trim().to_ascii_lowercase(), h.value));
        }
        if let Some(p) = &spec.pointer
            && !p.is_empty()
            && !p.starts_with('/')
        {
            return Err(format!(
                "`pointer` must be a JSON pointer starting with `/` (like `/action`), not {p:?}"
            ));
        }
        let equals = match spec.equals {
            None => None,
            Some(_) if spec.pointer.is_none() => {
                return Err("`equals` needs a `pointer` saying which value to compare".into());
            }
            Some(e) => {
                let mut list = Vec::new();
                for v in e.into_vec() {
                    list.push(match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(format!(
                                "`equals` takes strings, numbers or booleans, not {other}"
                            ));
                        }
                    });
                }
                if list.is_empty() {
                    return Err("`equals` is an empty list (it would match nothing)".into());
                }
                Some(list)
            }
        };
        Ok(Conditions {
            events,
            headers,
            pointer: spec.pointer,
            equals,
        })
    }

    /// Whether the block has no condition at all (matches everything).
    pub fn is_empty(&self) -> bool {
        self.events.is_none() && self.headers.is_empty() && self.pointer.is_none()
    }

    /// Whether `subject` meets every condition.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        if let Some(events) = &self.events {
            let Some(event) = subject.event_type else {
                return false;
            };
            if !events.iter().any(|g| glob_match(g, event)) {
                return false;
            }
        }
        for (name, glob) in &self.headers {
            let mut values = subject
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v);
            let ok = match glob {
                None => values.next().is_some(),
                Some(g) => values.any(|v| glob_match(g, v)),
            };
            if !ok {
                return false;
            }
        }
        if let Some(pointer) = &self.pointer {
            let Some(found) = subject.json().and_then(|j| j.pointer(pointer)) else {
                return false;
            };
            if found.is_null() {
                return false;
            }
            if let Some(globs) = &self.equals {
                let scalar_matches = |v: &Value| match scalar_text(v) {
                    Some(text) => globs.iter().any(|g| glob_match(g, &text)),
                    None => false,
                };
                let ok = match found {
                    Value::Array(items) => items.iter().any(scalar_matches),
                    v => scalar_matches(v),
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

/// Strings as they are, numbers and booleans as JSON text; others none.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What conditions look at: a message's event type, headers and body. The
/// body is parsed as JSON at most once, and only if a condition needs it.
#[derive(Debug)]
pub struct Subject<'a> {
    event_type: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    json: OnceCell<Option<Value>>,
}

impl<'a> Subject<'a> {
    /// A subject over borrowed message parts.
    pub fn new(
        event_type: Option<&'a str>,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &'a [u8],
    ) -> Self {
        Subject {
            event_type,
            headers: headers.into_iter().collect(),
            body,
            json: OnceCell::new(),
        }
    }

    /// A subject over a pipeline message, as the `by-event` router and the
    /// `filter` transform see it.
    pub fn from_message(msg: &'a Message) -> Self {
        Subject::new(
            msg.event_type.as_deref(),
            msg.headers
                .iter()
                // A value that is not UTF-8 matches no text condition.
                .filter_map(|h| Some((h.name.as_str(), h.value_str()?))),
            &msg.body,
        )
    }

    /// The body as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()
    }

    /// Whether the body is JSON (for callers that want to log when a pointer
    /// condition could not be checked).
    pub fn body_is_json(&self) -> bool {
        self.json().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_star_question_and_escape() {
        assert!(glob_match("pull_request*", "pull_request"));
        assert!(glob_match("pull_request*", "pull_request_review"));
        assert!(!glob_match("pull_request*", "issues"));
        assert!(glob_match("*", ""));
        assert!(glob_match("i?sues", "issues"));
        assert!(!glob_match("i?sues", "isues"));
        assert!(glob_match("*.paid", "invoice.paid"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match(r"a\*", "a*"));
        assert!(!glob_match(r"a\*", "ab"));
        assert!(!glob_match("Issues", "issues"));
        assert!(glob_match("é*", "été"));
    }

    fn subject<'a>(event: Option<&'a str>, body: &'a [u8]) -> Subject<'a> {
        Subject::new(
            event,
            [("x-github-event", "issues"), ("x-a", "1"), ("x-a", "two")],
            body,
        )
    }

    #[test]
    fn all_given_conditions_must_match() {
        let c = Conditions::from_value(json!({
            "event": ["push", "iss*"], "pointer": "/action", "equals": ["open*"],
            "header": {"name": "X-A", "value": "t*"}
        }))
        .unwrap();
        let body = br#"{"action":"opened"}"#;
        assert!(c.matches(&subject(Some("issues"), body)));
        assert!(!c.matches(&subject(Some("star"), body)));
        assert!(!c.matches(&subject(None, body)));
        assert!(!c.matches(&subject(Some("issues"), br#"{"action":"closed"}"#)));
        assert!(!c.matches(&subject(Some("issues"), b"not json")));
    }

    #[test]
    fn pointer_alone_means_present_and_arrays_match_any_element() {
        let c = Conditions::from_value(json!({ "pointer": "/pull_request" })).unwrap();
        assert!(c.matches(&subject(None, br#"{"pull_request":{}}"#)));
        assert!(!c.matches(&subject(None, br#"{"pull_request":null}"#)));
        let c = Conditions::from_value(json!({ "pointer": "/n", "equals": [3, true] })).unwrap();
        assert!(c.matches(&subject(None, br#"{"n":3}"#)));
        assert!(c.matches(&subject(None, br#"{"n":[1,true]}"#)));
        assert!(!c.matches(&subject(None, br#"{"n":"4"}"#)));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            json!({ "equals": "x" }),
            json!({ "pointer": "action" }),
            json!({ "event": [] }),
            json!({ "evnt": "x" }),
            json!({ "header": { "name": "" } }),
            json!({ "pointer": "/a", "equals": [{"a": 1}] }),
        ] {
            assert!(Conditions::from_value(bad.clone()).is_err(), "{bad}");
        }
        assert!(Conditions::from_value(json!({})).unwrap().is_empty());
    }
}
