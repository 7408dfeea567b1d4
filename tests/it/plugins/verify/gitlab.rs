//! `gitlab`: `X-Gitlab-Token` equality, and GitLab's signing token, which
//! follows Standard Webhooks (`webhook-signature: v1,<b64>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, gitlab-org/gitlab!230944).

use serde_json::json;

use super::*;

const TOKEN: &str = "gitlab-secret-token-for-tests";
const BODY: &str = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;

fn token_plugin() -> TestPlugin {
    TestPlugin::builtin("gitlab", json!({ "secret": TOKEN }))
}

fn with_token(token: &str) -> TestRequest {
    TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Gitlab-Token", token)
        .header("X-Gitlab-Event", "Push Hook")
}

/// A `whsec_` signing token over 32 key bytes.
const SIGNING_KEY: &[u8] = b"gitlab-signing-token-key-32bytes";

fn signing_token() -> String {
    format!("whsec_{}", b64(SIGNING_KEY))
}

fn signed(id: &str, timestamp: i64, body: &str) -> TestRequest {
    let signature = b64(hmac_sha256(
        SIGNING_KEY,
        format!("{id}.{timestamp}.{body}").as_bytes(),
    ));
    TestRequest::post(body.as_bytes().to_vec())
        .header("webhook-id", id)
        .header("webhook-timestamp", &timestamp.to_string())
        .header("webhook-signature", &format!("v1,{signature}"))
        .header("Idempotency-Key", id)
        .header("X-Gitlab-Event", "Push Hook")
        .at_ms(NOW_MS)
}

#[test]
fn matching_token_is_accepted_with_event_and_idempotency_key() {
    let req = with_token(TOKEN)
        .header("Idempotency-Key", "a5b9f2f8-4a1c-4b8e-9f3e-1c2d3e4f5a6b")
        .header(
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        );
    let (id, event_type, _) = expect_accept(token_plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("a5b9f2f8-4a1c-4b8e-9f3e-1c2d3e4f5a6b"));
    assert_eq!(event_type.as_deref(), Some("Push Hook"));
}

#[test]
fn event_uuid_is_the_id_when_there_is_no_idempotency_key() {
    let req = with_token(TOKEN).header(
        "X-Gitlab-Event-UUID",
        "13792a34-cac6-4fda-95a8-c58e00a3954e",
    );
    let (id, _, _) = expect_accept(token_plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("13792a34-cac6-4fda-95a8-c58e00a3954e"));
}

#[test]
fn wrong_token_is_rejected() {
    for token in [
        "gitlab-secret-token-for-test",
        "",
        "GITLAB-SECRET-TOKEN-FOR-TESTS",
    ] {
        let reason = expect_reject(
            token_plugin()
                .verify(&with_token(token))
                .expect("plugin call"),
            401,
        );
        assert!(reason.contains("X-Gitlab-Token"), "{reason}");
        assert_no_leak(&reason, &[TOKEN]);
    }
}

#[test]
fn missing_token_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header("X-Gitlab-Event", "Push Hook");
    let reason = expect_reject(token_plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Gitlab-Token"), "{reason}");
}

#[test]
fn signing_token_follows_the_standard_webhooks_test_vector() {
    // The Standard Webhooks reference vector (standard-webhooks/standard-webhooks,
    // libraries/go/webhook_test.go), which GitLab's signing format follows.
    let p = TestPlugin::builtin(
        "gitlab",
        json!({ "signing_token": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
    );
    let req = TestRequest::post(br#"{"test": 2432232314}"#.to_vec())
        .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .header("webhook-timestamp", "1614265330")
        .header(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )
        .at_ms(1_614_265_330_000);
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn valid_signing_token_signature_is_accepted() {
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": signing_token() }));
    let (id, event_type, _) = expect_accept(
        p.verify(&signed("idem-1", NOW_SECS, BODY))
            .expect("plugin call"),
    );
    assert_eq!(id.as_deref(), Some("idem-1"));
    assert_eq!(event_type.as_deref(), Some("Push Hook"));
}

#[test]
fn one_matching_signing_token_signature_among_several_is_enough() {
    // While a signing token is rotated the header lists one `v1` per token.
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": signing_token() }));
    let good = b64(hmac_sha256(
        SIGNING_KEY,
        format!("idem-r.{NOW_SECS}.{BODY}").as_bytes(),
    ));
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("webhook-id", "idem-r")
        .header("webhook-timestamp", &NOW_SECS.to_string())
        .header(
            "webhook-signature",
            &format!("v1,{} v1,{good}", b64([0u8; 32])),
        )
        .at_ms(NOW_MS);
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn wrong_signing_token_signature_is_rejected() {
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": signing_token() }));
    let req = signed("idem-2", NOW_SECS, BODY);
    let tampered = TestRequest::post(br#"{"object_kind":"tag_push"}"#.to_vec())
        .header("webhook-id", "idem-2")
        .header("webhook-timestamp", &NOW_SECS.to_string())
        .header(
            "webhook-signature",
            &format!(
                "v1,{}",
                b64(hmac_sha256(
                    SIGNING_KEY,
                    format!("idem-2.{NOW_SECS}.{BODY}").as_bytes()
                ))
            ),
        )
        .at_ms(NOW_MS);
    expect_accept(p.verify(&req).expect("plugin call"));
    let reason = expect_reject(p.verify(&tampered).expect("plugin call"), 401);
    assert!(reason.contains("webhook-signature"), "{reason}");
}

#[test]
fn stale_signing_token_timestamp_is_rejected() {
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": signing_token() }));
    let reason = expect_reject(
        p.verify(&signed("idem-3", NOW_SECS - 301, BODY))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("webhook-timestamp"), "{reason}");
}

#[test]
fn missing_signature_headers_are_rejected_when_signing_is_configured() {
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": signing_token() }));
    let req = with_token(TOKEN).at_ms(NOW_MS);
    let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("webhook-"), "{reason}");
}

#[test]
fn both_checks_must_pass_when_both_are_configured() {
    let p = TestPlugin::builtin(
        "gitlab",
        json!({ "secret": TOKEN, "signing_token": signing_token() }),
    );
    let signed_only = signed("idem-4", NOW_SECS, BODY);
    expect_reject(p.verify(&signed_only).expect("plugin call"), 401);
    let both = signed("idem-4", NOW_SECS, BODY).header("X-Gitlab-Token", TOKEN);
    expect_accept(p.verify(&both).expect("plugin call"));
}

#[test]
fn no_secret_and_no_signing_token_is_a_config_error() {
    let p = TestPlugin::builtin("gitlab", json!({}));
    let reason = expect_config_error(p.verify(&with_token(TOKEN)));
    assert!(reason.contains("secret"), "{reason}");
}

#[test]
fn malformed_signing_token_is_a_config_error() {
    let p = TestPlugin::builtin("gitlab", json!({ "signing_token": "whsec_***" }));
    expect_config_error(p.verify(&signed("idem-5", NOW_SECS, BODY)));
}
