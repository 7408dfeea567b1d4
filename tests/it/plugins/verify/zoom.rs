//! `zoom`: `x-zm-signature: v0=<hex>` over `v0:{timestamp}:{body}` with a
//! tolerance, and the `endpoint.url_validation` handshake
//! (`plainToken` → `encryptedToken` = hex HMAC-SHA256(secret, plainToken)).
//! Zoom publishes no signed example; signatures are computed here as in
//! Zoom's own sample app (zoom/webhook-sample).

use serde_json::{Value, json};

use super::*;

const SECRET: &str = "zoom-secret-token";
const EVENT: &str = r#"{"event":"meeting.started","event_ts":1700000000000,"payload":{"account_id":"abc","object":{"id":"85746065","topic":"Standup"}}}"#;
const VALIDATION: &str = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;

fn sign(timestamp: i64, body: &str) -> String {
    format!(
        "v0={}",
        hex::encode(hmac_sha256(
            SECRET.as_bytes(),
            format!("v0:{timestamp}:{body}").as_bytes()
        ))
    )
}

fn plugin() -> TestPlugin {
    TestPlugin::builtin("zoom", json!({ "secret": SECRET }))
}

fn request(timestamp: i64, signature: &str, body: &str) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec())
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", &timestamp.to_string())
        .header("x-zm-signature", signature)
        .at_ms(NOW_MS)
}

#[test]
fn valid_signature_is_accepted_with_the_event_type() {
    let req = request(NOW_SECS, &sign(NOW_SECS, EVENT), EVENT);
    let (_, event_type, reply) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(event_type.as_deref(), Some("meeting.started"));
    assert!(reply.is_none());
}

#[test]
fn url_validation_answers_plain_and_encrypted_token() {
    let req = request(NOW_SECS, &sign(NOW_SECS, VALIDATION), VALIDATION);
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(response.status, 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    let expected = hex::encode(hmac_sha256(SECRET.as_bytes(), b"qgg8vlvZRS6UYooatFL8Aw"));
    assert_eq!(
        body,
        json!({ "plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected })
    );
}

#[test]
fn unsigned_url_validation_is_rejected() {
    let req = TestRequest::post(VALIDATION.as_bytes().to_vec()).at_ms(NOW_MS);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn url_validation_without_a_token_is_400() {
    let body = r#"{"event":"endpoint.url_validation","payload":{}}"#;
    let req = request(NOW_SECS, &sign(NOW_SECS, body), body);
    expect_reject(plugin().verify(&req).expect("plugin call"), 400);
}

#[test]
fn tampered_body_is_rejected() {
    let req = request(
        NOW_SECS,
        &sign(NOW_SECS, EVENT),
        &EVENT.replace("Standup", "Standdown"),
    );
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("x-zm-signature"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &sign(NOW_SECS, EVENT)[3..]]);
}

#[test]
fn signature_for_another_timestamp_is_rejected() {
    let req = request(NOW_SECS, &sign(NOW_SECS - 1, EVENT), EVENT);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn stale_and_future_timestamps_are_rejected() {
    for t in [NOW_SECS - 301, NOW_SECS + 301] {
        let req = request(t, &sign(t, EVENT), EVENT);
        let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
        assert!(reason.contains("x-zm-request-timestamp"), "{reason}");
    }
    // Within a wider configured tolerance.
    let t = NOW_SECS - 301;
    let wide = TestPlugin::builtin("zoom", json!({ "secret": SECRET, "tolerance": 600 }));
    expect_accept(wide.verify(&request(t, &sign(t, EVENT), EVENT)).unwrap());
}

#[test]
fn missing_and_malformed_headers_are_rejected() {
    let no_signature = TestRequest::post(EVENT.as_bytes().to_vec())
        .header("x-zm-request-timestamp", &NOW_SECS.to_string())
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&no_signature).unwrap(), 401);
    assert!(reason.contains("missing x-zm-signature"), "{reason}");
    let no_timestamp = TestRequest::post(EVENT.as_bytes().to_vec())
        .header("x-zm-signature", &sign(NOW_SECS, EVENT))
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&no_timestamp).unwrap(), 401);
    assert!(
        reason.contains("missing x-zm-request-timestamp"),
        "{reason}"
    );
    let hex_only = sign(NOW_SECS, EVENT)[3..].to_owned();
    for (timestamp, signature) in [
        ("soon", sign(NOW_SECS, EVENT)),
        (&*NOW_SECS.to_string(), hex_only),
    ] {
        let req = TestRequest::post(EVENT.as_bytes().to_vec())
            .header("x-zm-request-timestamp", timestamp)
            .header("x-zm-signature", &signature)
            .at_ms(NOW_MS);
        expect_reject(plugin().verify(&req).unwrap(), 401);
    }
}

#[test]
fn missing_secret_is_a_config_error() {
    let req = request(NOW_SECS, &sign(NOW_SECS, EVENT), EVENT);
    expect_config_error(TestPlugin::builtin("zoom", json!({})).verify(&req));
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary() {
    let gw = gateway(
        &format!("    verify: {{ plugin: zoom, with: {{ secret: {SECRET} }} }}"),
        None,
    )
    .await;
    let json_ct = ("content-type", "application/json");
    let t = now_secs();
    let ts = t.to_string();

    let sig = sign(t, VALIDATION);
    let (status, ct, text) = send(
        &gw,
        "POST",
        "",
        &[
            json_ct,
            ("x-zm-request-timestamp", &ts),
            ("x-zm-signature", &sig),
        ],
        VALIDATION.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "application/json");
    let expected = hex::encode(hmac_sha256(SECRET.as_bytes(), b"qgg8vlvZRS6UYooatFL8Aw"));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({ "plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected })
    );

    let sig = sign(t, EVENT);
    let headers = [
        json_ct,
        ("x-zm-request-timestamp", ts.as_str()),
        ("x-zm-signature", sig.as_str()),
    ];
    let (status, _, text) = send(&gw, "POST", "", &headers, EVENT.as_bytes()).await;
    assert_eq!(status, 202, "{text}");
    let tampered = EVENT.replace("Standup", "Standdown");
    let (status, _, _) = send(&gw, "POST", "", &headers, tampered.as_bytes()).await;
    assert_eq!(status, 401);
    let stale = t - 3600;
    let (stale_ts, stale_sig) = (stale.to_string(), sign(stale, EVENT));
    let (status, _, text) = send(
        &gw,
        "POST",
        "",
        &[
            json_ct,
            ("x-zm-request-timestamp", &stale_ts),
            ("x-zm-signature", &stale_sig),
        ],
        EVENT.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("x-zm-request-timestamp"), "{text}");
    let (status, _, _) = send(&gw, "POST", "", &[json_ct], EVENT.as_bytes()).await;
    assert_eq!(status, 401);
}
