//! `token`: a shared secret in `?code=` (WordPress, Azure Monitor alerts,
//! Kudu, MyGet, as ASP.NET WebHooks set them up), another query parameter,
//! a header, or HTTP Basic (Azure DevOps service hooks). None of these
//! senders signs or timestamps anything, so there is no stale case.

use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn plugin(with: serde_json::Value) -> TestPlugin {
    TestPlugin::builtin("token", with)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{password}")))
}

#[test]
fn code_query_parameter_is_the_default() {
    let p = plugin(json!({ "secret": SECRET }));
    let req = TestRequest::post(b"{}".to_vec()).query(&format!("code={SECRET}"));
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn percent_encoded_code_is_decoded() {
    let p = plugin(json!({ "secret": "a b+c/d=" }));
    let req = TestRequest::post(b"{}".to_vec()).query("x=1&code=a%20b%2Bc%2Fd%3D");
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn wrong_code_is_rejected_without_quoting_it() {
    let p = plugin(json!({ "secret": SECRET }));
    let req = TestRequest::post(b"{}".to_vec()).query("code=guess");
    let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("?code="), "{reason}");
    assert_no_leak(&reason, &[SECRET, "guess"]);
}

#[test]
fn missing_code_is_rejected() {
    let p = plugin(json!({ "secret": SECRET }));
    let reason = expect_reject(
        p.verify(&TestRequest::post(b"{}".to_vec()))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("missing ?code="), "{reason}");
}

#[test]
fn another_parameter_can_carry_it() {
    let p = plugin(json!({ "secret": SECRET, "param": "key" }));
    let ok = TestRequest::post(b"{}".to_vec()).query(&format!("key={SECRET}"));
    expect_accept(p.verify(&ok).expect("plugin call"));
    // `code` is no longer looked at.
    let other = TestRequest::post(b"{}".to_vec()).query(&format!("code={SECRET}"));
    expect_reject(p.verify(&other).expect("plugin call"), 401);
}

#[test]
fn header_mode() {
    let p = plugin(json!({ "secret": SECRET, "header": "X-Hook-Token" }));
    let ok = TestRequest::post(b"{}".to_vec()).header("x-hook-token", SECRET);
    expect_accept(p.verify(&ok).expect("plugin call"));
    let wrong = TestRequest::post(b"{}".to_vec()).header("x-hook-token", "nope");
    let reason = expect_reject(p.verify(&wrong).expect("plugin call"), 401);
    assert_no_leak(&reason, &[SECRET]);
    let missing = TestRequest::post(b"{}".to_vec()).query(&format!("code={SECRET}"));
    let reason = expect_reject(p.verify(&missing).expect("plugin call"), 401);
    assert!(reason.contains("missing X-Hook-Token"), "{reason}");
}

#[test]
fn basic_mode_checks_the_password_and_optionally_the_user() {
    let p = plugin(json!({ "secret": SECRET, "basic": true }));
    let ok = TestRequest::post(b"{}".to_vec()).header("authorization", &basic("anyone", SECRET));
    expect_accept(p.verify(&ok).expect("plugin call"));

    let p = plugin(json!({ "secret": SECRET, "basic": true, "username": "devops" }));
    let ok = TestRequest::post(b"{}".to_vec()).header("authorization", &basic("devops", SECRET));
    expect_accept(p.verify(&ok).expect("plugin call"));
    for (user, password) in [("other", SECRET), ("devops", "wrong"), ("devops", "")] {
        let req = TestRequest::post(b"{}".to_vec()).header("authorization", &basic(user, password));
        let reason = expect_reject(p.verify(&req).expect("plugin call"), 401);
        assert_no_leak(&reason, &[SECRET]);
    }
}

#[test]
fn basic_mode_refuses_missing_and_malformed_credentials() {
    let p = plugin(json!({ "secret": SECRET, "basic": true }));
    let reason = expect_reject(
        p.verify(&TestRequest::post(b"{}".to_vec()))
            .expect("plugin call"),
        401,
    );
    assert!(reason.contains("missing Authorization"), "{reason}");
    let no_colon = format!("Basic {}", b64(SECRET));
    for value in [
        "Bearer abc",
        "Basic not-base64!",
        no_colon.as_str(),
        "Basic",
    ] {
        let req = TestRequest::post(b"{}".to_vec()).header("authorization", value);
        expect_reject(p.verify(&req).expect("plugin call"), 401);
    }
}

#[test]
fn naming_two_places_is_a_config_error() {
    for with in [
        json!({ "secret": SECRET, "header": "x-token", "basic": true }),
        json!({ "secret": SECRET, "param": "key", "header": "x-token" }),
        json!({ "secret": SECRET, "param": "key", "basic": true }),
        json!({ "secret": SECRET, "username": "devops" }),
    ] {
        let req = TestRequest::post(b"{}".to_vec()).query(&format!("code={SECRET}"));
        expect_config_error(plugin(with.clone()).verify(&req));
    }
}

#[test]
fn missing_or_empty_secret_is_a_config_error() {
    let req = TestRequest::post(b"{}".to_vec()).query("code=");
    expect_config_error(plugin(json!({})).verify(&req));
    expect_config_error(plugin(json!({ "secret": "" })).verify(&req));
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_code_and_basic() {
    let gw = gateway(
        &format!("    verify: {{ plugin: token, with: {{ secret: \"{SECRET}\" }} }}"),
        None,
    )
    .await;
    let body = br#"{"action":"post_published"}"#;
    let (status, _, text) = send(&gw, "POST", &format!("code={SECRET}"), &[], body).await;
    assert_eq!(status, 202, "{text}");
    let (status, _, text) = send(&gw, "POST", "code=tampered", &[], body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("verification_failed"), "{text}");
    let (status, _, _) = send(&gw, "POST", "", &[], body).await;
    assert_eq!(status, 401);
    drop(gw);

    let gw = gateway(
        &format!(
            "    verify: {{ plugin: token, with: {{ secret: \"{SECRET}\", basic: true, username: devops }} }}"
        ),
        None,
    )
    .await;
    let ok = basic("devops", SECRET);
    let (status, _, text) = send(&gw, "POST", "", &[("authorization", &ok)], body).await;
    assert_eq!(status, 202, "{text}");
    let bad = basic("devops", "tampered");
    let (status, _, _) = send(&gw, "POST", "", &[("authorization", &bad)], body).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(&gw, "POST", "", &[], body).await;
    assert_eq!(status, 401);
}
