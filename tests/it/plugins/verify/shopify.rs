//! `shopify`: `X-Shopify-Hmac-Sha256: <b64>`, HMAC-SHA256 of the body with
//! the client secret. Shopify publishes no signed example; signatures are
//! computed here with RustCrypto.

use serde_json::json;

use super::*;

const SECRET: &str = "shpss_test_client_secret";
const BODY: &str = r#"{"id":820982911946154508,"email":"jon@example.com","total_price":"10.00"}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin("shopify", json!({ "secret": SECRET }))
}

fn signature(body: &str) -> String {
    b64(hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
}

#[test]
fn valid_signature_is_accepted_with_webhook_id_and_topic() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Shopify-Hmac-Sha256", &signature(BODY))
        .header("X-Shopify-Topic", "orders/create")
        .header(
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        )
        .header("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5");
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"));
    assert_eq!(event_type.as_deref(), Some("orders/create"));
}

#[test]
fn wrong_signature_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Shopify-Hmac-Sha256", &signature("{}"));
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Shopify-Hmac-Sha256"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &signature(BODY)]);
}

#[test]
fn hex_instead_of_base64_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header(
        "X-Shopify-Hmac-Sha256",
        &hex::encode(hmac_sha256(SECRET.as_bytes(), BODY.as_bytes())),
    );
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn missing_signature_header_is_rejected() {
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Shopify-Topic", "orders/create");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Shopify-Hmac-Sha256"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("shopify", json!({}));
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Shopify-Hmac-Sha256", &signature(BODY));
    expect_config_error(p.verify(&req));
}
