//! `kaizala`: `kz-callback-token` equals `with.secret`; the callback-URL
//! validation echoes `validationToken` as plain text. (A shared token, no
//! signature, so there is no vector to reproduce.)

use serde_json::json;

use super::*;

const SECRET: &str = "kaizala-callback-token-for-tests";
const BODY: &str = r#"{"subscriptionId":"sub-1","objectId":"grp-1","objectType":"Group","eventType":"TextMessageCreated","eventId":"ev-42","data":{"text":"hi"},"context":"ctx"}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin("kaizala", json!({ "secret": SECRET }))
}

#[test]
fn validation_token_query_is_echoed_as_plain_text() {
    let req = TestRequest::get().query("validationToken=8c0e7f2a-1b%2B3c%204d");
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    // Exactly the decoded token, nothing more.
    assert_eq!(expect_text(&response, 200), "8c0e7f2a-1b+3c 4d");
}

#[test]
fn validation_token_in_a_json_body_is_echoed() {
    let req = TestRequest::post(br#"{"validationToken":"tok-123"}"#.to_vec());
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(expect_text(&response, 200), "tok-123");
}

#[test]
fn matching_callback_token_is_accepted_with_event_id_and_type() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header("kz-callback-token", SECRET);
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("ev-42"));
    assert_eq!(event_type.as_deref(), Some("TextMessageCreated"));
}

#[test]
fn wrong_callback_token_is_rejected() {
    for token in [
        "kaizala-callback-token-for-test",
        "x",
        "KAIZALA-CALLBACK-TOKEN-FOR-TESTS",
    ] {
        let req = TestRequest::post(BODY.as_bytes().to_vec()).header("kz-callback-token", token);
        let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
        assert!(reason.contains("kz-callback-token"), "{reason}");
        assert_no_leak(&reason, &[SECRET]);
    }
}

#[test]
fn missing_callback_token_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec());
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("kz-callback-token"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("kaizala", json!({}));
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header("kz-callback-token", SECRET);
    expect_config_error(p.verify(&req));
}
