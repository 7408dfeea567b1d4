//! `template`: reshape a message with a MiniJinja template.

use serde_json::{Value, json};

use super::{body_json, config_error, invalid_input_error, json_msg};
use crate::support::plugin::TestPlugin;
use hookgate::plugin::Message;

fn plugin(with: Value) -> TestPlugin {
    TestPlugin::builtin("template", with)
}

fn issue() -> Value {
    json!({
        "action": "opened",
        "issue": { "number": 7, "title": "Crash on \"save\" <now>", "labels": [{"name": "bug"}, {"name": "p1"}] },
        "repository": { "full_name": "octo/repo" },
        "id": "payload-id"
    })
}

fn render(p: &TestPlugin, msg: Message) -> Message {
    let mut out = p.transform(msg).expect("plugin call failed");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn renders_body_fields_and_top_level_keys_into_json() {
    let p = plugin(json!({
        "template": r##"{"text": {{ ("#" ~ body.issue.number ~ " " ~ issue.title) | tojson }}, "repo": {{ repository.full_name | tojson }}, "labels": {{ issue.labels | map(attribute="name") | list | tojson }}}"##
    }));
    let out = render(&p, json_msg(Some("issues"), &issue()));
    assert_eq!(
        body_json(&out),
        json!({ "text": "#7 Crash on \"save\" <now>", "repo": "octo/repo", "labels": ["bug", "p1"] })
    );
}

#[test]
fn headers_event_type_and_id_are_visible_and_win_over_body_keys() {
    let p = plugin(json!({
        "template": r#"{"event": {{ event_type | tojson }}, "id": {{ id | tojson }}, "body_id": {{ body.id | tojson }}, "delivery": {{ headers["x-github-delivery"] | tojson }}}"#
    }));
    let mut msg = json_msg(Some("issues"), &issue());
    msg.id = Some("msg-1".into());
    msg.headers
        .push(("X-GitHub-Delivery".into(), "d-42".into()));
    let out = render(&p, msg);
    assert_eq!(
        body_json(&out),
        json!({ "event": "issues", "id": "msg-1", "body_id": "payload-id", "delivery": "d-42" })
    );
}

#[test]
fn output_keeps_id_and_event_type_and_sets_the_content_type() {
    let p = plugin(json!({ "template": "{}" }));
    let mut msg = json_msg(Some("issues"), &issue());
    msg.id = Some("msg-1".into());
    msg.headers
        .push(("x-hub-signature-256".into(), "sha256=00".into()));
    let out = render(&p, msg);
    assert_eq!(out.id.as_deref(), Some("msg-1"));
    assert_eq!(out.event_type.as_deref(), Some("issues"));
    assert_eq!(out.content_type, "application/json");
    assert_eq!(
        out.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())],
        "inbound headers (signatures) are not passed on"
    );
}

#[test]
fn missing_values_render_as_nothing_by_default() {
    let p = plugin(
        json!({ "template": r#"{"x": "{{ issue.nope.deeper }}", "y": {{ nothing | default("fallback") | tojson }}}"# }),
    );
    let out = render(&p, json_msg(Some("issues"), &issue()));
    assert_eq!(body_json(&out), json!({ "x": "", "y": "fallback" }));
}

#[test]
fn strict_undefined_makes_a_missing_value_invalid_input() {
    let p = plugin(json!({ "template": r#"{"x": "{{ issue.nope }}"}"#, "undefined": "strict" }));
    let reason = invalid_input_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(reason.contains("line 1"), "{reason}");
}

#[test]
fn text_content_type_is_not_validated_as_json() {
    let p = plugin(json!({
        "template": "New issue #{{ issue.number }}: {{ issue.title }}",
        "content_type": "text/plain; charset=utf-8"
    }));
    let out = render(&p, json_msg(Some("issues"), &issue()));
    assert_eq!(
        &out.body[..],
        "New issue #7: Crash on \"save\" <now>".as_bytes()
    );
    assert_eq!(out.content_type, "text/plain; charset=utf-8");
    assert!(
        out.headers
            .contains(&("content-type".into(), "text/plain; charset=utf-8".into()))
    );
}

#[test]
fn non_json_input_is_available_as_text() {
    let p = plugin(json!({ "template": "{{ {'raw': body} | tojson }}" }));
    let mut msg = json_msg(None, &json!(null));
    msg.body = bytes::Bytes::from_static(b"a=1&b=2");
    msg.content_type = "application/x-www-form-urlencoded".into();
    let out = render(&p, msg);
    assert_eq!(body_json(&out), json!({ "raw": "a=1&b=2" }));
}

#[test]
fn output_that_is_not_json_is_a_config_error_suggesting_tojson() {
    // Plain interpolation of a title with quotes breaks the document.
    let p = plugin(json!({ "template": r#"{"text": "{{ issue.title }}"}"# }));
    let reason = config_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(
        reason.contains("not valid JSON") && reason.contains("tojson"),
        "{reason}"
    );
}

#[test]
fn template_that_does_not_compile_is_a_config_error_naming_the_line() {
    let p = plugin(json!({ "template": "{\n  \"a\": 1,\n  \"b\": {{ issue.title \n}" }));
    let reason = config_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(reason.contains("does not compile"), "{reason}");
    assert!(
        reason.contains("line 3") || reason.contains("line 4"),
        "{reason}"
    );
}

#[test]
fn unknown_filter_is_a_config_error() {
    let p = plugin(json!({ "template": "{{ issue.title | shout }}" }));
    let reason = config_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(
        reason.contains("shout") || reason.contains("filter"),
        "{reason}"
    );
}

#[test]
fn missing_template_is_a_config_error() {
    let p = plugin(json!({}));
    let reason = config_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(reason.contains("with.template"), "{reason}");
}

#[test]
fn unknown_undefined_mode_is_a_config_error() {
    let p = plugin(json!({ "template": "{}", "undefined": "loose" }));
    let reason = config_error(p.transform(json_msg(Some("issues"), &issue())));
    assert!(reason.contains("with.undefined"), "{reason}");
}

#[test]
fn each_use_keeps_its_own_template_across_warm_calls() {
    // The template is compiled once per warm instance: calls of two uses
    // (two routes) interleaved must each render their own, every time.
    let a = plugin(json!({ "template": r#"{"use": "a", "n": {{ issue.number }}}"# }));
    let b = plugin(json!({ "template": r#"{"use": "b", "t": {{ issue.title | tojson }}}"# }));
    for _ in 0..3 {
        let out = render(&a, json_msg(Some("issues"), &issue()));
        assert_eq!(body_json(&out), json!({ "use": "a", "n": 7 }));
        let out = render(&b, json_msg(Some("issues"), &issue()));
        assert_eq!(
            body_json(&out),
            json!({ "use": "b", "t": "Crash on \"save\" <now>" })
        );
    }
    assert_eq!(a.warm_instances(), 1, "a's calls ran on one warm instance");
    assert_eq!(b.warm_instances(), 1, "and b's on another");
}
