//! Several gateways, one queue: two `hookgate serve` processes on one
//! PostgreSQL database (`store: { engine: postgres }`).
//!
//! The database comes from `HOOKGATE_TEST_POSTGRES_URL` (each test creates
//! and drops a database of its own there). Without it these tests say once
//! how to enable them and pass, except under `CI=true`, where `.ci/run`
//! starts a PostgreSQL and they must run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;
use crate::support::{sign, wait_until};

const URL_VAR: &str = "HOOKGATE_TEST_POSTGRES_URL";

/// Claims' lease in these tests: a crashed gateway's deliveries are taken
/// over after this long.
const LEASE: &str = "2s";

/// A database of its own for one test, dropped at the end.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    /// Its URL, for `store.url`.
    pub(crate) url: String,
}

impl TestDatabase {
    /// `None` (the test passes, said once) without a PostgreSQL to use,
    /// except under `CI=true`.
    pub(crate) async fn create() -> Option<Self> {
        static SAID: Once = Once::new();
        let Some(admin_url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL tests: set {URL_VAR} (see .ci/run)"
            );
            SAID.call_once(|| {
                // Straight to the terminal: the harness captures the
                // output of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nNOTE: the scale-out tests (two gateways on PostgreSQL) did not run. \
                     Set {URL_VAR}=postgres://user@host:port/db (a role that may create \
                     databases) to run them.\n"
                );
            });
            return None;
        };
        let name = format!("hgit_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).expect("a postgres:// URL");
        url.set_path(&format!("/{name}"));
        Some(TestDatabase {
            admin_url,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = connect(&url).await;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
    tokio::spawn(conn);
    client
}

/// One gateway's config: the shared store, a short lease, a GitHub route
/// to `sink`. `name` goes out as a header, to tell who delivered what.
fn config(db: &TestDatabase, sink: &MockReceiver, name: &str) -> String {
    format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
store: {{ engine: postgres, url: "{}", pool_size: 8 }}
delivery: {{ lease: {LEASE} }}
destinations:
  sink:
    url: "{}"
    timeout: 5s
    concurrency: 4
    headers: {{ x-gateway: {name} }}
    retry: {{ schedule: [50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms], jitter: 0 }}
routes:
  github:
    verify: {{ plugin: github, with: {{ secret: s3cret }} }}
    to: [sink]
"#,
        db.url,
        sink.url("/in")
    )
}

fn signed(delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", "issues".to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", sign::github("s3cret", body)),
        ("content-type", "application/json".to_owned()),
    ]
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    delivery: &str,
    body: &[u8],
) -> reqwest::Result<reqwest::Response> {
    let mut req = client.post(url);
    for (k, v) in signed(delivery, body) {
        req = req.header(k, v);
    }
    req.body(body.to_vec()).send().await
}

/// The event numbers the sink answered 2xx for, with their copies.
fn delivered(sink: &MockReceiver) -> BTreeMap<u64, usize> {
    let mut copies = BTreeMap::new();
    for r in sink.successes() {
        if let Some(n) = r.json()["n"].as_u64() {
            *copies.entry(n).or_insert(0) += 1;
        }
    }
    copies
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_share_one_queue_and_the_survivor_finishes_a_killed_ones_work() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sink = MockReceiver::start().await;
    // A slow destination keeps deliveries in flight and queued (leased) in
    // both gateways when the kill comes.
    sink.delay(Duration::from_millis(100));
    let mut a = TestGateway::spawn(&config(&db, &sink, "a")).await;
    let b = TestGateway::spawn(&config(&db, &sink, "b")).await;

    // Dedup across gateways: the same provider delivery, to one and then
    // the other, is stored once.
    let body = br#"{"dup":1}"#;
    let first: serde_json::Value = post(a.client(), &a.url("/hooks/github"), "dup-1", body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = post(b.client(), &b.url("/hooks/github"), "dup-1", body)
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["id"], first["id"]);

    // Eight clients post numbered, signed events, alternating between the
    // gateways, until the kill; each remembers what got a 2xx and where.
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<u64, &'static str>>> = Arc::default();
    let urls = [(a.url("/hooks/github"), "a"), (b.url("/hooks/github"), "b")];
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (next, stop, acked, urls) = (next.clone(), stop.clone(), acked.clone(), urls.clone());
        let client = a.client().clone();
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (url, via) = &urls[(n % 2) as usize];
                let body = json!({ "n": n }).to_string();
                // Every fifth event is also sent, under the same provider
                // id, to the other gateway at the same moment.
                let delivery = format!("delivery-{n}");
                let twin = (n % 5 == 0).then(|| {
                    let client = client.clone();
                    let other = urls[((n + 1) % 2) as usize].0.clone();
                    let (delivery, body) = (delivery.clone(), body.clone());
                    tokio::spawn(
                        async move { post(&client, &other, &delivery, body.as_bytes()).await },
                    )
                });
                let ok = matches!(
                    post(&client, url, &delivery, body.as_bytes()).await,
                    Ok(r) if r.status().is_success()
                );
                let twin_ok = match twin {
                    Some(t) => matches!(t.await, Ok(Ok(r)) if r.status().is_success()),
                    None => false,
                };
                if ok || twin_ok {
                    acked.lock().unwrap().insert(n, via);
                }
            }
        }));
    }
    wait_until("200 acknowledged events", Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 200
    })
    .await;

    // The crash: SIGKILL, nothing handed back, nothing restarted.
    a.kill();
    let killed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let at_kill = delivered(&sink);
    let backlog_of_a: BTreeSet<u64> = acked
        .iter()
        .filter(|(n, via)| **via == "a" && !at_kill.contains_key(n))
        .map(|(n, _)| *n)
        .collect();
    // What the dead gateway held: pending deliveries under a lease that
    // has not run out (its own claims, and the survivor's in flight).
    let db_client = connect(&db.url).await;
    let leased: i64 = db_client
        .query_one(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND lease_token IS NOT NULL \
             AND next_attempt_at > hookgate_now_ms()",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // Of the dead gateway's backlog, what was leased (claimed by it at
    // insert, mostly): only a lease running out frees it.
    let backlog_ids: Vec<String> = backlog_of_a
        .iter()
        .map(|n| format!("delivery-{n}"))
        .collect();
    let backlog_leased: i64 = db_client
        .query_one(
            "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE e.source_id = ANY($1) AND d.state = 'pending' AND d.lease_token IS NOT NULL \
             AND d.next_attempt_at > hookgate_now_ms()",
            &[&backlog_ids],
        )
        .await
        .unwrap()
        .get(0);

    wait_until(
        "every acknowledged event delivered by the survivor",
        Duration::from_secs(90),
        || {
            let got = delivered(&sink);
            acked.keys().all(|n| got.contains_key(n))
        },
    )
    .await;
    let took = killed_at.elapsed();

    let copies = delivered(&sink);
    let duplicates: usize = copies.values().map(|c| c - 1).sum();
    // Who sent the dead gateway's backlog: the survivor, after the kill.
    let by_b_after_kill: BTreeSet<u64> = sink
        .successes()
        .iter()
        .filter(|r| r.at > killed_at && r.header("x-gateway") == Some("b"))
        .filter_map(|r| r.json()["n"].as_u64())
        .filter(|n| backlog_of_a.contains(n))
        .collect();
    // Dedup across the gateways, in the shared database: every provider id
    // (a fifth of them sent to both gateways at once) was stored once.
    let stored_twice: i64 = db_client
        .query_one(
            "SELECT COUNT(*) FROM (SELECT source_id FROM events WHERE source_id IS NOT NULL \
             GROUP BY route, source_id HAVING COUNT(*) > 1) AS twice",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let stored: i64 = db_client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "scale-out: {} acknowledged ({} via a, {} sent to both at once), {} delivered at the kill, \
         {} in a's backlog ({backlog_leased} of them leased; leased deliveries in all: {leased}), all delivered {:.1} s after \
         the kill, {} duplicate deliveries (at least once), {stored} events stored, \
         {stored_twice} provider ids stored twice, 0 lost",
        acked.len(),
        acked.values().filter(|v| **v == "a").count(),
        acked.keys().filter(|n| **n % 5 == 0).count(),
        at_kill.len(),
        backlog_of_a.len(),
        took.as_secs_f64(),
        duplicates,
    );
    assert!(
        !backlog_of_a.is_empty(),
        "the kill should leave the dead gateway a backlog to prove take-over"
    );
    assert!(
        backlog_leased > 0,
        "the dead gateway should hold leases to prove they run out"
    );
    assert_eq!(
        by_b_after_kill, backlog_of_a,
        "the survivor delivered all of the dead gateway's backlog"
    );
    assert_eq!(stored_twice, 0, "a provider delivery was stored twice");
    drop(b);
}

/// A subscriber disabled through one gateway is disabled on the other at
/// once; a PUT through the other enables it again, and what was parked
/// meanwhile goes out.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_disabled_on_one_gateway_is_disabled_on_the_other() {
    use crate::subscriptions::{KEY_A, call, publish, subscribe, yaml};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sink = MockReceiver::start().await;
    let extra = format!(
        "store: {{ engine: postgres, url: \"{}\" }}\ndelivery: {{ lease: {LEASE} }}",
        db.url
    );
    let a = TestGateway::spawn(&yaml(&extra)).await;
    let b = TestGateway::spawn(&yaml(&extra)).await;
    let (id, _) = subscribe(&a, KEY_A, &sink, &["*"]).await;

    let (s, v) = call(
        &a,
        KEY_A,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, seen) = call(&b, KEY_A, Method::GET, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(s, 200, "{seen}");
    assert_eq!(
        seen["active"], false,
        "disabled on the other gateway at once"
    );

    // Published through the other gateway while off: parked, not sent.
    assert_eq!(
        publish(&b, KEY_A, "ping", json!({"try": 1})).await["deliveries"],
        1
    );
    let (s, v) = call(
        &b,
        KEY_A,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, seen) = call(&a, KEY_A, Method::GET, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(seen["active"], true, "enabled on the first gateway at once");
    wait_until(
        "the parked event after re-enable",
        Duration::from_secs(20),
        || {
            sink.deliveries()
                .iter()
                .any(|r| r.answered < 300 && r.json()["data"]["try"] == json!(1))
        },
    )
    .await;
}

/// A Teams webhook allows four requests a second whichever gateway sends
/// them: two gateways on one store take their request slots from one
/// schedule, so the webhook sees its requests at least 250 ms apart, not
/// two at a time.
#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_pace_one_teams_webhook_together() {
    two_gateways_pace_one_receiver("kind: teams", Duration::from_millis(250)).await;
}

/// A destination's `rate:` holds for the gateways sharing a store, as
/// Teams' pace does.
#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_keep_a_destinations_rate_together() {
    two_gateways_pace_one_receiver("rate: 4/s", Duration::from_millis(250)).await;
}

/// Two gateways on one store, each with deliveries for one destination
/// (`destination` its keys besides `url`) at once: the receiver sees the
/// requests about `interval` apart.
async fn two_gateways_pace_one_receiver(destination: &str, interval: Duration) {
    const N: usize = 8;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sink = MockReceiver::start().await;
    let yaml = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
store: {{ engine: postgres, url: "{}", pool_size: 8 }}
destinations:
  paced: {{ {destination}, url: "{}" }}
routes:
  r:
    to: [paced]
"#,
        db.url,
        sink.url("/webhook")
    );
    let a = TestGateway::spawn(&yaml).await;
    let b = TestGateway::spawn(&yaml).await;
    // Accepted within a few milliseconds, far less than one slot: both
    // gateways have deliveries for the receiver at once.
    for i in 0..N {
        let gw = if i % 2 == 0 { &a } else { &b };
        let resp = gw
            .post(
                "r",
                &[("content-type", "application/json")],
                br#"{"text":"hi"}"#,
            )
            .await;
        assert_eq!(resp.status(), 202);
    }
    sink.wait_for(N, Duration::from_secs(30)).await;
    let mut at: Vec<Instant> = sink.received().iter().map(|r| r.at).collect();
    at.sort();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // `interval` apart, less what a busy machine's timers and scheduling
    // may take off one (each gateway pacing alone sends two within a few
    // ms).
    assert!(
        gaps.iter().all(|g| *g >= interval / 2),
        "requests to the receiver closer than its pace allows: {gaps:?}"
    );
}
