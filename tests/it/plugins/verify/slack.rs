//! `slack`: `X-Slack-Signature: v0=<hex>` over `"v0:{ts}:{body}"`, with
//! `X-Slack-Request-Timestamp` and the `url_verification` handshake.

use serde_json::json;

use super::*;

const SECRET: &str = "slack-signing-secret-for-tests";

fn sign(timestamp: i64, body: &str) -> String {
    let base = format!("v0:{timestamp}:{body}");
    format!(
        "v0={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), base.as_bytes()))
    )
}

fn plugin() -> TestPlugin {
    TestPlugin::builtin("slack", json!({ "secret": SECRET }))
}

fn signed(body: &str, timestamp: i64) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec())
        .header("X-Slack-Request-Timestamp", &timestamp.to_string())
        .header("X-Slack-Signature", &sign(timestamp, body))
        .at_ms(NOW_MS)
}

#[test]
fn slack_documentation_example_verifies() {
    // The worked example in Slack's "Verifying requests from Slack"
    // (api.slack.com/authentication/verifying-requests-from-slack): a
    // form-encoded slash command.
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let req = TestRequest::post(body.as_bytes().to_vec())
        .header("X-Slack-Request-Timestamp", "1531420618")
        .header(
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        )
        .at_ms(1_531_420_618_000 + 60_000);
    let p = TestPlugin::builtin("slack", json!({ "secret": secret }));
    let (id, event_type, _) = expect_accept(p.verify(&req).expect("plugin call"));
    // Form bodies have no JSON envelope to read.
    assert_eq!((id, event_type), (None, None));
}

#[test]
fn event_callback_is_accepted_with_event_id_and_inner_type() {
    let body = r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#;
    let (id, event_type, reply) = expect_accept(
        plugin()
            .verify(&signed(body, NOW_SECS))
            .expect("plugin call"),
    );
    assert_eq!(id.as_deref(), Some("Ev08MFMKH6"));
    assert_eq!(event_type.as_deref(), Some("app_mention"));
    assert!(reply.is_none());
}

#[test]
fn url_verification_is_answered_with_the_challenge_as_plain_text() {
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let response = expect_respond(
        plugin()
            .verify(&signed(body, NOW_SECS))
            .expect("plugin call"),
    );
    assert_eq!(
        expect_text(&response, 200),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[test]
fn unsigned_url_verification_is_rejected() {
    // The handshake is answered only after the signature checks out.
    let body = r#"{"challenge":"abc","type":"url_verification"}"#;
    let req = TestRequest::post(body.as_bytes().to_vec())
        .header("X-Slack-Request-Timestamp", &NOW_SECS.to_string())
        .header("X-Slack-Signature", &format!("v0={}", "0".repeat(64)))
        .at_ms(NOW_MS);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn wrong_signature_is_rejected() {
    let body = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#;
    let req = TestRequest::post(body.as_bytes().to_vec())
        .header("X-Slack-Request-Timestamp", &NOW_SECS.to_string())
        .header("X-Slack-Signature", &sign(NOW_SECS, "{}"))
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Slack-Signature"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &sign(NOW_SECS, body)]);
}

#[test]
fn signature_for_another_timestamp_is_rejected() {
    let body = "{}";
    let req = TestRequest::post(body.as_bytes().to_vec())
        .header("X-Slack-Request-Timestamp", &NOW_SECS.to_string())
        .header("X-Slack-Signature", &sign(NOW_SECS - 1, body))
        .at_ms(NOW_MS);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn stale_timestamp_is_rejected() {
    let reason = expect_reject(
        plugin()
            .verify(&signed("{}", NOW_SECS - 301))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("X-Slack-Request-Timestamp"), "{reason}");
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(b"{}".to_vec())
        .header("X-Slack-Request-Timestamp", &NOW_SECS.to_string())
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Slack-Signature"), "{reason}");
}

#[test]
fn missing_timestamp_header_is_rejected() {
    let req = TestRequest::post(b"{}".to_vec())
        .header("X-Slack-Signature", &sign(NOW_SECS, "{}"))
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Slack-Request-Timestamp"), "{reason}");
}

#[test]
fn malformed_headers_are_rejected() {
    let bad_timestamp = TestRequest::post(b"{}".to_vec())
        .header("X-Slack-Request-Timestamp", "yesterday")
        .header("X-Slack-Signature", &sign(NOW_SECS, "{}"))
        .at_ms(NOW_MS);
    expect_reject(plugin().verify(&bad_timestamp).expect("plugin call"), 401);

    let no_prefix = TestRequest::post(b"{}".to_vec())
        .header("X-Slack-Request-Timestamp", &NOW_SECS.to_string())
        .header("X-Slack-Signature", "a2114d57b48eac39")
        .at_ms(NOW_MS);
    expect_reject(plugin().verify(&no_prefix).expect("plugin call"), 401);
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("slack", json!({}));
    expect_config_error(p.verify(&signed("{}", NOW_SECS)));
}
