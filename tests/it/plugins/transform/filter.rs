//! `filter`: pass on matching messages, drop the rest.

use serde_json::{Value, json};

use super::{config_error, json_msg};
use crate::support::plugin::TestPlugin;
use hookgate::plugin::Message;

fn plugin(with: Value) -> TestPlugin {
    TestPlugin::builtin("filter", with)
}

fn kept(p: &TestPlugin, msg: Message) -> bool {
    let out = p.transform(msg.clone()).expect("plugin call failed");
    match out.as_slice() {
        [] => false,
        [one] => {
            assert_eq!(*one, msg, "a kept message passes unchanged");
            true
        }
        more => panic!("filter returned {} messages", more.len()),
    }
}

fn issue(action: &str) -> Message {
    let mut msg = json_msg(Some("issues"), &json!({ "action": action }));
    msg.id = Some("d-1".into());
    msg
}

#[test]
fn matching_message_passes_unchanged() {
    let p = plugin(json!({ "event": ["issues"], "pointer": "/action", "equals": ["opened"] }));
    assert!(kept(&p, issue("opened")));
}

#[test]
fn non_matching_message_is_dropped() {
    let p = plugin(json!({ "event": ["issues"], "pointer": "/action", "equals": ["opened"] }));
    assert!(!kept(&p, issue("labeled")));
    assert!(!kept(
        &p,
        json_msg(Some("push"), &json!({ "action": "opened" }))
    ));
    assert!(!kept(&p, json_msg(None, &json!({ "action": "opened" }))));
}

#[test]
fn globs_and_lists_match_any_entry() {
    let p = plugin(
        json!({ "event": ["push", "pull_request*"], "pointer": "/action", "equals": ["open*", "closed"] }),
    );
    assert!(kept(
        &p,
        json_msg(Some("pull_request_review"), &json!({ "action": "opened" }))
    ));
    assert!(kept(
        &p,
        json_msg(Some("pull_request"), &json!({ "action": "closed" }))
    ));
    assert!(!kept(
        &p,
        json_msg(Some("pull_request"), &json!({ "action": "synchronize" }))
    ));
    let p = plugin(json!({ "event": "iss?es" }));
    assert!(kept(&p, issue("anything")));
}

#[test]
fn invert_keeps_what_does_not_match() {
    let p = plugin(json!({ "event": ["star", "fork"], "invert": true }));
    assert!(!kept(&p, json_msg(Some("star"), &json!({}))));
    assert!(kept(&p, issue("opened")));
}

#[test]
fn header_condition_filters_on_a_header_value() {
    let p = plugin(
        json!({ "header": { "name": "x-github-hook-installation-target-type", "value": "repository" } }),
    );
    let mut msg = issue("opened");
    msg.headers.push((
        "x-github-hook-installation-target-type".into(),
        "repository".into(),
    ));
    assert!(kept(&p, msg));
    assert!(!kept(&p, issue("opened")), "header missing");
}

#[test]
fn empty_block_keeps_everything() {
    let p = plugin(json!({}));
    assert!(kept(&p, issue("opened")));
}

#[test]
fn bad_configs_are_config_errors() {
    let cases = [
        (json!({ "equals": ["opened"] }), "pointer"),
        (json!({ "event": [] }), "event"),
        (json!({ "invert": "yes" }), "invert"),
        (json!({ "evnt": ["issues"] }), "evnt"),
        (json!({ "pointer": "/a", "equals": [{ "x": 1 }] }), "equals"),
    ];
    for (with, needle) in cases {
        let p = plugin(with.clone());
        let reason = config_error(p.transform(issue("opened")));
        assert!(reason.contains(needle), "{with}: {reason}");
    }
}
