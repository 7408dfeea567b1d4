//! `trello`: `X-Trello-Webhook: <b64>`, HMAC-SHA1 of body + callback URL
//! (exactly as registered) with the app secret; `HEAD` creation check.
//! Trello publishes no signed example; signatures are computed here as its
//! webhook guide describes.

use serde_json::json;

use super::*;

const SECRET: &str = "trello-oauth-secret-for-tests";
const CALLBACK: &str = "https://hooks.example.com/hooks/trello?board=1";
const BODY: &str = r#"{"action":{"id":"5f1a2b3c4d5e6f7a8b9c0d1e","type":"updateCard","data":{}},"model":{"id":"4d5ea62fd76aa1136000000c"}}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin(
        "trello",
        json!({ "secret": SECRET, "callback_url": CALLBACK }),
    )
}

fn signature(body: &str, callback: &str) -> String {
    b64(hmac_sha1(
        SECRET.as_bytes(),
        format!("{body}{callback}").as_bytes(),
    ))
}

fn signed(signature: &str) -> TestRequest {
    TestRequest::post(BODY.as_bytes().to_vec()).header("X-Trello-Webhook", signature)
}

#[test]
fn head_creation_check_is_answered_200() {
    let req = TestRequest::get().method("HEAD");
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
}

#[test]
fn valid_signature_is_accepted_with_action_id_and_type() {
    let (id, event_type, _) = expect_accept(
        plugin()
            .verify(&signed(&signature(BODY, CALLBACK)))
            .expect("plugin call"),
    );
    assert_eq!(id.as_deref(), Some("5f1a2b3c4d5e6f7a8b9c0d1e"));
    assert_eq!(event_type.as_deref(), Some("updateCard"));
}

#[test]
fn signature_over_the_body_alone_is_rejected() {
    let body_only = b64(hmac_sha1(SECRET.as_bytes(), BODY.as_bytes()));
    expect_reject(
        plugin().verify(&signed(&body_only)).expect("plugin call"),
        401,
    );
}

#[test]
fn signature_for_another_callback_url_is_rejected() {
    // A trailing slash is a different URL.
    let other = signature(BODY, "https://hooks.example.com/hooks/trello/?board=1");
    expect_reject(plugin().verify(&signed(&other)).expect("plugin call"), 401);
}

#[test]
fn wrong_signature_is_rejected() {
    let reason = expect_reject(
        plugin()
            .verify(&signed(&signature("{}", CALLBACK)))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("X-Trello-Webhook"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &signature(BODY, CALLBACK)]);
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec());
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Trello-Webhook"), "{reason}");
}

#[test]
fn missing_callback_url_is_a_config_error() {
    let p = TestPlugin::builtin("trello", json!({ "secret": SECRET }));
    let reason = expect_config_error(p.verify(&signed(&signature(BODY, CALLBACK))));
    assert!(reason.contains("callback_url"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("trello", json!({ "callback_url": CALLBACK }));
    expect_config_error(p.verify(&signed(&signature(BODY, CALLBACK))));
}
