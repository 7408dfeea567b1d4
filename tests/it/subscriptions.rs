//! The sending side through the real binary: subscribe (with callback
//! validation), publish, signed fan-out, tenant isolation, SSRF refusal,
//! auto-disable and re-enable.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::receiver::{MockReceiver, Validation};
use crate::support::sign;

pub(crate) const KEY_A: &str = "tenant-a-key-0123456789";
const KEY_B: &str = "tenant-b-key-0123456789";
const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn yaml(extra: &str) -> String {
    format!(
        r#"
subscriptions:
  api_keys: {{ tenant-a: "{KEY_A}", tenant-b: "{KEY_B}" }}
  allow_private_callbacks: [127.0.0.0/8]
  retry: {{ schedule: [30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms], jitter: 0 }}
  disable_after: 250ms
  validation_timeout: 1s
  object_types: [Group, Repository]
{extra}
"#
    )
}

pub(crate) async fn call(
    gw: &TestGateway,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw
        .client()
        .request(method, gw.url(path))
        .header("accessToken", key);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) async fn subscribe(
    gw: &TestGateway,
    key: &str,
    sink: &MockReceiver,
    events: &[&str],
) -> (String, String) {
    let (status, body) = call(
        gw,
        key,
        Method::POST,
        "/v1/webhook",
        Some(json!({
            "objectId": "group-1",
            "objectType": "Group",
            "eventTypes": events,
            "callBackUrl": sink.url("/callback"),
            "callBackToken": "kz-token-123",
            "callBackContext": { "team": "blue" },
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["webhookId"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn publish(gw: &TestGateway, key: &str, event_type: &str, data: Value) -> Value {
    let (status, body) = call(
        gw,
        key,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "group-1", "objectType": "Group", "eventType": event_type, "data": data })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body
}

/// Verifies with the `standardwebhooks` package from PyPI, an
/// implementation independent of ours. `.ci/run` installs it; on a
/// machine without it the check is skipped (and says so), except in CI.
fn python_verifies(
    secret: &str,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Option<bool> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), body).unwrap();
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let script = format!(
        r#"
import sys
try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    sys.exit(3)
payload = open({body:?}, "rb").read()
Webhook({secret:?}).verify(payload, {{"webhook-id": {id:?}, "webhook-timestamp": {ts:?}, "webhook-signature": {sig:?}}})
"#,
        body = dir.path().join("body").display().to_string(),
        id = h("webhook-id"),
        ts = h("webhook-timestamp"),
        sig = h("webhook-signature"),
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    match out.status.code() {
        Some(0) => Some(true),
        Some(3) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install the standardwebhooks package"
            );
            eprintln!("standardwebhooks (PyPI) not installed: independent Python check skipped");
            None
        }
        _ => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            Some(false)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_validate_publish_and_verify_the_signature() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let (id, secret) = subscribe(&gw, KEY_A, &sink, &["member.added"]).await;
    assert!(id.starts_with("wh_") && secret.starts_with("whsec_"));

    // The callback was validated first: a POST with the token as a query
    // parameter and in a JSON body.
    let validation = &sink.received()[0];
    let token = validation
        .uri
        .query()
        .unwrap()
        .strip_prefix("validationToken=")
        .unwrap()
        .to_owned();
    assert_eq!(validation.json()["validationToken"], token);

    let published = publish(&gw, KEY_A, "member.added", json!({ "member": "ana" })).await;
    assert_eq!(published["deliveries"], 1);
    let delivered = loop {
        if let Some(d) = sink.deliveries().into_iter().next() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let body = delivered.json();
    assert_eq!(body["eventType"], "member.added");
    assert_eq!(body["objectId"], "group-1");
    assert_eq!(body["data"]["member"], "ana");
    assert_eq!(body["context"], json!({ "team": "blue" }));
    assert_eq!(body["subscriptionId"], id);
    assert_eq!(delivered.header("kz-callback-token"), Some("kz-token-123"));
    assert_eq!(delivered.header("webhook-id"), published["id"].as_str());

    let (wid, ts, sig) = (
        delivered.header("webhook-id").unwrap(),
        delivered.header("webhook-timestamp").unwrap(),
        delivered.header("webhook-signature").unwrap(),
    );
    assert!(sign::standard_webhooks_valid(
        &secret,
        wid,
        ts,
        sig,
        &delivered.body
    ));
    assert!(!sign::standard_webhooks_valid(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        wid,
        ts,
        sig,
        &delivered.body
    ));
    if let Some(ok) = python_verifies(&secret, &delivered.headers, &delivered.body) {
        assert!(ok, "the standardwebhooks package rejected our signature");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_that_does_not_echo_is_refused() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let body = |url: String| json!({ "objectId": "o", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": url });
    for (mode, expect) in [
        (Validation::WrongToken, "did not echo"),
        (Validation::Ignore, "500"),
        (Validation::Hang, "within"),
    ] {
        sink.validation(mode);
        if mode == Validation::Ignore {
            sink.always(Some(500));
        }
        let started = Instant::now();
        let (status, err) = call(
            &gw,
            KEY_A,
            Method::POST,
            "/v1/webhook",
            Some(body(sink.url("/cb"))),
        )
        .await;
        assert_eq!(status, 400, "{mode:?}: {err}");
        assert_eq!(err["error"], "callback_validation_failed");
        assert_eq!(err["field"], "callBackUrl");
        assert!(
            err["message"].as_str().unwrap().contains(expect),
            "{mode:?}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by validation_timeout"
        );
    }
    let (_, list) = call(&gw, KEY_A, Method::GET, "/v1/webhook", None).await;
    assert_eq!(
        list["webhooks"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_type_filters_and_tenants_are_respected() {
    let sink_a = MockReceiver::start().await;
    let sink_b = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let (a_id, _) = subscribe(&gw, KEY_A, &sink_a, &["member.added"]).await;
    let (_b_id, _) = subscribe(&gw, KEY_B, &sink_b, &["*"]).await;

    // Tenant A publishes: only A's matching subscription gets it.
    assert_eq!(
        publish(&gw, KEY_A, "member.removed", json!({})).await["deliveries"],
        0
    );
    assert_eq!(
        publish(&gw, KEY_A, "member.added", json!({"n": 1})).await["deliveries"],
        1
    );
    // Tenant B publishes to its own wildcard subscription.
    assert_eq!(
        publish(&gw, KEY_B, "anything.at.all", json!({"n": 2})).await["deliveries"],
        1
    );
    crate::support::wait_until("both deliveries", WAIT, || {
        sink_a.deliveries().len() == 1 && sink_b.deliveries().len() == 1
    })
    .await;
    assert_eq!(sink_a.deliveries()[0].json()["eventType"], "member.added");
    assert_eq!(sink_b.deliveries()[0].json()["data"]["n"], 2);

    // B cannot see, change or delete A's subscription.
    let (_, b_list) = call(
        &gw,
        KEY_B,
        Method::GET,
        "/v1/webhook?objectId=group-1&objectType=Group",
        None,
    )
    .await;
    assert!(
        b_list["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["id"] != a_id.as_str())
    );
    let (s, _) = call(
        &gw,
        KEY_B,
        Method::PUT,
        &format!("/v1/webhook/{a_id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &gw,
        KEY_B,
        Method::DELETE,
        &format!("/v1/webhook/{a_id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, a_list) = call(
        &gw,
        KEY_A,
        Method::GET,
        "/v1/webhook?objectId=group-1&objectType=Group",
        None,
    )
    .await;
    let mine = &a_list["webhooks"][0];
    assert_eq!(mine["id"], a_id.as_str());
    assert_eq!(mine["events"], json!(["member.added"]));
    assert_eq!(mine["callbackUrl"], sink_a.url("/callback"));
    assert_eq!(mine["callbackToken"], "kz-token-123");
    assert_eq!(mine["active"], true);
    assert!(mine["validity"].as_u64().unwrap() > hookgate::clock::now_ms());

    // No key, or a wrong one: 401.
    let (s, _) = call(&gw, "not-a-key", Method::GET, "/v1/webhook", None).await;
    assert_eq!(s, 401);
    // The owner can delete.
    let (s, _) = call(
        &gw,
        KEY_A,
        Method::DELETE,
        &format!("/v1/webhook/{a_id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_subscriber_is_disabled_and_put_re_enables_it() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let (id, _) = subscribe(&gw, KEY_A, &sink, &["*"]).await;
    sink.always(Some(500));
    publish(&gw, KEY_A, "ping", json!({"try": 1})).await;

    // Failing for longer than disable_after (250 ms) → inactive.
    let deadline = Instant::now() + WAIT;
    let view = loop {
        let (_, list) = call(&gw, KEY_A, Method::GET, "/v1/webhook", None).await;
        let view = list["webhooks"][0].clone();
        if view["active"] == false {
            break view;
        }
        assert!(Instant::now() < deadline, "never disabled: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        view["disabledReason"].as_str().unwrap().contains("failing"),
        "{view}"
    );
    // Inactive: new events are kept for it (parked), not sent.
    let sent_while_failing = sink.deliveries().len();
    assert_eq!(
        publish(&gw, KEY_A, "ping", json!({"try": 2})).await["deliveries"],
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.deliveries().len(),
        sent_while_failing,
        "nothing sent while disabled"
    );

    // Re-enabled by PUT, it receives again.
    sink.always(None);
    let (s, v) = call(
        &gw,
        KEY_A,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["active"], true);
    assert!(v["disabledReason"].is_null());
    let before = sink
        .deliveries()
        .iter()
        .filter(|r| r.answered < 300)
        .count();
    // What was parked while it was off goes out, oldest first: the event
    // whose failures disabled it, then the one published meanwhile.
    let successes = |sink: &MockReceiver| -> Vec<serde_json::Value> {
        sink.deliveries()
            .iter()
            .filter(|r| r.answered < 300)
            .map(|r| r.json()["data"]["try"].clone())
            .collect()
    };
    crate::support::wait_until("parked deliveries after re-enable", WAIT, || {
        successes(&sink).len() >= before + 2
    })
    .await;
    assert_eq!(successes(&sink)[before..], [json!(1), json!(2)]);
    assert_eq!(
        publish(&gw, KEY_A, "ping", json!({"try": 3})).await["deliveries"],
        1
    );
    crate::support::wait_until("delivery after re-enable", WAIT, || {
        successes(&sink).len() >= before + 3
    })
    .await;
    assert_eq!(successes(&sink)[before..], [json!(1), json!(2), json!(3)]);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hookgate_subscriptions_disabled_total 1"),
        "{metrics}"
    );
}

/// A failure starts a streak (`failingSince`), the next success ends it,
/// and the successes after that, with no streak to end, leave it ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_success_ends_the_failure_streak() {
    let sink = MockReceiver::start().await;
    // One failure, then a retry 3 s later: time enough to see the streak,
    // and no retries to run out.
    let config = yaml("")
        .replace(
            "retry: { schedule: [30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms], jitter: 0 }",
            "retry: { schedule: [3s, 3s], jitter: 0 }",
        )
        .replace("disable_after: 250ms", "disable_after: 1h");
    assert!(
        config.contains("schedule: [3s, 3s]") && config.contains("disable_after: 1h"),
        "{config}"
    );
    let gw = TestGateway::spawn(&config).await;
    subscribe(&gw, KEY_A, &sink, &["*"]).await;
    let view = async || {
        let (_, list) = call(&gw, KEY_A, Method::GET, "/v1/webhook", None).await;
        list["webhooks"][0].clone()
    };
    let delivered = |sink: &MockReceiver| -> Vec<Value> {
        sink.deliveries()
            .iter()
            .filter(|r| r.answered < 300)
            .map(|r| r.json()["data"]["n"].clone())
            .collect()
    };

    sink.script(&[500]);
    publish(&gw, KEY_A, "ping", json!({"n": 1})).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = view().await;
        if v["failingSince"].is_string() {
            assert_eq!(v["active"], true, "{v}");
            break;
        }
        assert!(
            delivered(&sink).is_empty(),
            "the retry succeeded before the streak was seen: {v}"
        );
        assert!(Instant::now() < deadline, "no streak began: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    crate::support::wait_until("the retry that succeeds", WAIT, || {
        delivered(&sink) == [json!(1)]
    })
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = view().await;
        if v["failingSince"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the success left the streak: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 2..=4 {
        publish(&gw, KEY_A, "ping", json!({"n": n})).await;
    }
    crate::support::wait_until("three more successes", WAIT, || delivered(&sink).len() == 4).await;
    assert_eq!(delivered(&sink), [json!(1), json!(2), json!(3), json!(4)]);
    let v = view().await;
    assert!(v["failingSince"].is_null() && v["active"] == true, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_callback_urls_are_refused_unless_allow_listed() {
    let sink = MockReceiver::start().await;
    // No allow-list here.
    let gw = TestGateway::spawn(&format!(
        "subscriptions:\n  api_keys: {{ tenant-a: \"{KEY_A}\" }}\n  validation_timeout: 1s\n"
    ))
    .await;
    for url in [
        sink.url("/cb"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "https://10.0.0.1/hook".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://[::ffff:127.0.0.1]/hook".to_owned(),
        "ftp://example.com/hook".to_owned(),
    ] {
        let (status, err) = call(
            &gw,
            KEY_A,
            Method::POST,
            "/v1/webhook",
            Some(json!({ "objectId": "o", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": url })),
        )
        .await;
        assert_eq!(status, 400, "{url}: {err}");
        assert_eq!(err["field"], "callBackUrl", "{url}: {err}");
    }
    assert_eq!(sink.count(), 0, "nothing was sent to a refused address");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_field() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let url = sink.url("/cb");
    for (body, field) in [
        (
            json!({ "objectType": "Group", "eventTypes": ["*"], "callBackUrl": url }),
            "objectId",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventTypes": "x", "callBackUrl": url }),
            "eventTypes",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": url, "colour": 1 }),
            "colour",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": "not a url" }),
            "callBackUrl",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventTypes": [], "callBackUrl": url }),
            "eventTypes",
        ),
    ] {
        let (status, err) = call(&gw, KEY_A, Method::POST, "/v1/webhook", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    // A publish's `data` is parsed apart from its other fields (see
    // `publish`): the first field at fault is still the one named.
    for (body, field) in [
        (
            json!({ "objectId": "o", "objectType": "Group", "eventType": "e" }),
            "data",
        ),
        (
            json!({ "objectType": "Group", "eventType": "e", "data": {} }),
            "objectId",
        ),
        (json!({ "objectType": "Group", "data": {} }), "objectId"),
        (
            json!({ "objectId": 1, "objectType": "Group", "eventType": "e" }),
            "objectId",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventType": "e", "data": {}, "colour": 1 }),
            "colour",
        ),
        (
            json!({ "objectId": "o", "objectType": "Group", "eventType": "e", "data": {}, "Data": {} }),
            "data",
        ),
    ] {
        let (status, err) = call(&gw, KEY_A, Method::POST, "/v1/events", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    let body = json!({ "ObjectId": "o", "ObjectType": "Group", "EventType": "e", "Data": { "n": [1, {"k": null}] } });
    let (status, answer) = call(&gw, KEY_A, Method::POST, "/v1/events", Some(body)).await;
    assert_eq!(status, 202, "PascalCase keys, `Data` among them: {answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_type_catalogue_checks_subscriptions_and_data() {
    let sink = MockReceiver::start().await;
    let extra = r#"  event_types:
    invoice.paid: { description: "An invoice was paid", schema: "{dir}/invoice.json" }"#;
    let gw = TestGateway::spawn_with(&yaml(extra), |dir| {
        std::fs::write(
            dir.join("invoice.json"),
            r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer","minimum":0}}}"#,
        )
        .unwrap();
    })
    .await;
    let (status, err) = call(
        &gw,
        KEY_A,
        Method::POST,
        "/v1/webhook",
        Some(json!({ "objectId": "group-1", "objectType": "Group", "eventTypes": ["invoice.paid", "nope"], "callBackUrl": sink.url("/cb") })),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "eventTypes[1]");
    subscribe(&gw, KEY_A, &sink, &["invoice.paid"]).await;

    let (status, err) = call(
        &gw,
        KEY_A,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "group-1", "objectType": "Group", "eventType": "invoice.paid", "data": { "amount": -5 } })),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["field"], "data.amount");
    let (status, _) = call(
        &gw,
        KEY_A,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "group-1", "objectType": "Group", "eventType": "undeclared", "data": {} })),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        publish(&gw, KEY_A, "invoice.paid", json!({ "amount": 5 })).await["deliveries"],
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_with_an_id_is_idempotent() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    subscribe(&gw, KEY_A, &sink, &["*"]).await;
    let event = json!({ "objectId": "group-1", "objectType": "Group", "eventType": "e", "data": {}, "id": "evt-client-1" });
    let (_, first) = call(&gw, KEY_A, Method::POST, "/v1/events", Some(event.clone())).await;
    let (_, again) = call(&gw, KEY_A, Method::POST, "/v1/events", Some(event)).await;
    assert_eq!(first["deliveries"], 1);
    assert_eq!(again["duplicate"], true);
    crate::support::wait_until("the delivery", WAIT, || !sink.deliveries().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.deliveries().len(), 1);
    assert_eq!(
        sink.deliveries()[0].header("webhook-id"),
        Some("evt-client-1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_fans_received_webhooks_out_to_subscribers() {
    let sink = MockReceiver::start().await;
    let extra = r#"destinations:
  subscribers: { kind: subscribers, tenant: tenant-a, object_type: Repository, object_id: /repository/full_name }
routes:
  github:
    verify: { plugin: github, with: { secret: s3cret } }
    to: [subscribers]"#;
    let gw = TestGateway::spawn(&yaml(extra)).await;
    let (status, body) = call(
        &gw,
        KEY_A,
        Method::POST,
        "/v1/webhook",
        Some(json!({ "objectId": "octo/hello", "objectType": "Repository", "eventTypes": ["issues"], "callBackUrl": sink.url("/cb") })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let payload = br#"{"action":"opened","repository":{"full_name":"octo/hello"}}"#;
    let sig = sign::github("s3cret", payload);
    let resp = gw
        .post(
            "github",
            &[("x-github-event", "issues"), ("x-hub-signature-256", &sig)],
            payload,
        )
        .await;
    assert_eq!(resp.status(), 202);
    crate::support::wait_until("fan-out", WAIT, || !sink.deliveries().is_empty()).await;
    let got = sink.deliveries()[0].json();
    assert_eq!(got["objectId"], "octo/hello");
    assert_eq!(got["eventType"], "issues");
    assert_eq!(got["data"]["action"], "opened");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_without_the_subscriptions_block_postpones_subscriber_deliveries() {
    // A config that loses its `subscriptions:` block (by mistake, or for a
    // moment) must not dead-letter what subscribers are still owed: their
    // deliveries wait, as those of a destination missing after a reload do.
    let sink = MockReceiver::start().await;
    let admin = format!(
        "admin: {{ token: \"{}\" }}",
        crate::support::gateway::ADMIN_TOKEN
    );
    let config = yaml(&admin)
        .replace(
            "retry: { schedule: [30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms, 30ms], jitter: 0 }",
            "retry: { schedule: [2s, 2s], jitter: 0 }",
        )
        .replace("disable_after: 250ms", "disable_after: 1h");
    assert!(config.contains("schedule: [2s, 2s]"), "{config}");
    let gw = TestGateway::spawn(&config).await;
    subscribe(&gw, KEY_A, &sink, &["*"]).await;
    // The first attempt fails; the retry is due 2 s later.
    sink.script(&[500]);
    publish(&gw, KEY_A, "ping", json!({"n": 1})).await;
    crate::support::wait_until("the failed first attempt", WAIT, || {
        !sink.deliveries().is_empty()
    })
    .await;
    let page = gw.admin_get("/admin/events?limit=1").await;
    let id = page["events"][0]["id"].as_str().unwrap().to_owned();
    // The block goes; the retry comes due without it.
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("subscriptions:").unwrap();
    let end = text.find("admin:").unwrap();
    gw.reload_with(&format!("{}{}", &text[..start], &text[end..]))
        .await;
    let deadline = Instant::now() + WAIT;
    let delivery = loop {
        let event = gw.admin_get(&format!("/admin/events/{id}")).await;
        let d = event["deliveries"][0].clone();
        if d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not configured"))
            || d["state"] != "pending"
        {
            break d;
        }
        assert!(Instant::now() < deadline, "the retry never ran: {event:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["state"], "pending", "{delivery:#}");
    assert_eq!(sink.deliveries().len(), 1, "nothing sent without the block");
}
