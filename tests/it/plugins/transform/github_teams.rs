//! `github-teams`: GitHub events to Teams MessageCards and Adaptive Cards.

use serde_json::{Value, json};

use super::{
    GITHUB_EVENTS, body_json, config_error, github_examples, invalid_input_error, json_msg, schema,
    violations,
};
use crate::support::plugin::TestPlugin;

/// Teams rejects messages over about 28 KB.
const TEAMS_LIMIT: usize = 28 * 1024;

fn plugin(card: &str) -> TestPlugin {
    TestPlugin::builtin("github-teams", json!({ "card": card }))
}

/// The one card `payload` becomes as `event`, with its raw size.
fn card(p: &TestPlugin, event: &str, payload: &Value) -> (Value, usize) {
    let out = p
        .transform(json_msg(Some(event), payload))
        .unwrap_or_else(|e| panic!("{event}: plugin call failed: {e}"));
    assert_eq!(out.len(), 1, "{event}: one message in, one card out");
    let msg = &out[0];
    assert_eq!(msg.content_type, "application/json");
    assert_eq!(msg.event_type.as_deref(), Some(event));
    (body_json(msg), msg.body.len())
}

fn message_card_color(card: &Value) -> &str {
    card["themeColor"].as_str().expect("themeColor")
}

#[test]
fn every_vendored_event_becomes_a_valid_message_card_with_title_and_link() {
    let p = plugin("message-card");
    let validator = schema("message-card.json");
    let mut checked = 0;
    for event in GITHUB_EVENTS {
        for (i, payload) in github_examples(event).iter().enumerate() {
            let (card, size) = card(&p, event, payload);
            let errors = violations(&validator, &card);
            assert!(
                errors.is_empty(),
                "{event}[{i}] is not a valid MessageCard: {errors:#?}\n{card:#}"
            );
            assert!(size < TEAMS_LIMIT, "{event}[{i}] is {size} bytes");
            let title = card["title"].as_str().unwrap_or("");
            assert!(!title.trim().is_empty(), "{event}[{i}] has no title");
            assert!(
                !card["sections"][0]["activityTitle"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{event}[{i}] says nobody did anything"
            );
            let uri = card["potentialAction"][0]["targets"][0]["uri"]
                .as_str()
                .unwrap_or("");
            assert!(uri.starts_with("https://"), "{event}[{i}] link is {uri:?}");
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} payloads checked");
}

#[test]
fn every_vendored_event_becomes_a_valid_adaptive_card_with_title_and_link() {
    let p = plugin("adaptive");
    let validator = schema("adaptive-card.json");
    for event in GITHUB_EVENTS {
        for (i, payload) in github_examples(event).iter().enumerate() {
            let (message, size) = card(&p, event, payload);
            assert!(size < TEAMS_LIMIT, "{event}[{i}] is {size} bytes");
            assert_eq!(message["type"], "message");
            let attachment = &message["attachments"][0];
            assert_eq!(
                attachment["contentType"],
                "application/vnd.microsoft.card.adaptive"
            );
            let content = &attachment["content"];
            assert_eq!(content["type"], "AdaptiveCard");
            assert_eq!(content["version"], "1.4");
            let errors = violations(&validator, content);
            assert!(
                errors.is_empty(),
                "{event}[{i}] is not a valid Adaptive Card: {errors:#?}\n{content:#}"
            );
            let title = content["body"][0]["text"].as_str().unwrap_or("");
            assert!(!title.trim().is_empty(), "{event}[{i}] has no title");
            let action = &content["actions"][0];
            assert_eq!(action["type"], "Action.OpenUrl");
            let url = action["url"].as_str().unwrap_or("");
            assert!(url.starts_with("https://"), "{event}[{i}] link is {url:?}");
        }
    }
}

#[test]
fn message_card_is_the_default_format() {
    let p = TestPlugin::builtin("github-teams", json!({}));
    let payload = &github_examples("issues")[0];
    let (card, _) = card(&p, "issues", payload);
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["@context"], "https://schema.org/extensions");
}

#[test]
fn issue_card_says_who_did_what_and_links_to_the_issue() {
    let p = plugin("message-card");
    let payload = github_examples("issues")
        .into_iter()
        .find(|e| e["action"] == "opened")
        .expect("an opened issue");
    let (card, _) = card(&p, "issues", &payload);
    let repo = payload["repository"]["full_name"].as_str().unwrap();
    let number = payload["issue"]["number"].as_u64().unwrap();
    let title = card["title"].as_str().unwrap();
    assert!(
        title.starts_with(&format!("[{repo}] Issue opened: #{number}")),
        "{title}"
    );
    let who = card["sections"][0]["activityTitle"].as_str().unwrap();
    assert!(
        who.contains(payload["sender"]["login"].as_str().unwrap()),
        "{who}"
    );
    assert!(who.contains("opened issue"), "{who}");
    assert_eq!(
        card["potentialAction"][0]["targets"][0]["uri"],
        payload["issue"]["html_url"]
    );
    assert_eq!(message_card_color(&card), "2EA44F", "opened is green");
    let facts = card["sections"][0]["facts"].as_array().unwrap();
    assert!(
        facts
            .iter()
            .any(|f| f["name"] == "Repository" && f["value"] == repo)
    );
}

#[test]
fn merged_pull_request_is_purple_and_closed_unmerged_is_red() {
    let p = plugin("message-card");
    let mut payload = github_examples("pull_request")
        .into_iter()
        .find(|e| e["action"] == "closed")
        .expect("a closed pull request");
    payload["pull_request"]["merged"] = json!(false);
    let (closed, _) = card(&p, "pull_request", &payload);
    assert_eq!(message_card_color(&closed), "CB2431");
    payload["pull_request"]["merged"] = json!(true);
    let (merged, _) = card(&p, "pull_request", &payload);
    assert_eq!(message_card_color(&merged), "6F42C1");
    assert!(
        merged["title"]
            .as_str()
            .unwrap()
            .contains("Pull request merged")
    );

    let (adaptive, _) = card(&plugin("adaptive"), "pull_request", &payload);
    let content = &adaptive["attachments"][0]["content"];
    assert_eq!(
        content["actions"][0]["url"],
        payload["pull_request"]["html_url"]
    );
}

#[test]
fn workflow_run_colour_follows_its_conclusion() {
    let p = plugin("message-card");
    let mut payload = github_examples("workflow_run")
        .into_iter()
        .find(|e| e["action"] == "completed")
        .expect("a completed run");
    payload["workflow_run"]["conclusion"] = json!("failure");
    let (failed, _) = card(&p, "workflow_run", &payload);
    assert_eq!(message_card_color(&failed), "CB2431");
    assert!(
        failed["title"].as_str().unwrap().contains("failed"),
        "{failed:#}"
    );
    payload["workflow_run"]["conclusion"] = json!("success");
    let (ok, _) = card(&p, "workflow_run", &payload);
    assert_eq!(message_card_color(&ok), "2EA44F");
    assert!(ok["title"].as_str().unwrap().contains("succeeded"));
    assert_eq!(
        ok["potentialAction"][0]["targets"][0]["uri"],
        payload["workflow_run"]["html_url"]
    );

    let (adaptive, _) = card(&plugin("adaptive"), "workflow_run", &payload);
    assert_eq!(
        adaptive["attachments"][0]["content"]["body"][0]["color"],
        "Good"
    );
}

#[test]
fn ping_gets_a_friendly_card() {
    let p = plugin("message-card");
    let payload = &github_examples("ping")[0];
    let (card, _) = card(&p, "ping", payload);
    assert!(
        card["title"]
            .as_str()
            .unwrap()
            .contains("Webhook connected"),
        "{card:#}"
    );
    let zen = payload["zen"].as_str().unwrap();
    assert!(card["sections"][0]["text"].as_str().unwrap().contains(zen));
}

#[test]
fn push_card_lists_commits_and_links_to_the_comparison() {
    let p = plugin("message-card");
    let payload = github_examples("push")
        .into_iter()
        .find(|e| e["commits"].as_array().is_some_and(|c| !c.is_empty()) && e["deleted"] == false)
        .expect("a push with commits");
    let (card, _) = card(&p, "push", &payload);
    let text = card["sections"][0]["text"].as_str().unwrap();
    let first = payload["commits"][0]["id"].as_str().unwrap();
    assert!(text.contains(&first[..7]), "{text}");
    // GitHub's compare links contain `^`, which is not allowed in a URI.
    let compare = payload["compare"].as_str().unwrap().replace('^', "%5E");
    assert_eq!(
        card["potentialAction"][0]["targets"][0]["uri"],
        compare.as_str()
    );
}

#[test]
fn unknown_event_becomes_a_generic_card_not_an_error() {
    let payload = &github_examples("issues")[0];
    for format in ["message-card", "adaptive"] {
        let (card, _) = card(&plugin(format), "deployment_protection_rule", payload);
        let text = card.to_string();
        assert!(
            text.contains("deployment protection rule"),
            "{format}: {card:#}"
        );
        assert!(text.contains(payload["repository"]["html_url"].as_str().unwrap()));
    }
    // Nothing to go on at all: still a title and a link.
    let (card, _) = card(&plugin("message-card"), "mystery", &json!({}));
    assert!(!card["title"].as_str().unwrap().is_empty());
    assert!(
        card["potentialAction"][0]["targets"][0]["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let errors = violations(&schema("message-card.json"), &card);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn event_type_falls_back_to_the_x_github_event_header() {
    let p = plugin("message-card");
    let payload = &github_examples("star")[0];
    let mut msg = json_msg(None, payload);
    msg.headers.push(("x-github-event".into(), "star".into()));
    let out = p.transform(msg).expect("plugin call failed");
    assert_eq!(out[0].event_type.as_deref(), Some("star"));
    let card = body_json(&out[0]);
    assert!(card["title"].as_str().unwrap().contains("star"), "{card:#}");
}

#[test]
fn long_issue_body_is_shortened_below_the_teams_limit() {
    let mut payload = github_examples("issues")
        .into_iter()
        .find(|e| e["action"] == "opened")
        .unwrap();
    payload["issue"]["body"] = json!("ä".repeat(100_000));
    payload["issue"]["title"] = json!("t".repeat(5_000));
    for format in ["message-card", "adaptive"] {
        let (_, size) = card(&plugin(format), "issues", &payload);
        assert!(size < 8 * 1024, "{format}: {size} bytes");
    }
}

#[test]
fn unknown_card_format_is_a_config_error() {
    let p = plugin("hero-card");
    let reason = config_error(p.transform(json_msg(Some("issues"), &json!({}))));
    assert!(reason.contains("with.card"), "{reason}");
}

#[test]
fn non_json_body_is_invalid_input() {
    let p = plugin("message-card");
    let mut msg = json_msg(Some("issues"), &json!({}));
    msg.body = bytes::Bytes::from_static(b"action=opened");
    invalid_input_error(p.transform(msg));
}
