//! `pusher`: `X-Pusher-Key` chooses the app secret; `X-Pusher-Signature` is
//! hex HMAC-SHA256 of the body. Pusher's scheme has no timestamp, so there
//! is no stale case.

use serde_json::json;

use super::*;

// Pusher's own library test (pusher/pusher-http-php,
// tests/unit/webhookTest.php, `testValidWebhookSignature`).
const VECTOR_KEY: &str = "thisisaauthkey";
const VECTOR_SECRET: &str = "thisisasecret";
const VECTOR_BODY: &str = r#"{"hello":"world"}"#;
const VECTOR_SIGNATURE: &str = "40e0ad3b9aa49529322879e84de1aaaf18bde1efe839ca263d540cc865510d25";

const BODY: &str = r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"},{"name":"channel_occupied","channel":"other"}]}"#;

fn plugin() -> TestPlugin {
    TestPlugin::builtin(
        "pusher",
        json!({ "keys": { VECTOR_KEY: VECTOR_SECRET, "key-2": "secret-2" } }),
    )
}

fn request(key: &str, signature: &str, body: &str) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec())
        .header("X-Pusher-Key", key)
        .header("X-Pusher-Signature", signature)
}

#[test]
fn pusher_library_vector_verifies() {
    let req = request(VECTOR_KEY, VECTOR_SIGNATURE, VECTOR_BODY);
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn the_key_chooses_the_secret() {
    let signature = hex::encode(hmac_sha256(b"secret-2", BODY.as_bytes()));
    let (_, event_type, _) = expect_accept(
        plugin()
            .verify(&request("key-2", &signature, BODY))
            .expect("plugin call"),
    );
    assert_eq!(event_type.as_deref(), Some("channel_occupied"));
    // The same signature under the other app's key is someone else's.
    let reason = expect_reject(
        plugin()
            .verify(&request(VECTOR_KEY, &signature, BODY))
            .expect("plugin call"),
        401,
    );
    assert_no_leak(&reason, &[VECTOR_SECRET, "secret-2", &signature]);
}

#[test]
fn mixed_events_have_no_event_type() {
    let body = r#"{"time_ms":1,"events":[{"name":"member_added"},{"name":"member_removed"}]}"#;
    let signature = hex::encode(hmac_sha256(b"secret-2", body.as_bytes()));
    let (_, event_type, _) = expect_accept(
        plugin()
            .verify(&request("key-2", &signature, body))
            .expect("plugin call"),
    );
    assert_eq!(event_type, None);
}

#[test]
fn tampered_body_is_rejected() {
    let req = request(VECTOR_KEY, VECTOR_SIGNATURE, r#"{"hello":"World"}"#);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Pusher-Signature"), "{reason}");
}

#[test]
fn unknown_key_is_rejected() {
    let req = request("someone-else", VECTOR_SIGNATURE, VECTOR_BODY);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Pusher-Key"), "{reason}");
}

#[test]
fn missing_headers_are_rejected() {
    let no_key = TestRequest::post(VECTOR_BODY.as_bytes().to_vec())
        .header("X-Pusher-Signature", VECTOR_SIGNATURE);
    let reason = expect_reject(plugin().verify(&no_key).expect("plugin call"), 401);
    assert!(reason.contains("missing X-Pusher-Key"), "{reason}");
    let no_signature =
        TestRequest::post(VECTOR_BODY.as_bytes().to_vec()).header("X-Pusher-Key", VECTOR_KEY);
    let reason = expect_reject(plugin().verify(&no_signature).expect("plugin call"), 401);
    assert!(reason.contains("missing X-Pusher-Signature"), "{reason}");
    let malformed = request(VECTOR_KEY, "not hex", VECTOR_BODY);
    expect_reject(plugin().verify(&malformed).expect("plugin call"), 401);
}

#[test]
fn keys_must_map_keys_to_secrets() {
    let req = request(VECTOR_KEY, VECTOR_SIGNATURE, VECTOR_BODY);
    for with in [
        json!({}),
        json!({ "secret": VECTOR_SECRET }),
        json!({ "keys": {} }),
        json!({ "keys": ["a"] }),
        json!({ "keys": { VECTOR_KEY: "" } }),
    ] {
        expect_config_error(TestPlugin::builtin("pusher", with).verify(&req));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary() {
    let gw = gateway(
        &format!("    verify: {{ plugin: pusher, with: {{ keys: {{ {VECTOR_KEY}: {VECTOR_SECRET} }} }} }}"),
        None,
    )
    .await;
    let ok = [
        ("x-pusher-key", VECTOR_KEY),
        ("x-pusher-signature", VECTOR_SIGNATURE),
    ];
    let (status, _, text) = send(&gw, "POST", "", &ok, VECTOR_BODY.as_bytes()).await;
    assert_eq!(status, 202, "{text}");
    let (status, _, _) = send(&gw, "POST", "", &ok, br#"{"hello":"World"}"#).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        &gw,
        "POST",
        "",
        &[("x-pusher-key", VECTOR_KEY)],
        VECTOR_BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
}
