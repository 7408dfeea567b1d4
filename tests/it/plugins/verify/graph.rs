//! `graph`: the `validationToken` echo and `clientState` on every
//! notification. Graph has no signature header, so "missing header" here is
//! a missing `clientState`.

use serde_json::json;

use super::*;

const CLIENT_STATE: &str = "graph-client-state-for-tests";

fn plugin() -> TestPlugin {
    TestPlugin::builtin("graph", json!({ "client_state": CLIENT_STATE }))
}

fn notification(client_state: Option<&str>, id: &str) -> serde_json::Value {
    let mut item = json!({
        "id": id,
        "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "changeType": "created",
        "resource": "Users/1/Messages/2",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    });
    if let Some(state) = client_state {
        item["clientState"] = json!(state);
    }
    item
}

fn post(body: &serde_json::Value) -> TestRequest {
    TestRequest::post(serde_json::to_vec(body).expect("JSON"))
}

#[test]
fn validation_token_is_echoed_decoded_as_plain_text() {
    // Graph sends the token percent-encoded in the query and wants it back
    // decoded (learn.microsoft.com, "Receive change notifications through webhooks").
    let req = TestRequest::post(Vec::new()).query(
        "validationToken=Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request-Id%3A%20a8c0c5b5",
    );
    let response = expect_respond(plugin().verify(&req).expect("plugin call"));
    assert_eq!(
        expect_text(&response, 200),
        "Validation: Testing client application reachability for subscription Request-Id: a8c0c5b5"
    );
}

#[test]
fn matching_client_state_is_accepted_with_change_type_and_id() {
    let body = json!({ "value": [notification(Some(CLIENT_STATE), "n-1")] });
    let (id, event_type, _) = expect_accept(plugin().verify(&post(&body)).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("n-1"));
    assert_eq!(event_type.as_deref(), Some("created"));
}

#[test]
fn batch_with_every_client_state_matching_is_accepted() {
    let body = json!({ "value": [
        notification(Some(CLIENT_STATE), "n-1"),
        notification(Some(CLIENT_STATE), "n-2"),
    ] });
    let (id, _, _) = expect_accept(plugin().verify(&post(&body)).expect("plugin call"));
    // Several notifications: no single delivery id.
    assert_eq!(id, None);
}

#[test]
fn wrong_client_state_is_forbidden() {
    let body = json!({ "value": [notification(Some("guess"), "n-1")] });
    let reason = expect_reject(plugin().verify(&post(&body)).expect("plugin call"), 403);
    assert!(reason.contains("clientState"), "{reason}");
    assert_no_leak(&reason, &[CLIENT_STATE]);
}

#[test]
fn one_forged_item_in_a_batch_is_forbidden() {
    let body = json!({ "value": [
        notification(Some(CLIENT_STATE), "n-1"),
        notification(Some("forged"), "n-2"),
    ] });
    expect_reject(plugin().verify(&post(&body)).expect("plugin call"), 403);
}

#[test]
fn missing_client_state_is_forbidden() {
    let body = json!({ "value": [notification(None, "n-1")] });
    expect_reject(plugin().verify(&post(&body)).expect("plugin call"), 403);
}

#[test]
fn body_that_is_not_a_notification_collection_is_a_bad_request() {
    let req = TestRequest::post(b"not json".to_vec());
    expect_reject(plugin().verify(&req).expect("plugin call"), 400);
}

#[test]
fn lifecycle_notification_uses_its_event_as_type() {
    let body = json!({ "value": [{
        "subscriptionId": "7f105c7d",
        "lifecycleEvent": "reauthorizationRequired",
        "clientState": CLIENT_STATE,
    }] });
    let (_, event_type, _) = expect_accept(plugin().verify(&post(&body)).expect("plugin call"));
    assert_eq!(event_type.as_deref(), Some("reauthorizationRequired"));
}

#[test]
fn without_client_state_configured_notifications_are_accepted() {
    let p = TestPlugin::builtin("graph", json!({}));
    let body = json!({ "value": [notification(None, "n-1")] });
    expect_accept(p.verify(&post(&body)).expect("plugin call"));
}

#[test]
fn empty_client_state_is_a_config_error() {
    let p = TestPlugin::builtin("graph", json!({ "client_state": "" }));
    let body = json!({ "value": [notification(Some(""), "n-1")] });
    expect_config_error(p.verify(&post(&body)));
}
