//! `dropbox`: `GET ?challenge=` echo; `X-Dropbox-Signature: <hex>`,
//! HMAC-SHA256 of the body with the app secret. Dropbox publishes no signed
//! example; signatures are computed here with RustCrypto.

use serde_json::json;

use super::*;

const SECRET: &str = "dropbox-app-secret-for-tests";
const BODY: &str = r#"{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}, "delta": {"users": [12345]}}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin("dropbox", json!({ "secret": SECRET }))
}

fn signed(body: &str) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec()).header(
        "X-Dropbox-Signature",
        &hex::encode(hmac_sha256(SECRET.as_bytes(), body.as_bytes())),
    )
}

#[test]
fn challenge_is_echoed_as_plain_text_with_nosniff() {
    let req = TestRequest::get().query("challenge=d8c2a9e0f1b34b5c");
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(expect_text(&response, 200), "d8c2a9e0f1b34b5c");
}

#[test]
fn get_without_a_challenge_is_a_bad_request() {
    let req = TestRequest::get();
    expect_reject(plugin().verify(&req).expect("plugin call"), 400);
}

#[test]
fn valid_signature_is_accepted() {
    expect_accept(plugin().verify(&signed(BODY)).expect("plugin call"));
}

#[test]
fn uppercase_hex_signature_is_accepted() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header(
        "X-Dropbox-Signature",
        &hex::encode_upper(hmac_sha256(SECRET.as_bytes(), BODY.as_bytes())),
    );
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn wrong_signature_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).header(
        "X-Dropbox-Signature",
        &hex::encode(hmac_sha256(b"another-secret", BODY.as_bytes())),
    );
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Dropbox-Signature"), "{reason}");
    assert_no_leak(
        &reason,
        &[
            SECRET,
            &hex::encode(hmac_sha256(SECRET.as_bytes(), BODY.as_bytes())),
        ],
    );
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec());
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Dropbox-Signature"), "{reason}");
}

#[test]
fn malformed_signature_header_is_rejected() {
    let req =
        TestRequest::post(BODY.as_bytes().to_vec()).header("X-Dropbox-Signature", "zz-not-hex");
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("dropbox", json!({}));
    expect_config_error(p.verify(&signed(BODY)));
}
