//! `teams-outgoing`: `Authorization: HMAC <b64>`, HMAC-SHA256 of the body
//! keyed with base64-decode(security token), answered synchronously. Microsoft
//! publishes no signed example; signatures are computed here as in
//! Microsoft's outgoing-webhook samples (OfficeDev/msteams-samples-outgoing-webhook-nodejs).

use serde_json::{Value, json};

use super::*;

const KEY: &[u8] = b"teams-outgoing-webhook-key-32byt";
const BODY: &str = r#"{"type":"message","id":"1485983408511","timestamp":"2017-02-01T21:10:07.437Z","text":"<at>Bot</at> hello","from":{"id":"29:1"}}"#;

fn token() -> String {
    b64(KEY)
}

fn authorization(body: &str) -> String {
    format!("HMAC {}", b64(hmac_sha256(KEY, body.as_bytes())))
}

fn request(authorization: &str) -> TestRequest {
    TestRequest::post(BODY.as_bytes().to_vec()).header("Authorization", authorization)
}

fn reply_json(response: &PluginResponse) -> Value {
    assert_eq!(response.status, 200);
    assert_eq!(header(response, "content-type"), Some("application/json"));
    serde_json::from_slice(&response.body).expect("JSON reply")
}

#[test]
fn valid_hmac_is_accepted_forwarded_and_answered_with_a_reply() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": token() }));
    let (id, event_type, reply) = expect_accept(
        p.verify(&request(&authorization(BODY)))
            .expect("plugin call"),
    );
    assert_eq!(id.as_deref(), Some("1485983408511"));
    assert_eq!(event_type.as_deref(), Some("message"));
    let reply = reply_json(&reply.expect("a synchronous reply"));
    assert_eq!(reply["type"], "message");
    assert!(reply["text"].as_str().is_some_and(|t| !t.is_empty()));
}

#[test]
fn reply_text_is_configurable() {
    let p = TestPlugin::builtin(
        "teams-outgoing",
        json!({ "secret": token(), "reply": "On it!" }),
    );
    let (_, _, reply) = expect_accept(
        p.verify(&request(&authorization(BODY)))
            .expect("plugin call"),
    );
    assert_eq!(
        reply_json(&reply.expect("reply")),
        json!({ "type": "message", "text": "On it!" })
    );
}

#[test]
fn forward_false_answers_without_forwarding() {
    let p = TestPlugin::builtin(
        "teams-outgoing",
        json!({ "secret": token(), "reply": "Noted", "forward": false }),
    );
    let response = expect_respond(
        p.verify(&request(&authorization(BODY)))
            .expect("plugin call"),
    );
    assert_eq!(
        reply_json(&response),
        json!({ "type": "message", "text": "Noted" })
    );
}

#[test]
fn key_is_the_decoded_token_not_its_text() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": token() }));
    let keyed_with_text = format!(
        "HMAC {}",
        b64(hmac_sha256(token().as_bytes(), BODY.as_bytes()))
    );
    expect_reject(
        p.verify(&request(&keyed_with_text)).expect("plugin call"),
        401,
    );
}

#[test]
fn wrong_signature_is_rejected() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": token() }));
    let verdict = p
        .verify(&request(&authorization(r#"{"type":"message"}"#)))
        .expect("plugin call");
    let reason = expect_reject(verdict, 401);
    assert!(reason.contains("Authorization"), "{reason}");
    assert_no_leak(&reason, &[&token(), &authorization(BODY)[5..]]);
}

#[test]
fn missing_authorization_header_is_rejected() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": token() }));
    let req = TestRequest::post(BODY.as_bytes().to_vec());
    let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("Authorization"), "{reason}");
}

#[test]
fn malformed_authorization_header_is_rejected() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": token() }));
    for value in ["Bearer abc", "HMAC", "HMAC not-base64!!"] {
        expect_reject(p.verify(&request(value)).expect("plugin call"), 401);
    }
}

#[test]
fn token_that_is_not_base64_is_a_config_error() {
    let p = TestPlugin::builtin("teams-outgoing", json!({ "secret": "not base64!" }));
    expect_config_error(p.verify(&request(&authorization(BODY))));
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("teams-outgoing", json!({}));
    expect_config_error(p.verify(&request(&authorization(BODY))));
}

// --- Card replies ----------------------------------------------------------
//
// Teams shows an outgoing webhook's reply message as it would a bot's, with
// cards as attachments (Microsoft's "Create an outgoing webhook" article:
// "outgoing webhooks ... can respond with ... Adaptive Cards ... and
// message cards").

fn adaptive_card() -> Value {
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{ "type": "TextBlock", "text": "On it", "wrap": true }]
    })
}

fn reply_of(with: Value) -> Value {
    let p = TestPlugin::builtin("teams-outgoing", with);
    let (_, _, reply) = expect_accept(
        p.verify(&request(&authorization(BODY)))
            .expect("plugin call"),
    );
    reply_json(&reply.expect("reply"))
}

#[test]
fn adaptive_card_from_with_is_the_replys_attachment() {
    let reply = reply_of(json!({ "secret": token(), "card": adaptive_card() }));
    assert_eq!(
        reply,
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": adaptive_card()
            }]
        })
    );
}

#[test]
fn message_card_as_json_text_with_reply_text() {
    let card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": "Ticket",
        "title": "Ticket opened"
    });
    let reply = reply_of(json!({
        "secret": token(),
        "reply": "Here you go",
        "card": card.to_string()
    }));
    assert_eq!(reply["text"], "Here you go");
    assert_eq!(
        reply["attachments"][0]["contentType"],
        "application/vnd.microsoft.teams.card.o365connector"
    );
    assert_eq!(reply["attachments"][0]["content"], card);
}

#[test]
fn a_whole_message_is_sent_as_it_is() {
    let message = json!({ "type": "message", "text": "custom", "attachments": [] });
    assert_eq!(
        reply_of(json!({ "secret": token(), "card": message.clone() })),
        message
    );
}

#[test]
fn card_template_renders_over_the_activity() {
    let reply = reply_of(json!({
        "secret": token(),
        "card_template": r#"{"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": {{ ("You said: " ~ text) | tojson }}}, {"type": "TextBlock", "text": {{ body.from.id | tojson }}}]}"#
    }));
    let content = &reply["attachments"][0]["content"];
    assert_eq!(
        reply["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(content["body"][0]["text"], "You said: <at>Bot</at> hello");
    assert_eq!(content["body"][1]["text"], "29:1");
}

#[test]
fn bad_cards_and_templates_are_config_errors() {
    let req = request(&authorization(BODY));
    for with in [
        json!({ "secret": token(), "card": { "type": "HeroCard" } }),
        json!({ "secret": token(), "card": "{not json" }),
        json!({ "secret": token(), "card_template": "{{ unclosed" }),
        json!({ "secret": token(), "card_template": "{\"text\": {{ text }}}" }),
        json!({ "secret": token(), "card": adaptive_card(), "card_template": "{}" }),
    ] {
        expect_config_error(TestPlugin::builtin("teams-outgoing", with).verify(&req));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn card_reply_through_the_binary() {
    let gw = gateway(
        &format!(
            "    verify:\n      plugin: teams-outgoing\n      with:\n        secret: \"{}\"\n        card: {}",
            token(),
            adaptive_card()
        ),
        None,
    )
    .await;
    let auth = authorization(BODY);
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let (status, ct, text) = send(&gw, "POST", "", &headers, BODY.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "application/json");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["attachments"][0]["content"], adaptive_card());
    let (status, _, _) = send(&gw, "POST", "", &headers, br#"{"type":"message"}"#).await;
    assert_eq!(status, 401);
}
