//! `by-event`: a router that picks destinations with rules on the event
//! type, headers and body fields.
//!
//! ```yaml
//! route:
//!   plugin: by-event
//!   with:
//!     mode: first                      # or `all`
//!     rules:
//!       - { event: "pull_request*", to: [code-review] }
//!       - { event: issues, pointer: /action, equals: [opened, reopened], to: [triage] }
//!       - { header: { name: x-github-hook-installation-target-type, value: organization }, to: [org] }
//!       - { event: star, to: [] }     # an empty list delivers nowhere
//!     default: [everything]           # optional
//! to: [everything]
//! ```
//!
//! `with:` keys:
//!
//! - `rules` (required): a list of rules, tried in order. Each rule has `to`
//!   (required: a destination name or a list of them) and any of these
//!   conditions, all of which must match (a rule with none matches every
//!   message):
//!   - `event`: a glob or list of globs for the message's event type
//!     (`issues`, `pull_request*`); a message with no event type does not
//!     match;
//!   - `header`: `{name, value}` (or a list of them): some value of header
//!     `name` (case-insensitive) matches the glob `value`; without `value`
//!     the header only has to be present;
//!   - `pointer`: a JSON pointer into the body (`/action`,
//!     `/pull_request/base/ref`); alone, it matches when the body is JSON
//!     and has a non-null value there;
//!   - `equals`: with `pointer`, a glob or list of globs the value must
//!     match (strings as they are, numbers and booleans as JSON text, an
//!     array when any element matches).
//! - `mode`: `first` (default) sends to the first matching rule's `to`;
//!   `all` to the union of every matching rule's `to`, in rule order,
//!   without duplicates.
//! - `default`: destinations when no rule matches; without it, the route's
//!   own `to:` list.
//!
//! Globs: `*` any run of characters, `?` one character, `\` escapes; all
//! else is literal and case-sensitive. Unknown keys are config errors, so a
//! typo (`equal:`) is caught rather than silently matching everything.

use hookgate_match::{Conditions, OneOrMany, Subject};
use hookgate_plugin_sdk::{self as sdk, Error, Message, Router};
use serde::Deserialize;
use serde_json::Value;

/// The `with:` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    rules: Option<Vec<Value>>,
    #[serde(default)]
    default: Option<OneOrMany<String>>,
    #[serde(default)]
    mode: Option<String>,
}

struct Rule {
    conditions: Conditions,
    to: Vec<String>,
}

struct Config {
    rules: Vec<Rule>,
    default: Option<Vec<String>>,
    all: bool,
}

fn config() -> Result<Config, Error> {
    let spec: Spec = sdk::config::parse()?;
    let all = match spec.mode.as_deref() {
        None | Some("first") => false,
        Some("all") => true,
        Some(other) => {
            return Err(Error::config(format!(
                "`with.mode` must be first or all, not {other:?}"
            )));
        }
    };
    let Some(raw_rules) = spec.rules else {
        return Err(Error::config("`with.rules` is required (a list of rules)"));
    };
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (i, raw) in raw_rules.into_iter().enumerate() {
        let n = i + 1;
        let Value::Object(mut map) = raw else {
            return Err(Error::config(format!(
                "`with.rules` item {n} is not a mapping"
            )));
        };
        let to = match map.remove("to") {
            None => {
                return Err(Error::config(format!(
                    "`with.rules` item {n} has no `to` (the destinations it sends to)"
                )));
            }
            Some(to) => serde_json::from_value::<OneOrMany<String>>(to).map_err(|_| {
                Error::config(format!(
                    "`with.rules` item {n}: `to` must be a destination name or a list of them"
                ))
            })?,
        };
        let conditions = Conditions::from_value(Value::Object(map))
            .map_err(|e| Error::config(format!("`with.rules` item {n}: {e}")))?;
        rules.push(Rule {
            conditions,
            to: to.into_vec(),
        });
    }
    Ok(Config {
        rules,
        default: spec.default.map(OneOrMany::into_vec),
        all,
    })
}

struct ByEvent;

impl Router for ByEvent {
    fn route(msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
        let config = config()?;
        let subject = Subject::from_message(&msg);
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for (i, rule) in config.rules.iter().enumerate() {
            if !rule.conditions.matches(&subject) {
                continue;
            }
            sdk::log::debug(&format!("rule {} matched", i + 1));
            matched = true;
            for dest in &rule.to {
                if !out.contains(dest) {
                    out.push(dest.clone());
                }
            }
            if !config.all {
                break;
            }
        }
        if matched {
            Ok(out)
        } else {
            Ok(config.default.unwrap_or(defaults))
        }
    }
}

sdk::export!(ByEvent, stages: [route], config: [rules, default, mode], check: config);
