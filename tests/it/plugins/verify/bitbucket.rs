//! `bitbucket`: `X-Hub-Signature: sha256=<hex>` over the body (Bitbucket
//! Cloud "enhanced webhook security"; Data Center uses the same header).
//! Bitbucket publishes no signed example; signatures are computed here.

use serde_json::json;

use super::*;

const SECRET: &str = "bitbucket-webhook-secret-for-tests";
const BODY: &str = r#"{"push":{"changes":[]},"repository":{"full_name":"team/repo"}}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin("bitbucket", json!({ "secret": SECRET }))
}

fn signature(body: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
    )
}

#[test]
fn valid_signature_is_accepted_with_event_key_and_request_uuid() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Hub-Signature", &signature(BODY))
        .header("X-Event-Key", "repo:push")
        .header("X-Request-UUID", "0f2a2bd8-37d4-4b62-a1b4-5f5e1e1e2b5e")
        .header("X-Hook-UUID", "d1a2b3c4-0000-0000-0000-000000000000");
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("0f2a2bd8-37d4-4b62-a1b4-5f5e1e1e2b5e"));
    assert_eq!(event_type.as_deref(), Some("repo:push"));
}

#[test]
fn data_center_request_id_is_the_id() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Hub-Signature", &signature(BODY))
        .header("X-Event-Key", "repo:refs_changed")
        .header("X-Request-Id", "b6d1e0a9-1c2d-4e3f-8a9b-0c1d2e3f4a5b");
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("b6d1e0a9-1c2d-4e3f-8a9b-0c1d2e3f4a5b"));
    assert_eq!(event_type.as_deref(), Some("repo:refs_changed"));
}

#[test]
fn wrong_signature_is_rejected() {
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature", &signature("{}"));
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Hub-Signature"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &signature(BODY)[7..]]);
}

#[test]
fn sha1_signature_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header(
        "X-Hub-Signature",
        &format!(
            "sha1={}",
            hex::encode(hmac_sha1(SECRET.as_bytes(), BODY.as_bytes()))
        ),
    );
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header("X-Event-Key", "repo:push");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Hub-Signature"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("bitbucket", json!({}));
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature", &signature(BODY));
    expect_config_error(p.verify(&req));
}
