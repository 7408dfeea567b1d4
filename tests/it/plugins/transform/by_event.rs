//! `by-event`: choose destinations by event type, header or body field.

use serde_json::{Value, json};

use super::{config_error, json_msg};
use crate::support::plugin::TestPlugin;
use hookgate::plugin::Message;

const DEFAULTS: [&str; 1] = ["teams"];

fn plugin(with: Value) -> TestPlugin {
    TestPlugin::builtin("by-event", with)
}

fn route(p: &TestPlugin, msg: Message) -> Vec<String> {
    p.route(msg, &DEFAULTS).expect("plugin call failed")
}

fn opened_issue() -> Message {
    json_msg(
        Some("issues"),
        &json!({ "action": "opened", "issue": { "number": 1, "draft": false } }),
    )
}

fn rules() -> Value {
    json!([
        { "event": "pull_request*", "to": ["code"] },
        { "event": "issues", "pointer": "/action", "equals": ["closed", "reopened"], "to": "archive" },
        { "event": "issues", "to": ["triage", "code"] },
    ])
}

#[test]
fn first_matching_rule_wins_by_default() {
    let p = plugin(json!({ "rules": rules() }));
    assert_eq!(route(&p, opened_issue()), ["triage", "code"]);
    let closed = json_msg(Some("issues"), &json!({ "action": "closed" }));
    assert_eq!(route(&p, closed), ["archive"]);
}

#[test]
fn glob_event_matches_related_events() {
    let p = plugin(json!({ "rules": rules() }));
    for event in [
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
    ] {
        assert_eq!(
            route(&p, json_msg(Some(event), &json!({}))),
            ["code"],
            "{event}"
        );
    }
}

#[test]
fn all_mode_sends_to_every_matching_rule_without_duplicates() {
    let p = plugin(json!({
        "mode": "all",
        "rules": [
            { "event": "iss*", "to": ["code", "triage"] },
            { "pointer": "/action", "equals": "open*", "to": ["triage", "alerts"] },
            { "event": "push", "to": ["never"] },
        ]
    }));
    assert_eq!(route(&p, opened_issue()), ["code", "triage", "alerts"]);
}

#[test]
fn pointer_condition_compares_numbers_and_booleans_as_text() {
    let p = plugin(json!({
        "rules": [
            { "pointer": "/issue/number", "equals": 1, "to": ["one"] },
            { "pointer": "/issue/draft", "equals": "false", "to": ["never"] },
        ]
    }));
    assert_eq!(route(&p, opened_issue()), ["one"]);
}

#[test]
fn pointer_alone_matches_when_the_field_is_present() {
    let p = plugin(json!({ "rules": [ { "pointer": "/pull_request", "to": ["code"] } ] }));
    assert_eq!(route(&p, opened_issue()), DEFAULTS);
    let pr = json_msg(
        Some("issue_comment"),
        &json!({ "pull_request": { "url": "x" } }),
    );
    assert_eq!(route(&p, pr), ["code"]);
}

#[test]
fn header_condition_matches_name_case_insensitively_and_value_by_glob() {
    let p = plugin(json!({
        "rules": [ { "header": { "name": "X-GitHub-Hook-Installation-Target-Type", "value": "org*" }, "to": ["org"] } ]
    }));
    let mut msg = opened_issue();
    msg.headers.push((
        "x-github-hook-installation-target-type".into(),
        "organization".into(),
    ));
    assert_eq!(route(&p, msg), ["org"]);
    let mut msg = opened_issue();
    msg.headers.push((
        "x-github-hook-installation-target-type".into(),
        "repository".into(),
    ));
    assert_eq!(route(&p, msg), DEFAULTS);
}

#[test]
fn every_condition_of_a_rule_must_match() {
    let p = plugin(json!({
        "rules": [ { "event": "issues", "pointer": "/action", "equals": "closed", "to": ["archive"] } ]
    }));
    assert_eq!(route(&p, opened_issue()), DEFAULTS);
    assert_eq!(
        route(&p, json_msg(Some("push"), &json!({ "action": "closed" }))),
        DEFAULTS
    );
}

#[test]
fn no_match_falls_back_to_the_routes_defaults() {
    let p = plugin(json!({ "rules": rules() }));
    assert_eq!(route(&p, json_msg(Some("star"), &json!({}))), DEFAULTS);
    assert_eq!(
        route(&p, json_msg(None, &json!({}))),
        DEFAULTS,
        "no event type matches no event rule"
    );
}

#[test]
fn no_match_uses_the_configured_default_when_given() {
    let p = plugin(json!({ "rules": rules(), "default": ["elsewhere"] }));
    assert_eq!(route(&p, json_msg(Some("star"), &json!({}))), ["elsewhere"]);
    let p = plugin(json!({ "rules": rules(), "default": [] }));
    assert!(route(&p, json_msg(Some("star"), &json!({}))).is_empty());
}

#[test]
fn rule_with_empty_to_delivers_nowhere() {
    let p = plugin(json!({ "rules": [ { "event": "star", "to": [] } ] }));
    assert!(route(&p, json_msg(Some("star"), &json!({}))).is_empty());
}

#[test]
fn pointer_rule_does_not_match_a_body_that_is_not_json() {
    let p = plugin(json!({ "rules": [ { "pointer": "/action", "to": ["x"] } ] }));
    let mut msg = opened_issue();
    msg.body = bytes::Bytes::from_static(b"action=opened");
    assert_eq!(route(&p, msg), DEFAULTS);
}

#[test]
fn bad_configs_are_config_errors_naming_the_problem() {
    let cases = [
        (json!({}), "with.rules"),
        (json!({ "rules": [ { "event": "x" } ] }), "no `to`"),
        (
            json!({ "rules": [ { "equals": "x", "to": ["a"] } ] }),
            "pointer",
        ),
        (
            json!({ "rules": [ { "pointer": "action", "to": ["a"] } ] }),
            "pointer",
        ),
        (json!({ "rules": [ { "evnt": "x", "to": ["a"] } ] }), "evnt"),
        (json!({ "rules": [ { "event": "x", "to": [1] } ] }), "to"),
        (json!({ "rules": [], "mode": "some" }), "with.mode"),
        (json!({ "rules": [], "extra": 1 }), "extra"),
        (json!({ "rules": [ "issues" ] }), "item 1"),
    ];
    for (with, needle) in cases {
        let p = plugin(with.clone());
        let reason = config_error(p.route(opened_issue(), &DEFAULTS));
        assert!(reason.contains(needle), "{with}: {reason}");
    }
}
