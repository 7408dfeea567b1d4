//! `kind: teams` destinations through the real binary: a legacy
//! connector's `200` with an error text is a failed attempt (retried, not
//! counted as delivered), and a message over Teams' size limit is
//! dead-lettered without a request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::Value;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::wait_until;

/// What an Office 365 connector answers when Teams refused the message.
const CONNECTOR_ERROR: &str = "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 500 with ContextId tcid=0,server=msgapi-production-eus-azsc1-4-170,cv=deadbeef";

/// A stand-in incoming webhook: answers each request with the next of
/// `answers` (status 200 and that body), then `200 1`; counts requests.
async fn connector(answers: &[&'static str]) -> (String, Arc<AtomicUsize>) {
    let script = Arc::new(Mutex::new(answers.to_vec()));
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/webhook",
        post({
            let (script, count) = (script.clone(), count.clone());
            move || async move {
                count.fetch_add(1, Ordering::SeqCst);
                let mut script = script.lock().unwrap();
                if script.is_empty() {
                    "1"
                } else {
                    script.remove(0)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, count)
}

async fn gateway(url: &str) -> TestGateway {
    TestGateway::spawn(&format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  teams:
    kind: teams
    url: "{url}"
    retry: {{ schedule: [50ms, 50ms], jitter: 0 }}
routes:
  r:
    to: [teams]
"#
    ))
    .await
}

/// The event's only delivery, once it satisfies `done`.
async fn delivery_when(gw: &TestGateway, event: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let detail = gw.admin_get(&format!("/admin/events/{event}")).await;
        let delivery = detail["deliveries"][0].clone();
        if done(&delivery) {
            return delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery never reached the expected state: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept(gw: &TestGateway, body: &[u8]) -> String {
    let resp = gw
        .post("r", &[("content-type", "application/json")], body)
        .await;
    assert_eq!(resp.status(), 202);
    let json: Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_200_with_error_text_is_retried_until_really_delivered() {
    let (url, count) = connector(&[CONNECTOR_ERROR]).await;
    let gw = gateway(&url).await;
    let event = accept(&gw, br#"{"text":"hello"}"#).await;

    let delivery = delivery_when(&gw, &event, |d| d["state"] == "delivered").await;
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivery}");
    let first_error = attempts
        .iter()
        .filter_map(|a| a["error"].as_str())
        .next()
        .expect("the failed attempt carries the connector's text");
    assert!(first_error.contains("HTTP error 500"), "{first_error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn message_over_the_size_limit_is_dead_without_a_request() {
    let (url, count) = connector(&[]).await;
    let gw = gateway(&url).await;
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(29 * 1024));
    let event = accept(&gw, big.as_bytes()).await;

    let delivery = delivery_when(&gw, &event, |d| d["state"] == "dead").await;
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("28672")),
        "{delivery}"
    );
    // A small message to the same destination still goes through, so the
    // count below is not zero by accident of a broken stand-in.
    let small = accept(&gw, br#"{"text":"small"}"#).await;
    delivery_when(&gw, &small, |d| d["state"] == "delivered").await;
    wait_until("the small message", Duration::from_secs(5), || {
        count.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the big one was never sent"
    );
}
