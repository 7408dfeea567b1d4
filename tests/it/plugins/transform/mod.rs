//! Transform and route plugins (`github-teams`, `github-slack`, `template`,
//! `by-event`, `filter`), run as the real wasm components in-process.

mod by_event;
mod filter;
mod github_slack;
mod github_teams;
mod template;

use std::path::PathBuf;

use hookgate::plugin::PluginError;
use hookgate::plugin::{GuestError, Message};
use serde_json::Value;

/// The GitHub events with vendored example payloads (tests/data/github).
pub const GITHUB_EVENTS: [&str; 11] = [
    "check_suite",
    "fork",
    "issue_comment",
    "issues",
    "ping",
    "pull_request",
    "pull_request_review",
    "push",
    "release",
    "star",
    "workflow_run",
];

/// `tests/data/<rel>`.
pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(rel)
}

/// A JSON file under `tests/data`.
pub fn data_json(rel: &str) -> Value {
    let path = data_path(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every vendored example of GitHub `event`.
pub fn github_examples(event: &str) -> Vec<Value> {
    match data_json(&format!("github/{event}.json")) {
        Value::Array(items) => {
            assert!(!items.is_empty(), "no examples for {event}");
            items
        }
        other => panic!("github/{event}.json is not an array: {other}"),
    }
}

/// A message with `event_type` and a JSON body.
pub fn json_msg(event: Option<&str>, body: &Value) -> Message {
    Message::json(event, body)
}

/// The body of `msg` as JSON.
pub fn body_json(msg: &Message) -> Value {
    serde_json::from_slice(&msg.body).unwrap_or_else(|e| {
        panic!(
            "output is not JSON ({e}): {}",
            String::from_utf8_lossy(&msg.body)
        )
    })
}

/// The reason of a guest `config` error, or a panic naming what came back.
pub fn config_error<T: std::fmt::Debug>(r: Result<T, PluginError>) -> String {
    match r {
        Err(PluginError::Guest {
            error: GuestError::Config(reason),
            ..
        }) => reason,
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// The reason of a guest `invalid-input` error.
pub fn invalid_input_error<T: std::fmt::Debug>(r: Result<T, PluginError>) -> String {
    match r {
        Err(PluginError::Guest {
            error: GuestError::InvalidInput(reason),
            ..
        }) => reason,
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

/// A compiled JSON Schema from `tests/data/schemas/<name>` (formats
/// checked too).
pub fn schema(name: &str) -> jsonschema::Validator {
    let schema = data_json(&format!("schemas/{name}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
}

/// Every violation of `instance` against `validator`, one per line.
pub fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
