//! Teams relay through the real binary: a Teams outgoing webhook's message
//! goes to a backend synchronously and the backend's reply (text or card)
//! is Teams' answer; a backend that is late or failing gets Teams the
//! `teams-outgoing` reply as the fallback within `reply_timeout` + 100 ms,
//! and the message is still delivered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};

/// The outgoing webhook's security token as Teams shows it (base64).
const KEY: &[u8] = b"teams-outgoing-webhook-key-32byt";

/// An activity as Teams posts it when someone mentions the webhook.
const ACTIVITY: &str = r#"{"type":"message","id":"1485983408511","timestamp":"2017-02-01T21:10:07.437Z","text":"<at>Bot</at> deploy","from":{"id":"29:1","name":"Megan"}}"#;

/// One answer of the stand-in backend: wait, then status, content type, body.
#[derive(Clone)]
struct Answer {
    delay: Duration,
    status: u16,
    content_type: &'static str,
    body: String,
}

/// A stand-in bot backend: answers each request with the next scripted
/// answer (the last one repeats) and records the bodies it got.
struct Backend {
    url: String,
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
}

async fn backend(script: Vec<Answer>) -> Backend {
    let script = Arc::new(Mutex::new(script));
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route(
        "/bot",
        post({
            let (script, got) = (script.clone(), got.clone());
            move |body: axum::body::Bytes| async move {
                let answer = {
                    let mut script = script.lock().unwrap();
                    if script.len() > 1 {
                        script.remove(0)
                    } else {
                        script[0].clone()
                    }
                };
                tokio::time::sleep(answer.delay).await;
                // Recorded when answered: a request the gateway gave up on
                // (a timed-out attempt) is not a delivery.
                got.lock().unwrap().push((
                    Instant::now(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ));
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, answer.content_type.parse().unwrap());
                (
                    StatusCode::from_u16(answer.status).unwrap(),
                    headers,
                    answer.body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bot", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Backend { url, got }
}

fn answer(delay_ms: u64, status: u16, content_type: &'static str, body: &str) -> Answer {
    Answer {
        delay: Duration::from_millis(delay_ms),
        status,
        content_type,
        body: body.to_owned(),
    }
}

async fn gateway(backend: &str, reply_timeout: &str) -> TestGateway {
    let token = base64::engine::general_purpose::STANDARD.encode(KEY);
    TestGateway::spawn(&format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  bot:
    url: "{backend}"
    timeout: 5s
    retry: {{ schedule: [50ms, 50ms, 50ms], jitter: 0 }}
routes:
  teams:
    verify: {{ plugin: teams-outgoing, with: {{ secret: "{token}", reply: "Working on it…" }} }}
    relay: {{ to: bot, reply_timeout: {reply_timeout} }}
"#
    ))
    .await
}

/// Posts the signed activity as Teams would; the answer's status, JSON
/// body, and how long it took.
async fn mention(gw: &TestGateway) -> (u16, Value, Duration) {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(ACTIVITY.as_bytes());
    let auth = format!(
        "HMAC {}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let started = Instant::now();
    let resp = gw
        .post(
            "teams",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            ACTIVITY.as_bytes(),
        )
        .await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap(), took)
}

/// The relayed event's delivery to `bot`, once `done` holds.
async fn bot_delivery_when(gw: &TestGateway, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = gw.admin_get("/admin/events?route=teams").await;
        if let Some(id) = list["events"][0]["id"].as_str() {
            let detail = gw.admin_get(&format!("/admin/events/{id}")).await;
            let delivery = detail["deliveries"][0].clone();
            if done(&delivery) {
                return delivery;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relayed delivery never reached the expected state: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_reply_within_the_budget_is_the_answer() {
    let card = r#"{"type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"Deploy started"}]}"#;
    let bot = backend(vec![answer(100, 200, "application/json", card)]).await;
    let gw = gateway(&bot.url, "5s").await;

    let (status, reply, _) = mention(&gw).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["type"], "message", "{reply}");
    assert_eq!(
        reply["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive",
        "the backend's card is Teams' answer: {reply}"
    );
    assert_eq!(
        reply["attachments"][0]["content"]["body"][0]["text"],
        "Deploy started"
    );
    // The backend got the activity itself, once, and the delivery is
    // recorded as any other.
    let got = bot.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["text"], "<at>Bot</at> deploy");
    let delivery = bot_delivery_when(&gw, |d| d["state"] == "delivered").await;
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        1,
        "{delivery}"
    );

    // Plain text is answered as a text message.
    drop(gw);
    let bot = backend(vec![answer(0, 200, "text/plain", "Deployed to staging.")]).await;
    let gw = gateway(&bot.url, "5s").await;
    let (status, reply, _) = mention(&gw).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({ "type": "message", "text": "Deployed to staging." })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_backend_yields_the_fallback_in_time_and_still_gets_the_message() {
    let reply_timeout = Duration::from_millis(400);
    // The backend answers long after reply_timeout (but within the
    // destination's 5 s timeout, so the late attempt still delivers).
    let late = Duration::from_millis(3_000);
    let bot = backend(vec![answer(
        late.as_millis() as u64,
        200,
        "text/plain",
        "too late",
    )])
    .await;
    let gw = gateway(&bot.url, "400ms").await;

    let (status, reply, took) = mention(&gw).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({ "type": "message", "text": "Working on it…" }),
        "the fallback is teams-outgoing's own reply"
    );
    // The budget counts from the request's arrival, which the client's
    // clock starts before: an earlier fallback did not wait for the backend
    // at all. (20 ms of slack: the gateway's clock has millisecond steps.)
    assert!(
        took + Duration::from_millis(20) >= reply_timeout,
        "the fallback came after {took:?}, before reply_timeout ran out"
    );
    // The upper bound is generous because the request's own work (verify,
    // durable commit) is in `took` and CI runs this beside many gateways on
    // 2 cores (514 ms was seen there); it stays far below the backend's
    // answer, so a gateway that waited for the backend fails.
    assert!(
        took < reply_timeout + Duration::from_secs(1),
        "the fallback took {took:?}: reply_timeout is {reply_timeout:?} and the backend answers after {late:?}"
    );
    eprintln!("fallback answered in {took:?} (reply_timeout {reply_timeout:?})");
    // The message is still delivered: the late attempt completes.
    let delivery = bot_delivery_when(&gw, |d| d["state"] == "delivered").await;
    assert_eq!(delivery["destination"], "bot", "{delivery}");
    let got = bot.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["id"], "1485983408511");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_backend_yields_the_fallback_at_once_and_the_retry_delivers() {
    let bot = backend(vec![
        answer(0, 503, "text/plain", "down"),
        answer(0, 200, "text/plain", "back"),
    ])
    .await;
    let gw = gateway(&bot.url, "5s").await;

    let (status, reply, took) = mention(&gw).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["text"], "Working on it…", "{reply}");
    assert!(
        took < Duration::from_secs(4),
        "a failed attempt answers the fallback without waiting out reply_timeout: {took:?}"
    );
    let delivery = bot_delivery_when(&gw, |d| d["state"] == "delivered").await;
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        2,
        "{delivery}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_timeout_over_ten_seconds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.yaml");
    std::fs::write(
        &config,
        r#"
destinations:
  bot: { url: "https://bot.example/hook" }
  chat: { kind: log }
routes:
  a: { relay: { to: bot, reply_timeout: 11s } }
  b: { relay: { to: chat } }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("routes.a.relay.reply_timeout"), "{text}");
    assert!(text.contains("routes.b.relay.to"), "{text}");
}
