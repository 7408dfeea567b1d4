//! `zendesk`: `X-Zendesk-Webhook-Signature` = base64 HMAC-SHA256 of
//! timestamp + body (developer.zendesk.com/documentation/webhooks/verifying),
//! with `X-Zendesk-Webhook-Signature-Timestamp` an RFC 3339 time.
//!
//! Zendesk's pages disagree with each other: the current page says
//! `TIMESTAMP + BODY`, while the older event-connectors page writes
//! `(BODY)(TIMESTAMP)` and its sample values only verify in that order. The
//! plugin follows the current page (as do the implementations found in public
//! code), so signatures here are computed independently in that order.

use serde_json::json;

use super::*;

const SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";
const BODY: &str = r#"{"type":"zen:event-type:ticket.created","id":"cbe4028c-7239-495d-b020-f22348516046","time":"2023-11-14T22:13:20Z","detail":{}}"#;
/// [`NOW_MS`] as Zendesk writes it.
const NOW_RFC3339: &str = "2023-11-14T22:13:20Z";

fn plugin() -> TestPlugin {
    TestPlugin::builtin("zendesk", json!({ "secret": SECRET }))
}

fn sign(timestamp: &str, body: &str) -> String {
    b64(hmac_sha256(
        SECRET.as_bytes(),
        format!("{timestamp}{body}").as_bytes(),
    ))
}

fn request(timestamp: &str, signature: &str) -> TestRequest {
    TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Zendesk-Webhook-Signature-Timestamp", timestamp)
        .header("X-Zendesk-Webhook-Signature", signature)
        .at_ms(NOW_MS)
}

#[test]
fn valid_signature_is_accepted_with_event_id_and_type() {
    let req = request(NOW_RFC3339, &sign(NOW_RFC3339, BODY));
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("cbe4028c-7239-495d-b020-f22348516046"));
    assert_eq!(event_type.as_deref(), Some("zen:event-type:ticket.created"));
}

#[test]
fn timestamps_with_offsets_and_fractions_are_understood() {
    // All three name the same instant as NOW_MS.
    for timestamp in [
        "2023-11-14T23:13:20+01:00",
        "2023-11-14T22:13:20.123Z",
        "1700000000",
    ] {
        let req = request(timestamp, &sign(timestamp, BODY));
        expect_accept(plugin().verify(&req).expect("plugin call"));
    }
}

#[test]
fn body_then_timestamp_order_is_rejected() {
    let reversed = b64(hmac_sha256(
        SECRET.as_bytes(),
        format!("{BODY}{NOW_RFC3339}").as_bytes(),
    ));
    expect_reject(
        plugin()
            .verify(&request(NOW_RFC3339, &reversed))
            .expect("plugin call"),
        401,
    );
}

#[test]
fn wrong_signature_is_rejected() {
    let req = request(NOW_RFC3339, &sign(NOW_RFC3339, "{}"));
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Zendesk-Webhook-Signature"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &sign(NOW_RFC3339, BODY)]);
}

#[test]
fn stale_timestamp_is_rejected() {
    let stale = "2023-11-14T22:08:19Z"; // 301 s before NOW_MS
    let reason = expect_reject(
        plugin()
            .verify(&request(stale, &sign(stale, BODY)))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("Timestamp"), "{reason}");
}

#[test]
fn future_timestamp_is_rejected() {
    let future = "2023-11-14T22:18:21Z";
    expect_reject(
        plugin()
            .verify(&request(future, &sign(future, BODY)))
            .expect("plugin call"),
        401,
    );
}

#[test]
fn malformed_timestamp_is_rejected() {
    for timestamp in [
        "yesterday",
        "2023-11-14",
        "2023-13-14T22:13:20Z",
        "2023-11-14T22:13:20",
    ] {
        let req = request(timestamp, &sign(timestamp, BODY));
        let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
        assert!(
            reason.contains("X-Zendesk-Webhook-Signature-Timestamp"),
            "{reason}"
        );
    }
}

#[test]
fn missing_timestamp_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Zendesk-Webhook-Signature", &sign(NOW_RFC3339, BODY))
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(
        reason.contains("X-Zendesk-Webhook-Signature-Timestamp"),
        "{reason}"
    );
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec())
        .header("X-Zendesk-Webhook-Signature-Timestamp", NOW_RFC3339)
        .at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Zendesk-Webhook-Signature"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("zendesk", json!({}));
    expect_config_error(p.verify(&request(NOW_RFC3339, &sign(NOW_RFC3339, BODY))));
}
