//! `github-slack`: GitHub events to Slack Block Kit messages.

use serde_json::{Value, json};

use super::{GITHUB_EVENTS, body_json, config_error, github_examples, json_msg};
use crate::support::plugin::TestPlugin;

fn plugin() -> TestPlugin {
    TestPlugin::builtin("github-slack", json!({}))
}

fn message(p: &TestPlugin, event: &str, payload: &Value) -> Value {
    let out = p
        .transform(json_msg(Some(event), payload))
        .unwrap_or_else(|e| panic!("{event}: plugin call failed: {e}"));
    assert_eq!(out.len(), 1, "{event}: one message in, one message out");
    assert_eq!(out[0].content_type, "application/json");
    body_json(&out[0])
}

fn blocks_of<'a>(msg: &'a Value, kind: &str) -> Vec<&'a Value> {
    msg["blocks"]
        .as_array()
        .map(|b| b.iter().filter(|b| b["type"] == kind).collect())
        .unwrap_or_default()
}

#[test]
fn every_vendored_event_becomes_a_block_kit_message_with_text_and_a_button() {
    let p = plugin();
    for event in GITHUB_EVENTS {
        for (i, payload) in github_examples(event).iter().enumerate() {
            let msg = message(&p, event, payload);
            let text = msg["text"].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{event}[{i}] has no fallback text");
            let blocks = msg["blocks"].as_array().expect("blocks");
            assert!(!blocks.is_empty() && blocks.len() <= 50, "{event}[{i}]");
            for block in blocks {
                let kind = block["type"].as_str().unwrap_or("");
                assert!(
                    ["header", "section", "context", "actions"].contains(&kind),
                    "{event}[{i}] has a {kind:?} block"
                );
            }

            let header = blocks_of(&msg, "header");
            assert_eq!(header.len(), 1, "{event}[{i}]");
            assert_eq!(header[0]["text"]["type"], "plain_text");
            let title = header[0]["text"]["text"].as_str().unwrap_or("");
            assert!(
                !title.trim().is_empty() && title.chars().count() <= 150,
                "{event}[{i}] header {title:?}"
            );

            for section in blocks_of(&msg, "section") {
                if let Some(text) = section["text"]["text"].as_str() {
                    assert!(text.chars().count() <= 3000, "{event}[{i}]");
                }
                if let Some(fields) = section["fields"].as_array() {
                    assert!(!fields.is_empty() && fields.len() <= 10, "{event}[{i}]");
                    for f in fields {
                        assert_eq!(f["type"], "mrkdwn");
                        assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
                    }
                }
            }

            let actions = blocks_of(&msg, "actions");
            assert_eq!(actions.len(), 1, "{event}[{i}]");
            let button = &actions[0]["elements"][0];
            assert_eq!(button["type"], "button");
            assert!(button["text"]["text"].as_str().unwrap().chars().count() <= 75);
            let url = button["url"].as_str().unwrap_or("");
            assert!(
                url.starts_with("https://"),
                "{event}[{i}] button url {url:?}"
            );
        }
    }
}

#[test]
fn issue_message_says_who_did_what_and_links_to_the_issue() {
    let payload = github_examples("issues")
        .into_iter()
        .find(|e| e["action"] == "opened")
        .unwrap();
    let msg = message(&plugin(), "issues", &payload);
    let context = blocks_of(&msg, "context")[0]["elements"].to_string();
    assert!(
        context.contains(payload["sender"]["login"].as_str().unwrap()),
        "{context}"
    );
    assert!(context.contains(":large_green_circle:"), "{context}");
    assert_eq!(
        blocks_of(&msg, "actions")[0]["elements"][0]["url"],
        payload["issue"]["html_url"]
    );
}

#[test]
fn mrkdwn_special_characters_are_escaped() {
    let mut payload = github_examples("issues")
        .into_iter()
        .find(|e| e["action"] == "opened")
        .unwrap();
    payload["issue"]["body"] = json!("a <@U123> & <!channel> b");
    let msg = message(&plugin(), "issues", &payload);
    let section = blocks_of(&msg, "section")
        .into_iter()
        .find(|s| s["text"].is_object())
        .expect("a text section");
    assert_eq!(
        section["text"]["text"],
        "a &lt;@U123&gt; &amp; &lt;!channel&gt; b"
    );
}

#[test]
fn status_emoji_can_be_turned_off() {
    let p = TestPlugin::builtin("github-slack", json!({ "emoji": false }));
    let payload = &github_examples("star")[0];
    let msg = message(&p, "star", payload);
    let context = blocks_of(&msg, "context")[0]["elements"].to_string();
    assert!(!context.contains(":large_"), "{context}");
}

#[test]
fn unknown_event_becomes_a_generic_message_not_an_error() {
    let msg = message(&plugin(), "mystery", &json!({}));
    assert!(!msg["text"].as_str().unwrap().is_empty());
    assert_eq!(
        blocks_of(&msg, "actions")[0]["elements"][0]["url"],
        "https://github.com"
    );
}

#[test]
fn bad_emoji_option_is_a_config_error() {
    let p = TestPlugin::builtin("github-slack", json!({ "emoji": "sometimes" }));
    let reason = config_error(p.transform(json_msg(Some("star"), &json!({}))));
    assert!(reason.contains("with.emoji"), "{reason}");
}
