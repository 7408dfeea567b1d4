//! At-least-once delivery: retries, dead letters, replay, deduplication,
//! and nothing acknowledged is lost when the gateway is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway, one_destination_config};
use crate::support::receiver::MockReceiver;
use crate::support::{sign, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// A route `hooks` delivering to `sink` with a millisecond retry schedule.
fn config(sink: &MockReceiver, schedule: &str, extra: &str) -> String {
    format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}", timeout: 5s, retry: {{ schedule: {schedule}, jitter: 0 }} }}
routes:
  hooks:
    to: [sink]
{extra}
"#,
        sink.url("/in")
    )
}

async fn event_status(gw: &TestGateway, id: &str) -> String {
    gw.admin_get(&format!("/admin/events/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_for_status(gw: &TestGateway, id: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let event = gw.admin_get(&format!("/admin/events/{id}")).await;
        if event["status"] == status {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "event {id} never became {status}: {event:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replays through the admin API (`path`, a POST): how many deliveries it
/// requeued; anything but a 200 fails the test.
async fn replay_admin(gw: &TestGateway, path: &str) -> u64 {
    let resp = gw.admin(Method::POST, path).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json::<serde_json::Value>().await.unwrap()["replayed"]
        .as_u64()
        .unwrap_or_else(|| panic!("{path}: no `replayed` count"))
}

/// Runs `hookgate replay` against `gw` with `args`: its standard output;
/// a failed run fails the test.
fn replay_cli(gw: &TestGateway, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["replay", "--url", &gw.url(""), "--token", ADMIN_TOKEN])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn post_id(gw: &TestGateway, route: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let resp = gw.post(route, headers, body).await;
    assert_eq!(resp.status(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_destination_is_retried_and_delivered_exactly_once() {
    const N: usize = 3;
    let sink = MockReceiver::start().await;
    sink.script(&[500, 503, 429]);
    let gw = TestGateway::spawn(&config(&sink, "[20ms, 20ms, 20ms, 20ms, 20ms]", "")).await;
    let id = post_id(
        &gw,
        "hooks",
        &[("content-type", "application/json")],
        br#"{"n":1}"#,
    )
    .await;

    let event = wait_for_status(&gw, &id, "delivered").await;
    let attempts = event["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), N + 1, "{event:#}");
    let statuses: Vec<u64> = attempts
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 429, 200]);
    assert_eq!(event["deliveries"][0]["state"], "delivered");

    // The destination's handler saw it succeed exactly once, and every
    // attempt carried the same stable id.
    assert_eq!(sink.successes().len(), 1);
    let all = sink.received();
    assert_eq!(all.len(), N + 1);
    assert!(
        all.iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str()))
    );
    assert!(all.iter().all(|r| &r.body[..] == br#"{"n":1}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_delivery_is_dead_and_replay_delivers_it() {
    let sink = MockReceiver::start().await;
    sink.always(Some(500));
    let gw = TestGateway::spawn(&config(&sink, "[10ms, 10ms]", "")).await;
    let first = post_id(&gw, "hooks", &[], b"one").await;
    let second = post_id(&gw, "hooks", &[], b"two").await;

    let event = wait_for_status(&gw, &first, "dead").await;
    assert_eq!(
        event["deliveries"][0]["attempts"].as_array().unwrap().len(),
        3
    );
    assert!(
        event["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("retries exhausted"),
        "{event:#}"
    );
    wait_for_status(&gw, &second, "dead").await;
    let dead = gw
        .admin_get("/admin/events?status=dead&destination=sink")
        .await;
    let ids: BTreeSet<&str> = dead["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([first.as_str(), second.as_str()]));

    // The destination recovers: replay one event through the admin API...
    sink.always(None);
    assert_eq!(
        replay_admin(&gw, &format!("/admin/events/{first}/replay")).await,
        1
    );
    wait_for_status(&gw, &first, "delivered").await;
    assert_eq!(event_status(&gw, &second).await, "dead");

    // ...and every remaining dead letter for the destination from the CLI.
    let out = replay_cli(
        &gw,
        &[
            "--status",
            "dead",
            "--destination",
            "sink",
            "--since",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(out.contains(r#""replayed":1"#), "{out}");
    wait_for_status(&gw, &second, "delivered").await;
    let bodies: Vec<Vec<u8>> = sink.successes().iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(bodies, [b"one".to_vec(), b"two".to_vec()]);
}

/// A destination renamed in the config leaves its deliveries under the old
/// name (they wait for it, in case it comes back). A replay with `to`
/// sends them to the new one: the waiting one by its event, the dead one
/// in bulk from the CLI.
#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_destinations_deliveries_replay_to_its_new_name() {
    let before = MockReceiver::start().await;
    let after = MockReceiver::start().await;
    let yaml = |name: &str, sink: &MockReceiver| one_destination_config(name, &sink.url("/in"));
    let gw = TestGateway::spawn(&yaml("old", &before)).await;
    // One dead (410 ends it at once), one waiting 30 s for its retry.
    before.script(&[410]);
    let dead = post_id(&gw, "hooks", &[], b"one").await;
    wait_for_status(&gw, &dead, "dead").await;
    before.always(Some(500));
    let waiting = post_id(&gw, "hooks", &[], b"two").await;
    wait_until("the first attempt of the second", WAIT, || {
        before.count() >= 2
    })
    .await;

    gw.reload_with(&yaml("new", &after)).await;

    // `to` needs the destination it moves from, and one the config has.
    for (query, says) in [
        ("status=dead&to=new", "needs `destination`"),
        ("destination=old&to=nope", r#"no destination \"nope\""#),
    ] {
        let resp = gw
            .admin(Method::POST, &format!("/admin/replay?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(says), "{query}: {body}");
    }
    let path = format!("/admin/events/{waiting}/replay?destination=old&to=new");
    assert_eq!(replay_admin(&gw, &path).await, 1);
    let out = replay_cli(
        &gw,
        &["--status", "dead", "--destination", "old", "--to", "new"],
    );
    assert!(out.contains(r#""replayed":1"#), "{out}");

    for id in [&waiting, &dead] {
        let event = wait_for_status(&gw, id, "delivered").await;
        assert_eq!(event["deliveries"][0]["destination"], "new", "{event:#}");
    }
    let mut bodies: Vec<Vec<u8>> = after.successes().iter().map(|r| r.body.to_vec()).collect();
    bodies.sort();
    assert_eq!(bodies, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(before.count(), 2, "nothing more went to the old URL");
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_stops_retrying_at_once() {
    let sink = MockReceiver::start().await;
    sink.always(Some(410));
    let gw = TestGateway::spawn(&config(&sink, "[10ms, 10ms, 10ms]", "")).await;
    let id = post_id(&gw, "hooks", &[], b"x").await;
    let event = wait_for_status(&gw, &id, "dead").await;
    assert_eq!(
        event["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1
    );
    assert!(
        event["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("410")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_github_delivery_is_delivered_once() {
    let sink = MockReceiver::start().await;
    let extra = r#"  github:
    verify: { plugin: github, with: { secret: s3cret } }
    to: [sink]"#;
    let gw = TestGateway::spawn(&config(&sink, "[10ms]", extra)).await;
    let body = br#"{"action":"opened"}"#;
    let sig = sign::github("s3cret", body);
    let headers = [
        ("x-github-event", "issues"),
        ("x-github-delivery", "11111111-2222-3333-4444-555555555555"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let first = gw.post("github", &headers, body).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = gw.post("github", &headers, body).await;
    assert_eq!(
        again.status(),
        202,
        "a duplicate is still a success for the provider"
    );
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);

    // A different delivery id is a different event.
    let other = [
        ("x-github-event", "issues"),
        ("x-github-delivery", "99999999-2222-3333-4444-555555555555"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let third: serde_json::Value = gw.post("github", &other, body).await.json().await.unwrap();
    wait_for_status(&gw, third["id"].as_str().unwrap(), "delivered").await;
    wait_for_status(&gw, first["id"].as_str().unwrap(), "delivered").await;
    let ids: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.iter()
            .filter(|i| *i == "11111111-2222-3333-4444-555555555555")
            .count(),
        1,
        "{ids:?}"
    );
    assert_eq!(ids.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_acknowledged_is_lost_when_the_gateway_is_killed() {
    let sink = MockReceiver::start().await;
    // A slow destination with little concurrency (at most 200 deliveries
    // a second) keeps a backlog pending when the kill comes.
    sink.delay(Duration::from_millis(10));
    let yaml = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}", timeout: 5s, concurrency: 2, retry: {{ schedule: [50ms, 50ms, 50ms, 50ms, 50ms], jitter: 0 }} }}
routes:
  hooks: {{ to: [sink] }}
"#,
        sink.url("/in")
    );
    let mut gw = TestGateway::spawn(&yaml).await;

    // Eight clients post numbered events until the kill; each remembers
    // which numbers were acknowledged with a 2xx.
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let url = gw.url("/hooks/hooks");
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (next, stop, acked, url) = (next.clone(), stop.clone(), acked.clone(), url.clone());
        let client = gw.client().clone();
        clients.push(tokio::spawn(async move {
            // Bounded: at most 10 s or until stopped.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                match client.post(&url).body(format!("event-{n}")).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(n);
                    }
                    _ => {}
                }
            }
        }));
    }
    wait_until("300 acknowledged events", WAIT, || {
        acked.lock().unwrap().len() >= 300
    })
    .await;
    gw.kill();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked: BTreeSet<u64> = acked.lock().unwrap().clone();
    let seen_at_kill = sink.received().len();

    gw.restart().await;
    let missing = || {
        let got: BTreeSet<u64> = sink
            .successes()
            .iter()
            .filter_map(|r| {
                std::str::from_utf8(&r.body)
                    .ok()?
                    .strip_prefix("event-")?
                    .parse()
                    .ok()
            })
            .collect();
        acked.difference(&got).count()
    };
    wait_until(
        "every acknowledged event delivered",
        Duration::from_secs(60),
        || missing() == 0,
    )
    .await;

    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for r in sink.successes() {
        if let Some(n) = std::str::from_utf8(&r.body)
            .ok()
            .and_then(|b| b.strip_prefix("event-")?.parse().ok())
        {
            *copies.entry(n).or_default() += 1;
        }
    }
    let duplicates: usize = copies.values().map(|c| c - 1).sum();
    eprintln!(
        "crash test: {} acknowledged, {} delivered before the kill, {} delivered in all, {} duplicate deliveries, 0 lost",
        acked.len(),
        seen_at_kill,
        copies.len(),
        duplicates
    );
    assert!(
        seen_at_kill < acked.len(),
        "the kill should leave a backlog to prove recovery"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_a_restart_delivers_what_was_pending() {
    let sink = MockReceiver::start().await;
    sink.always(Some(503));
    let mut gw = TestGateway::spawn(&config(
        &sink,
        "[100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms]",
        "",
    ))
    .await;
    let id = post_id(&gw, "hooks", &[], b"pending").await;
    sink.wait_for(1, WAIT).await;
    assert!(
        gw.terminate(Duration::from_secs(15)).await,
        "graceful exit on SIGTERM:\n{}",
        gw.log()
    );
    sink.always(None);
    gw.restart().await;
    wait_for_status(&gw, &id, "delivered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_the_token_and_is_absent_without_one() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&config(&sink, "[10ms]", "")).await;
    let none = gw
        .client()
        .get(gw.url("/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let wrong = gw
        .client()
        .get(gw.url("/admin/events"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let page = gw.admin_get("/admin/events?limit=1").await;
    assert!(
        page["events"].is_array() && page.get("next").is_some(),
        "{page}"
    );
    let bad = gw
        .admin(Method::GET, "/admin/events?status=lost")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let open =
        TestGateway::spawn("destinations: { c: { kind: log } }\nroutes: { r: { to: [c] } }\n")
            .await;
    let resp = open
        .client()
        .get(open.url("/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "no token configured: no admin API");
}

/// A store operation that panics (here: the debug-build fault hook makes
/// the insert of route `boom` panic inside the writer) fails alone: that
/// webhook is answered 503 (the provider retries) and is not stored,
/// `/healthz` reports the panic, and the next webhook is stored as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_panic_is_reported_by_health_and_the_next_request_is_stored() {
    let gw = TestGateway::spawn_env(
        &format!(
            r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  console: {{ kind: log }}
routes:
  boom: {{ to: [console] }}
  ok: {{ to: [console] }}
"#
        ),
        |_| {},
        &[("HOOKGATE_TEST_FAULT_PANIC_ROUTE", "boom")],
    )
    .await;
    let health = || async {
        let resp = gw.client().get(gw.url("/healthz")).send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, body) = health().await;
    assert_eq!(status, 200);
    assert!(body.get("store_panics").is_none(), "{body}");

    let resp = gw.post("boom", &[], b"{}").await;
    assert_eq!(resp.status(), 503, "the panicking insert fails alone");
    assert!(resp.headers().contains_key("retry-after"));

    // Reported by health (the writer counts the panic a moment after its
    // caller hears of it), which stays 200: the store takes writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = health().await;
        assert_eq!(status, 200, "{body}");
        if body["store_panics"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "panic never reported: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gw.log().contains("a store operation panicked"),
        "and logged at error"
    );

    let resp = gw.post("ok", &[], b"{}").await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = gw.admin_get(&format!("/admin/events/{id}")).await;
    assert_eq!(event["route"], "ok", "{event}");
    let boom = gw.admin_get("/admin/events?route=boom").await;
    assert_eq!(boom["events"], serde_json::json!([]), "rolled back");
}

/// A lane queues eight deliveries per place of its concurrency (so that a
/// backlog drains in batches): on SIGTERM, what waits in the queue goes
/// back to the store at once, and the next start sends each of those
/// deliveries exactly once. (The attempts cut off in flight are sent again
/// at once too: on SQLite the data_dir lock proves that the process that
/// held their claims is gone.)
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_a_deep_lane_queue_back_and_the_restart_sends_it_once() {
    const CONCURRENCY: usize = 8;
    const WEBHOOKS: usize = 100;
    let sink = MockReceiver::start().await;
    // Longer than the test: the attempts in flight never end in it.
    sink.delay(Duration::from_secs(120));
    let yaml = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
delivery: {{ shutdown_grace: 1s }}
destinations:
  sink: {{ url: "{}", timeout: 30s, concurrency: {CONCURRENCY} }}
routes:
  hooks:
    to: [sink]
"#,
        sink.url("/in")
    );
    let mut gw = TestGateway::spawn(&yaml).await;
    for i in 0..WEBHOOKS {
        post_id(&gw, "hooks", &[], format!("n={i}").as_bytes()).await;
    }
    wait_until("the lane's attempts in flight", WAIT, || {
        sink.arrived() >= CONCURRENCY
    })
    .await;
    // Nothing beyond the concurrency starts while those hang.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.arrived(), CONCURRENCY);
    let asked = Instant::now();
    assert!(
        gw.terminate(Duration::from_secs(15)).await,
        "graceful exit on SIGTERM:\n{}",
        gw.log()
    );
    let took = asked.elapsed();
    eprintln!("SIGTERM took {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} (grace 1 s)"
    );

    sink.delay(Duration::ZERO);
    gw.restart().await;
    let owed = WEBHOOKS;
    let ids = || -> Vec<String> {
        sink.successes()
            .iter()
            .filter_map(|r| r.webhook_id())
            .collect()
    };
    wait_until("the queued deliveries after the restart", WAIT, || {
        ids().len() >= owed
    })
    .await;
    // Room for a late duplicate to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = ids();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "each handed-back delivery sent once: {ids:?}"
    );
    assert_eq!(ids.len(), owed);
}
