//! `twilio`: `X-Twilio-Signature`, base64 HMAC-SHA1 (auth token) of the full
//! URL plus, for form posts, the sorted parameters; JSON bodies are bound by
//! `bodySHA256` in the signed URL.

use serde_json::json;

use super::*;

/// Twilio's SDK tests use auth token `12345` and this URL with
/// `?foo=1&bar=2` (twilio-python tests/unit/test_request_validator.py,
/// twilio-csharp RequestValidatorTest, TwilioDevEd/api-snippets
/// security/signature_validation).
const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php";
const QUERY: &str = "foo=1&bar=2";
const FORM: &str = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
const FORM_CT: &str = "application/x-www-form-urlencoded";

fn plugin() -> TestPlugin {
    TestPlugin::builtin("twilio", json!({ "secret": TOKEN, "url": URL }))
}

fn form(signature: &str) -> TestRequest {
    TestRequest::post(FORM.as_bytes().to_vec())
        .query(QUERY)
        .header("Content-Type", FORM_CT)
        .header("X-Twilio-Signature", signature)
}

/// The signed string, built by hand: URL, then name+value pairs by name.
fn sign(data: &str) -> String {
    b64(hmac_sha1(TOKEN.as_bytes(), data.as_bytes()))
}

#[test]
fn twilio_form_test_vector_verifies() {
    // Expected signature published in Twilio's SDK tests and docs snippets.
    let req = form("RSOYDt4T1cUTdK1PDd93/VVr8B8=").header("I-Twilio-Idempotency-Token", "idem-7");
    let (id, _, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("idem-7"));
}

#[test]
fn twilio_json_body_test_vector_verifies() {
    // twilio-python `test_validation_of_body_succeeds` (and the C#/Go/PHP
    // equivalents): the body's SHA-256 rides in the signed URL.
    let req = TestRequest::post(br#"{"property": "value", "boolean": true}"#.to_vec())
        .query("foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620")
        .header("Content-Type", "application/json")
        .header("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4=");
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn signature_over_the_url_with_the_default_port_is_accepted() {
    // twilio-python `test_validation_adds_port_on_https`: Twilio sometimes
    // signs with an explicit :443.
    expect_accept(
        plugin()
            .verify(&form("kvajT1Ptam85bY51eRf/AJRuM3w="))
            .expect("plugin call"),
    );
}

#[test]
fn configured_url_with_a_port_also_matches_a_signature_without_it() {
    let p = TestPlugin::builtin(
        "twilio",
        json!({ "secret": TOKEN, "url": "https://mycompany.com:1234/myapp.php" }),
    );
    expect_accept(
        p.verify(&form("RSOYDt4T1cUTdK1PDd93/VVr8B8="))
            .expect("plugin call"),
    );
}

#[test]
fn independently_signed_form_with_repeated_parameters_is_accepted() {
    let body = "Sid=CA123&Digits=5678&Digits=1234&Digits=1234&SidAccount=AC123&Note=a+b%26c";
    // Names sorted; each distinct value of a repeated name once, sorted.
    let data = format!("{URL}?{QUERY}Digits1234Digits5678Notea b&cSidCA123SidAccountAC123");
    let req = TestRequest::post(body.as_bytes().to_vec())
        .query(QUERY)
        .header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("X-Twilio-Signature", &sign(&data));
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn get_request_signs_only_the_url() {
    let req = TestRequest::get()
        .query("CallSid=CA1&CallStatus=completed")
        .header(
            "X-Twilio-Signature",
            &sign(&format!("{URL}?CallSid=CA1&CallStatus=completed")),
        );
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn tampered_form_parameter_is_rejected() {
    let tampered = FORM.replace("Digits=1234", "Digits=9999");
    let req = TestRequest::post(tampered.into_bytes())
        .query(QUERY)
        .header("Content-Type", FORM_CT)
        .header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Twilio-Signature"), "{reason}");
    assert_no_leak(&reason, &[TOKEN, "RSOYDt4T1cUTdK1PDd93"]);
}

#[test]
fn other_query_string_is_rejected() {
    let req = TestRequest::post(FORM.as_bytes().to_vec())
        .query("foo=1&bar=3")
        .header("Content-Type", FORM_CT)
        .header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn tampered_json_body_is_rejected() {
    let req = TestRequest::post(br#"{"property": "evil", "boolean": true}"#.to_vec())
        .query("foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620")
        .header("Content-Type", "application/json")
        .header("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4=");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("bodySHA256"), "{reason}");
}

#[test]
fn json_body_without_body_sha256_is_rejected() {
    // The URL-only signature would not cover the body.
    let data = format!("{URL}?{QUERY}");
    let req = TestRequest::post(br#"{"property": "value"}"#.to_vec())
        .query(QUERY)
        .header("Content-Type", "application/json")
        .header("X-Twilio-Signature", &sign(&data));
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn wrong_auth_token_is_rejected() {
    let p = TestPlugin::builtin("twilio", json!({ "secret": "54321", "url": URL }));
    expect_reject(
        p.verify(&form("RSOYDt4T1cUTdK1PDd93/VVr8B8="))
            .expect("plugin call"),
        401,
    );
}

#[test]
fn missing_signature_header_is_rejected() {
    let req = TestRequest::post(FORM.as_bytes().to_vec())
        .query(QUERY)
        .header("Content-Type", FORM_CT);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("X-Twilio-Signature"), "{reason}");
}

#[test]
fn malformed_signature_header_is_rejected() {
    expect_reject(
        plugin().verify(&form("not base64 !")).expect("plugin call"),
        401,
    );
}

#[test]
fn missing_url_is_a_config_error() {
    let p = TestPlugin::builtin("twilio", json!({ "secret": TOKEN }));
    let reason = expect_config_error(p.verify(&form("RSOYDt4T1cUTdK1PDd93/VVr8B8=")));
    assert!(reason.contains("url"), "{reason}");
}

#[test]
fn relative_url_is_a_config_error() {
    let p = TestPlugin::builtin("twilio", json!({ "secret": TOKEN, "url": "/hooks/twilio" }));
    expect_config_error(p.verify(&form("RSOYDt4T1cUTdK1PDd93/VVr8B8=")));
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("twilio", json!({ "url": URL }));
    expect_config_error(p.verify(&form("RSOYDt4T1cUTdK1PDd93/VVr8B8=")));
}
