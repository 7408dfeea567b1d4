//! Text a store cannot hold, on both durable engines. PostgreSQL's `text`
//! cannot hold a NUL character (U+0000) and an index entry holds at most
//! 2,704 bytes; SQLite has neither limit. So before, the same webhook was
//! stored on one and answered 503 on the other (for ever: the provider
//! retries a 503). Now what a plugin or a body gives the gateway to keep
//! as text is kept the same way on every engine (a NUL as U+FFFD, an
//! overlong id or event type as its start and a digest), and a NUL in an
//! API's URL or text field, or an overlong id there, is a 400 naming it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::json;

use crate::scale_out::TestDatabase;
use crate::subscriptions::{KEY_A, call, yaml};
use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;
use crate::support::{sign, wait_until};

const SECRET: &str = "whsec_nul_test";

/// A Stripe event whose id, type and object id each hold a NUL (JSON
/// `\u0000`), as a provider's body can.
const EVENT: &[u8] =
    br#"{"id":"evt_\u0000nul","type":"invoice.\u0000paid","data":{"object":{"id":"obj\u00001"}}}"#;

async fn text_a_store_cannot_hold_is_kept_alike_or_refused(store: &str) {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml(&format!(
        r#"{store}
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}" }}
  subscribers: {{ kind: subscribers, tenant: tenant-a, object_type: Group, object_id: /data/object/id }}
routes:
  stripe:
    verify: {{ plugin: stripe, with: {{ secret: {SECRET} }} }}
    to: [sink, subscribers]
"#,
        sink.url("/in")
    )))
    .await;

    // A subscriber of the object as it will be stored, and one refused.
    let subscribe = async |object: &str| {
        let body = json!({ "objectId": object, "objectType": "Group", "eventTypes": ["*"], "callBackUrl": sink.url("/cb") });
        call(&gw, KEY_A, Method::POST, "/v1/webhook", Some(body)).await
    };
    let (status, body) = subscribe("obj\u{FFFD}1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = subscribe("obj\u{0}1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "objectId", "{body}");

    // The webhook is stored and answered 2xx, then known as a duplicate.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signature = sign::stripe(SECRET, now, EVENT);
    let headers = [
        ("stripe-signature", signature.as_str()),
        ("content-type", "application/json"),
    ];
    let first = gw.post("stripe", &headers, EVENT).await;
    let status = first.status();
    let answer: serde_json::Value = first.json().await.unwrap_or_default();
    assert_eq!(status, 202, "{answer}");
    let again = gw.post("stripe", &headers, EVENT).await;
    assert!(again.status().is_success(), "{}", again.status());
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true, "{again}");

    // Delivered as sent to the destination, and to the subscriber with the
    // object id and event type as stored.
    wait_until(
        "the delivery and the fan-out",
        Duration::from_secs(20),
        || sink.deliveries().len() >= 2,
    )
    .await;
    let got = sink.deliveries();
    let direct: Vec<_> = got.iter().filter(|r| r.uri.path() == "/in").collect();
    assert_eq!(direct.len(), 1);
    assert_eq!(&direct[0].body[..], EVENT, "the body is the provider's");
    let fanned: Vec<_> = got.iter().filter(|r| r.uri.path() == "/cb").collect();
    assert_eq!(fanned.len(), 1);
    let envelope = fanned[0].json();
    assert_eq!(envelope["objectId"], "obj\u{FFFD}1", "{envelope}");
    assert_eq!(envelope["eventType"], "invoice.\u{FFFD}paid", "{envelope}");

    let page = gw.admin_get("/admin/events?route=stripe").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["source_id"], "evt_\u{FFFD}nul");
    assert_eq!(events[0]["event_type"], "invoice.\u{FFFD}paid");

    // An id and an event type past what an index entry holds (random hex:
    // PostgreSQL compresses a repetitive one to fit, and its compression
    // finds no repeats in this).
    let long = || -> String {
        (0..94)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect()
    };
    let (id, kind) = (long(), long());
    let event = serde_json::to_vec(&json!({ "id": id, "type": kind })).unwrap();
    let signature = sign::stripe(SECRET, now, &event);
    let headers = [
        ("stripe-signature", signature.as_str()),
        ("content-type", "application/json"),
    ];
    let first = gw.post("stripe", &headers, &event).await;
    let status = first.status();
    let answer: serde_json::Value = first.json().await.unwrap_or_default();
    assert_eq!(status, 202, "{answer}");
    let stored = answer["source_id"].as_str().unwrap().to_owned();
    assert!(
        stored.len() <= 256 && stored.starts_with(&id[..128]) && stored.contains("…sha256:"),
        "{} bytes: {}",
        stored.len(),
        stored.chars().take(300).collect::<String>()
    );
    let again = gw.post("stripe", &headers, &event).await;
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(
        again["duplicate"], true,
        "the same long id is the same key: {again}"
    );
    let page = gw.admin_get("/admin/events?route=stripe").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    let newest = &page["events"][0];
    assert_eq!(newest["source_id"], stored.as_str());
    let kind_stored = newest["event_type"].as_str().unwrap();
    assert!(
        kind_stored.len() <= 256 && kind_stored.starts_with(&kind[..128]),
        "{} bytes: {}",
        kind_stored.len(),
        kind_stored.chars().take(300).collect::<String>()
    );
    let (status, body) = subscribe(&"o".repeat(257)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "objectId", "{body}");

    // A NUL in a URL the API reads an id or a filter from.
    for path in [
        "/admin/events/evt%00",
        "/admin/events?route=a%00b",
        "/v1/webhook/%00",
        "/v1/webhook?objectId=%00",
    ] {
        let key = if path.starts_with("/admin") {
            ("authorization", format!("Bearer {ADMIN_TOKEN}"))
        } else {
            ("accessToken", KEY_A.to_owned())
        };
        let resp = gw
            .client()
            .get(gw.url(path))
            .header(key.0, key.1)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("NUL"), "{path}: {body}");
    }
    // `%2500` is a literal `%00`: an id that does not exist.
    let resp = gw
        .admin(Method::GET, "/admin/events/evt%2500")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let health = gw.client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_a_store_cannot_hold_is_kept_alike_or_refused_on_sqlite() {
    text_a_store_cannot_hold_is_kept_alike_or_refused("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_a_store_cannot_hold_is_kept_alike_or_refused_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    text_a_store_cannot_hold_is_kept_alike_or_refused(&format!(
        "store: {{ engine: postgres, url: \"{}\" }}",
        db.url
    ))
    .await;
}
