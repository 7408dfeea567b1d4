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
