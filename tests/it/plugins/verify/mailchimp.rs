//! `mailchimp`: GET URL check answered 200; form POSTs need `?code=`; the
//! transform stage turns the form into JSON. MailChimp signs nothing and
//! sends no timestamp header, so there is no stale case.

use serde_json::{Value, json};

use super::*;
use crate::support::receiver::MockReceiver;
use hookgate::plugin::Message;

const CODE: &str = "mailchimp-code-0123456789abcdef01";

/// MailChimp's documented `subscribe` example (Marketing API, "Sync audience
/// data with webhooks"), form-encoded as MailChimp posts it.
fn subscribe_form() -> String {
    form_urlencoded_pairs(&[
        ("type", "subscribe"),
        ("fired_at", "2009-03-26 21:35:57"),
        ("data[id]", "8a25ff1d98"),
        ("data[list_id]", "a6b5da1054"),
        ("data[email]", "api@mailchimp.com"),
        ("data[email_type]", "html"),
        ("data[merges][EMAIL]", "api@mailchimp.com"),
        ("data[merges][FNAME]", "Mailchimp"),
        ("data[merges][LNAME]", "API"),
        ("data[merges][INTERESTS]", "Group1,Group2"),
        ("data[ip_opt]", "10.20.10.30"),
        ("data[ip_signup]", "10.20.10.30"),
    ])
}

fn subscribe_json() -> Value {
    json!({
        "type": "subscribe",
        "fired_at": "2009-03-26 21:35:57",
        "data": {
            "id": "8a25ff1d98",
            "list_id": "a6b5da1054",
            "email": "api@mailchimp.com",
            "email_type": "html",
            "merges": {
                "EMAIL": "api@mailchimp.com",
                "FNAME": "Mailchimp",
                "LNAME": "API",
                "INTERESTS": "Group1,Group2"
            },
            "ip_opt": "10.20.10.30",
            "ip_signup": "10.20.10.30"
        }
    })
}

fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn plugin() -> TestPlugin {
    TestPlugin::builtin("mailchimp", json!({ "secret": CODE }))
}

fn post(query: &str) -> TestRequest {
    TestRequest::post(subscribe_form().into_bytes())
        .header("content-type", "application/x-www-form-urlencoded")
        .query(query)
}

#[test]
fn get_url_check_is_answered_200_and_forwards_nothing() {
    let response = expect_respond(plugin().verify(&TestRequest::get()).expect("plugin call"));
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
}

#[test]
fn post_with_the_code_is_accepted_with_its_type() {
    let (_, event_type, reply) = expect_accept(
        plugin()
            .verify(&post(&format!("code={CODE}")))
            .expect("plugin call"),
    );
    assert_eq!(event_type.as_deref(), Some("subscribe"));
    assert!(reply.is_none());
}

#[test]
fn wrong_or_missing_code_is_rejected() {
    let reason = expect_reject(
        plugin().verify(&post("code=nope")).expect("plugin call"),
        401,
    );
    assert_no_leak(&reason, &[CODE]);
    let reason = expect_reject(plugin().verify(&post("")).expect("plugin call"), 401);
    assert!(reason.contains("missing ?code="), "{reason}");
}

#[test]
fn other_methods_are_refused() {
    let req = post(&format!("code={CODE}")).method("PUT");
    expect_reject(plugin().verify(&req).expect("plugin call"), 405);
}

#[test]
fn missing_secret_is_a_config_error() {
    expect_config_error(TestPlugin::builtin("mailchimp", json!({})).verify(&post("code=x")));
}

#[test]
fn transform_nests_the_form_fields_as_json() {
    let msg = Message {
        id: None,
        event_type: Some("subscribe".into()),
        content_type: "application/x-www-form-urlencoded".into(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: subscribe_form().into_bytes().into(),
    };
    let mut out = TestPlugin::builtin("mailchimp", json!({}))
        .transform(msg)
        .expect("plugin call");
    assert_eq!(out.len(), 1);
    let out = out.remove(0);
    assert_eq!(out.content_type, "application/json");
    assert_eq!(out.event_type.as_deref(), Some("subscribe"));
    assert!(
        out.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, subscribe_json());
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_json_reaches_the_destination() {
    let sink = MockReceiver::start().await;
    let gw = gateway(
        &format!(
            "    verify: {{ plugin: mailchimp, with: {{ secret: \"{CODE}\" }} }}\n    transform: [ {{ plugin: mailchimp }} ]"
        ),
        Some(&sink),
    )
    .await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = subscribe_form();

    let (status, _, text) = send(&gw, "GET", &format!("code={CODE}"), &[], b"").await;
    assert_eq!((status, text.as_str()), (200, ""));
    let (status, _, text) = send(&gw, "POST", "code=tampered", &form, body.as_bytes()).await;
    assert_eq!(status, 401, "{text}");
    let (status, _, _) = send(&gw, "POST", "", &form, body.as_bytes()).await;
    assert_eq!(status, 401);
    let (status, _, text) =
        send(&gw, "POST", &format!("code={CODE}"), &form, body.as_bytes()).await;
    assert_eq!(status, 202, "{text}");

    let delivered = sink.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1, "only the accepted POST is delivered");
    assert_eq!(delivered[0].json(), subscribe_json());
    assert_eq!(
        delivered[0].header("content-type"),
        Some("application/json")
    );
}
