//! `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>` over `"{t}.{body}"`,
//! keyed with the whole `whsec_...` string. Stripe publishes no fixed test
//! vector (its libraries' tests sign on the fly), so signatures here are
//! computed independently with RustCrypto, as Stripe's docs describe.

use serde_json::json;

use super::*;

const SECRET: &str = "whsec_test_5a1b2c3d4e5f60718293a4b5c6d7e8f9";
const BODY: &str =
    r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid"}"#;

fn sign(timestamp: i64, body: &str) -> String {
    hex::encode(hmac_sha256(
        SECRET.as_bytes(),
        format!("{timestamp}.{body}").as_bytes(),
    ))
}

fn plugin() -> TestPlugin {
    TestPlugin::builtin("stripe", json!({ "secret": SECRET }))
}

fn request(header: &str) -> TestRequest {
    TestRequest::post(BODY.as_bytes().to_vec())
        .header("Stripe-Signature", header)
        .at_ms(NOW_MS)
}

#[test]
fn valid_signature_is_accepted_with_event_id_and_type() {
    let header = format!("t={NOW_SECS},v1={}", sign(NOW_SECS, BODY));
    let verdict = plugin().verify(&request(&header)).expect("plugin call");
    let (id, event_type, reply) = expect_accept(verdict);
    assert_eq!(id.as_deref(), Some("evt_1NG8Du2eZvKYlo2CUI79vXWy"));
    assert_eq!(event_type.as_deref(), Some("invoice.paid"));
    assert!(reply.is_none());
}

#[test]
fn any_matching_v1_among_several_is_enough() {
    // During a secret roll Stripe signs with every active secret; other
    // schemes such as v0 are ignored.
    let wrong = "0".repeat(64);
    let header = format!(
        "t={NOW_SECS},v1={wrong},v1={},v0={wrong}",
        sign(NOW_SECS, BODY)
    );
    let verdict = plugin().verify(&request(&header)).expect("plugin call");
    expect_accept(verdict);
}

#[test]
fn malformed_v1_is_skipped_and_alone_is_a_mismatch() {
    let header = format!("t={NOW_SECS},v1=zz,v1={}", sign(NOW_SECS, BODY));
    expect_accept(plugin().verify(&request(&header)).expect("plugin call"));

    let header = format!("t={NOW_SECS},v1=zz");
    let reason = expect_reject(
        plugin().verify(&request(&header)).expect("plugin call"),
        401,
    );
    assert!(reason.contains("does not match"), "{reason}");
}

#[test]
fn wrong_signature_is_rejected() {
    let other_secret = hex::encode(hmac_sha256(
        b"whsec_another",
        format!("{NOW_SECS}.{BODY}").as_bytes(),
    ));
    let header = format!("t={NOW_SECS},v1={other_secret}");
    let verdict = plugin().verify(&request(&header)).expect("plugin call");
    let reason = expect_reject(verdict, 401);
    assert!(reason.contains("Stripe-Signature"), "{reason}");
    assert_no_leak(&reason, &[SECRET, &sign(NOW_SECS, BODY)]);
}

#[test]
fn tampered_body_is_rejected() {
    let header = format!("t={NOW_SECS},v1={}", sign(NOW_SECS, BODY));
    let req = TestRequest::post(br#"{"id":"evt_forged","type":"invoice.paid"}"#.to_vec())
        .header("Stripe-Signature", &header)
        .at_ms(NOW_MS);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn stale_timestamp_is_rejected() {
    let t = NOW_SECS - 301;
    let header = format!("t={t},v1={}", sign(t, BODY));
    let reason = expect_reject(
        plugin().verify(&request(&header)).expect("plugin call"),
        401,
    );
    assert!(reason.contains("300"), "{reason}");
}

#[test]
fn future_timestamp_is_rejected() {
    let t = NOW_SECS + 301;
    let header = format!("t={t},v1={}", sign(t, BODY));
    expect_reject(
        plugin().verify(&request(&header)).expect("plugin call"),
        401,
    );
}

#[test]
fn timestamp_at_the_edge_of_the_tolerance_is_accepted() {
    let t = NOW_SECS - 300;
    let header = format!("t={t},v1={}", sign(t, BODY));
    expect_accept(plugin().verify(&request(&header)).expect("plugin call"));
}

#[test]
fn tolerance_is_configurable() {
    let t = NOW_SECS - 500;
    let header = format!("t={t},v1={}", sign(t, BODY));
    let p = TestPlugin::builtin("stripe", json!({ "secret": SECRET, "tolerance": 600 }));
    expect_accept(p.verify(&request(&header)).expect("plugin call"));
}

#[test]
fn missing_header_is_rejected() {
    let req = TestRequest::post(BODY.as_bytes().to_vec()).at_ms(NOW_MS);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("Stripe-Signature"), "{reason}");
}

#[test]
fn header_without_timestamp_is_rejected() {
    let header = format!("v1={}", sign(NOW_SECS, BODY));
    let reason = expect_reject(
        plugin().verify(&request(&header)).expect("plugin call"),
        401,
    );
    assert!(reason.contains("Stripe-Signature"), "{reason}");
}

#[test]
fn header_without_v1_is_rejected() {
    let header = format!("t={NOW_SECS},v0={}", sign(NOW_SECS, BODY));
    expect_reject(
        plugin().verify(&request(&header)).expect("plugin call"),
        401,
    );
}

#[test]
fn garbage_header_is_rejected_not_an_error() {
    for header in [
        "",
        "t=",
        "t=abc,v1=zz",
        "=,=,,",
        "t=99999999999999999999999,v1=00",
    ] {
        let verdict = plugin().verify(&request(header)).expect("plugin call");
        expect_reject(verdict, 401);
    }
}

#[test]
fn missing_secret_is_a_config_error() {
    let header = format!("t={NOW_SECS},v1={}", sign(NOW_SECS, BODY));
    let p = TestPlugin::builtin("stripe", json!({}));
    let reason = expect_config_error(p.verify(&request(&header)));
    assert!(reason.contains("secret"), "{reason}");
}
