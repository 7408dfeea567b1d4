//! `meta`: the `hub.challenge` verification request and
//! `X-Hub-Signature-256: sha256=<hex>` over the body with the app secret.
//! Meta publishes no signed example; signatures are computed here.

use serde_json::json;

use super::*;

const SECRET: &str = "meta-app-secret-for-tests";
const VERIFY_TOKEN: &str = "meta-verify-token-for-tests";
const BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{}}]}]}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin(
        "meta",
        json!({ "secret": SECRET, "verify_token": VERIFY_TOKEN }),
    )
}

fn signature(body: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
    )
}

#[test]
fn verification_request_with_the_right_token_gets_the_challenge() {
    let req = TestRequest::get().query(&format!(
        "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}"
    ));
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(expect_text(&response, 200), "1158201444");
}

#[test]
fn verification_request_with_a_wrong_token_is_forbidden() {
    let req = TestRequest::get()
        .query("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 403);
    assert_no_leak(&reason, &[VERIFY_TOKEN]);
}

#[test]
fn verification_request_without_subscribe_mode_is_forbidden() {
    let req = TestRequest::get().query(&format!(
        "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={VERIFY_TOKEN}"
    ));
    expect_reject(plugin().verify(&req).expect("plugin call"), 403);
}

#[test]
fn valid_signature_is_accepted_with_the_object_as_event_type() {
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature-256", &signature(BODY));
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id, None);
    assert_eq!(event_type.as_deref(), Some("whatsapp_business_account"));
}

#[test]
fn wrong_signature_is_rejected() {
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature-256", &signature("{}"));
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Hub-Signature-256"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &signature(BODY)[7..]]);
}

#[test]
fn verify_token_is_not_the_signing_key() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header(
        "X-Hub-Signature-256",
        &format!(
            "sha256={}",
            hex::encode(hmac_sha256(VERIFY_TOKEN.as_bytes(), BODY.as_bytes()))
        ),
    );
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec());
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Hub-Signature-256"), "{reason}");
}

#[test]
fn malformed_signature_header_is_rejected() {
    let sha1 = format!(
        "sha1={}",
        hex::encode(hmac_sha1(SECRET.as_bytes(), BODY.as_bytes()))
    );
    for value in [sha1.as_str(), "sha256=", "sha256=xyz"] {
        let req = TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature-256", value);
        expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    }
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("meta", json!({ "verify_token": VERIFY_TOKEN }));
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Hub-Signature-256", &signature(BODY));
    expect_config_error(p.verify(&req));
}

#[test]
fn verification_request_without_a_configured_verify_token_is_a_config_error() {
    let p = TestPlugin::builtin("meta", json!({ "secret": SECRET }));
    let req = TestRequest::get().query("hub.mode=subscribe&hub.challenge=1&hub.verify_token=x");
    let reason = expect_config_error(p.verify(&req));
    assert!(reason.contains("verify_token"), "{reason}");
}
