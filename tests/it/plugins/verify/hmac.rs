//! `hmac`: the generic, configurable HMAC check.

use serde_json::json;

use super::*;

const SECRET: &str = "generic-hmac-secret-for-tests";

#[test]
fn github_documentation_vector_verifies_as_a_generic_body_signature() {
    // GitHub's "Validating webhook deliveries" example: secret
    // "It's a Secret to Everybody", body "Hello, World!".
    let p = TestPlugin::builtin(
        "hmac",
        json!({
            "secret": "It's a Secret to Everybody",
            "header": "X-Hub-Signature-256",
            "prefix": "sha256=",
            "id_header": "X-GitHub-Delivery",
            "event_type_header": "X-GitHub-Event",
        }),
    );
    let req = TestRequest::post(b"Hello, World!".to_vec())
        .header(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("X-GitHub-Event", "push");
    let (id, event_type, _) = expect_accept(p.verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    assert_eq!(event_type.as_deref(), Some("push"));
}

#[test]
fn base64_sha512_signature_is_accepted() {
    let body = br#"{"event":"ping"}"#;
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Signature", "algorithm": "sha512", "encoding": "base64" }),
    );
    let req = TestRequest::post(body.to_vec())
        .header("X-Signature", &b64(hmac_sha512(SECRET.as_bytes(), body)));
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn sha1_hex_signature_is_accepted() {
    let body = b"payload";
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "algorithm": "sha1" }),
    );
    let req = TestRequest::post(body.to_vec())
        .header("X-Sig", &hex::encode(hmac_sha1(SECRET.as_bytes(), body)));
    expect_accept(p.verify(&req).expect("plugin call"));
}

fn timestamped() -> TestPlugin {
    TestPlugin::builtin(
        "hmac",
        json!({
            "secret": SECRET,
            "header": "X-Webhook-Signature",
            "encoding": "base64",
            "signed": "{timestamp}.{body}",
            "timestamp_header": "X-Webhook-Timestamp",
            "tolerance": "120",
        }),
    )
}

fn timestamped_request(timestamp: i64, body: &str) -> TestRequest {
    let signature = b64(hmac_sha256(
        SECRET.as_bytes(),
        format!("{timestamp}.{body}").as_bytes(),
    ));
    TestRequest::post(body.as_bytes().to_vec())
        .header("X-Webhook-Timestamp", &timestamp.to_string())
        .header("X-Webhook-Signature", &signature)
        .at_ms(NOW_MS)
}

#[test]
fn template_with_a_timestamp_is_accepted() {
    expect_accept(
        timestamped()
            .verify(&timestamped_request(NOW_SECS - 60, "{}"))
            .expect("plugin call"),
    );
}

#[test]
fn stale_timestamp_is_rejected() {
    let reason = expect_reject(
        timestamped()
            .verify(&timestamped_request(NOW_SECS - 121, "{}"))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("X-Webhook-Timestamp"), "{reason}");
}

#[test]
fn missing_timestamp_header_is_rejected() {
    let req = TestRequest::post(b"{}".to_vec())
        .header("X-Webhook-Signature", "AAAA")
        .at_ms(NOW_MS);
    let reason = expect_reject(timestamped().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Webhook-Timestamp"), "{reason}");
}

#[test]
fn millisecond_and_rfc3339_timestamps_are_understood() {
    for (format, timestamp) in [
        ("milliseconds", "1700000000000"),
        ("rfc3339", "2023-11-14T22:13:20Z"),
    ] {
        let p = TestPlugin::builtin(
            "hmac",
            json!({
                "secret": SECRET,
                "header": "X-Sig",
                "signed": "{timestamp}{body}",
                "timestamp_header": "X-Ts",
                "timestamp_format": format,
            }),
        );
        let sig = hex::encode(hmac_sha256(
            SECRET.as_bytes(),
            format!("{timestamp}body").as_bytes(),
        ));
        let req = TestRequest::post(b"body".to_vec())
            .header("X-Ts", timestamp)
            .header("X-Sig", &sig)
            .at_ms(NOW_MS);
        expect_accept(p.verify(&req).expect("plugin call"));
    }
}

#[test]
fn template_placeholders_cover_method_path_query_and_headers() {
    let p = TestPlugin::builtin(
        "hmac",
        json!({
            "secret": SECRET,
            "header": "X-Sig",
            "signed": "{method} {path}?{query}|{header:X-Account}|{{literal}}|{body}",
        }),
    );
    let data = "POST /hooks/test?a=1|acct-9|{literal}|{}";
    let req = TestRequest::post(b"{}".to_vec())
        .query("a=1")
        .header("X-Account", "acct-9")
        .header(
            "X-Sig",
            &hex::encode(hmac_sha256(SECRET.as_bytes(), data.as_bytes())),
        );
    expect_accept(p.verify(&req).expect("plugin call"));

    let without_account = TestRequest::post(b"{}".to_vec()).query("a=1").header(
        "X-Sig",
        &hex::encode(hmac_sha256(SECRET.as_bytes(), data.as_bytes())),
    );
    let reason = expect_reject(p.verify(&without_account).expect("plugin call"), 401);
    assert!(reason.contains("X-Account"), "{reason}");
}

#[test]
fn one_of_several_separated_signatures_is_enough() {
    let body = b"rotating";
    let good = hex::encode(hmac_sha256(SECRET.as_bytes(), body));
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "prefix": "v1=", "separator": "," }),
    );
    let req = TestRequest::post(body.to_vec())
        .header("X-Sig", &format!("v1={},v1={good}", "ab".repeat(32)));
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn malformed_candidates_are_skipped_and_reported_apart_from_wrong_ones() {
    let body = b"rotating";
    let good = hex::encode(hmac_sha256(SECRET.as_bytes(), body));
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "prefix": "v1=", "separator": "," }),
    );
    let verify = |header: &str| {
        p.verify(&TestRequest::post(body.to_vec()).header("X-Sig", header))
            .expect("plugin call")
    };
    expect_accept(verify(&format!("v1=zz,,v2={good},v1={good}")));

    // Nothing readable: the header's form is what is wrong.
    let reason = expect_reject(verify(&format!("v1=zz,v2={good}")), 401);
    assert!(reason.contains("must look like v1=<hex>"), "{reason}");
    // Readable but wrong: the signature is.
    let reason = expect_reject(verify(&format!("v1=zz,v1={}", "ab".repeat(32))), 401);
    assert!(reason.contains("does not match"), "{reason}");
}

#[test]
fn base64_encoded_secret_is_decoded() {
    let key = b"raw key bytes \x00\x01\x02";
    let body = b"x";
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": b64(key), "secret_encoding": "base64", "header": "X-Sig" }),
    );
    let req =
        TestRequest::post(body.to_vec()).header("X-Sig", &hex::encode(hmac_sha256(key, body)));
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn wrong_signature_is_rejected() {
    let p = TestPlugin::builtin("hmac", json!({ "secret": SECRET, "header": "X-Sig" }));
    let good = hex::encode(hmac_sha256(SECRET.as_bytes(), b"body"));
    let req = TestRequest::post(b"other body".to_vec()).header("X-Sig", &good);
    let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Sig"), "{reason}");
    assert_no_leak(
        &reason,
        &[
            SECRET,
            &hex::encode(hmac_sha256(SECRET.as_bytes(), b"other body")),
        ],
    );
}

#[test]
fn missing_signature_header_is_rejected() {
    let p = TestPlugin::builtin("hmac", json!({ "secret": SECRET, "header": "X-Sig" }));
    let reason = expect_reject(
        p.verify(&TestRequest::post(b"body".to_vec()))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("X-Sig"), "{reason}");
}

#[test]
fn signature_without_the_configured_prefix_is_rejected() {
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "prefix": "sha256=" }),
    );
    let req = TestRequest::post(b"body".to_vec()).header(
        "X-Sig",
        &hex::encode(hmac_sha256(SECRET.as_bytes(), b"body")),
    );
    let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("sha256="), "{reason}");
}

#[test]
fn unsigned_timestamp_header_is_a_config_error() {
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "timestamp_header": "X-Ts" }),
    );
    let reason = expect_config_error(p.verify(&TestRequest::post(b"x".to_vec())));
    assert!(reason.contains("timestamp"), "{reason}");
}

#[test]
fn timestamp_placeholder_without_a_header_is_a_config_error() {
    let p = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "signed": "{timestamp}.{body}" }),
    );
    expect_config_error(p.verify(&TestRequest::post(b"x".to_vec())));
}

#[test]
fn unknown_placeholder_or_key_is_a_config_error() {
    let unknown_placeholder = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "signed": "{nonce}.{body}" }),
    );
    expect_config_error(unknown_placeholder.verify(&TestRequest::post(b"x".to_vec())));

    let unknown_key = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "algorithim": "sha1" }),
    );
    expect_config_error(unknown_key.verify(&TestRequest::post(b"x".to_vec())));

    let unknown_algorithm = TestPlugin::builtin(
        "hmac",
        json!({ "secret": SECRET, "header": "X-Sig", "algorithm": "md5" }),
    );
    expect_config_error(unknown_algorithm.verify(&TestRequest::post(b"x".to_vec())));
}

#[test]
fn missing_secret_or_header_is_a_config_error() {
    let no_secret = TestPlugin::builtin("hmac", json!({ "header": "X-Sig" }));
    let reason = expect_config_error(no_secret.verify(&TestRequest::post(b"x".to_vec())));
    assert!(reason.contains("secret"), "{reason}");

    let no_header = TestPlugin::builtin("hmac", json!({ "secret": SECRET }));
    let reason = expect_config_error(no_header.verify(&TestRequest::post(b"x".to_vec())));
    assert!(reason.contains("header"), "{reason}");
}
