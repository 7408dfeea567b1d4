//! The dispatcher through the real binary: a hanging destination waits
//! alone, and a flood of webhooks while deliveries run causes no duplicate
//! attempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;
use crate::support::wait_until;

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_destination_does_not_delay_another() {
    const WAITING: usize = 300;
    const HEALTHY: usize = 50;
    let hanging = MockReceiver::start().await;
    // Never answers within the destination's timeout.
    hanging.delay(Duration::from_secs(120));
    let healthy = MockReceiver::start().await;
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
destinations:
  hanging: {{ url: "{}", timeout: 30s, concurrency: 4 }}
  healthy: {{ url: "{}", timeout: 5s }}
routes:
  slow:
    to: [hanging]
  fast:
    to: [healthy]
"#,
            hanging.url("/in"),
            healthy.url("/in")
        ))
        .await,
    );

    // 300 deliveries wait on the hanging destination...
    let mut tasks = Vec::new();
    for c in 0..10 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WAITING / 10 {
                let resp = gw.post("slow", &[], format!("{c}-{i}").as_bytes()).await;
                assert_eq!(resp.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // ...while webhooks for the healthy one keep arriving.
    let mut accepted: HashMap<String, Instant> = HashMap::new();
    for i in 0..HEALTHY {
        let resp = gw
            .post("fast", &[], format!("{{\"n\":{i}}}").as_bytes())
            .await;
        assert_eq!(resp.status(), 202);
        let at = Instant::now();
        let v: serde_json::Value = resp.json().await.unwrap();
        accepted.insert(v["id"].as_str().unwrap().to_owned(), at);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until("every healthy delivery", Duration::from_secs(20), || {
        healthy.count() >= HEALTHY
    })
    .await;
    let mut latencies: Vec<Duration> = healthy
        .received()
        .iter()
        .map(|r| {
            let at = accepted[r.header("webhook-id").unwrap()];
            r.at.saturating_duration_since(at)
        })
        .collect();
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    assert!(
        worst <= Duration::from_secs(3),
        "a healthy delivery arrived {worst:?} after it was accepted (median {:?})",
        latencies[latencies.len() / 2]
    );
    assert_eq!(healthy.count(), HEALTHY, "each exactly once");
    let status = gw.client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(status.status(), 200);
}

/// Acceptance (b): a flood of webhooks while deliveries run, against a
/// sink that answers 200 to everything; each accepted event reaches it
/// exactly once.
///
/// A duplicate is "the sink got it, but its outcome was not recorded, or
/// recorded as a failure". Such a delivery is sent again when its lease
/// runs out or at its first retry, so the test runs with a short lease and
/// a short first retry, waits until the store has nothing pending, then
/// one lease more, and only then counts. (Counting as soon as every id had
/// arrived, as it did, misses them all: they come a lease, 60 s by
/// default, later.)
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_webhooks_while_delivering_causes_no_duplicate() {
    const CONNECTIONS: usize = 128;
    const PER_CONNECTION: usize = 40;
    /// `delivery.lease`; its smallest allowed value is 1 s.
    const LEASE: Duration = Duration::from_secs(3);
    let sink = MockReceiver::start().await;
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
admin: {{ token: {ADMIN_TOKEN} }}
delivery: {{ lease: {lease}s }}
destinations:
  sink: {{ url: "{url}", timeout: 5s, concurrency: 64, retry: {{ schedule: [1s, 1s], jitter: 0 }} }}
routes:
  flood:
    to: [sink]
"#,
            lease = LEASE.as_secs(),
            url = sink.url("/in")
        ))
        .await,
    );
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut shed = 0;
            for i in 0..PER_CONNECTION {
                let resp = gw.post("flood", &[], format!("{c}-{i}").as_bytes()).await;
                match resp.status().as_u16() {
                    202 => {
                        let v: serde_json::Value = resp.json().await.unwrap();
                        ids.push(v["id"].as_str().unwrap().to_owned());
                    }
                    // Shedding load is allowed; losing or duplicating is not.
                    503 => shed += 1,
                    s => panic!("unexpected status {s}"),
                }
            }
            (ids, shed)
        }));
    }
    let mut accepted = Vec::new();
    let mut shed = 0;
    let flood_deadline = Instant::now() + Duration::from_secs(60);
    for t in tasks {
        let (ids, s) = tokio::time::timeout_at(flood_deadline.into(), t)
            .await
            .unwrap_or_else(|_| panic!("the flood was not answered within 60 s\n{}", gw.log()))
            .unwrap();
        accepted.extend(ids);
        shed += s;
    }
    assert!(
        accepted.len() >= CONNECTIONS * PER_CONNECTION / 2,
        "most of the flood is accepted ({} shed)",
        shed
    );

    // Every accepted id arrives (a duplicate must not stand in for a
    // missing one)...
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = copies(&sink);
        let missing = accepted.iter().filter(|id| !seen.contains_key(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} accepted events not delivered after 30 s\n{}",
            accepted.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...the store settles: nothing pending (nor failed for good)...
    let deadline = Instant::now() + Duration::from_secs(15);
    while !events(&gw, "pending").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "events still pending 15 s after every one was delivered: {:?}",
            events(&gw, "pending").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and one lease more: a claim whose outcome went unrecorded is sent
    // again by then, and a recorded failure has had its 1 s first retry.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;

    let seen = copies(&sink);
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "delivered twice: {} ids, e.g. {:?}",
        duplicates.len(),
        duplicates.iter().take(5).collect::<Vec<_>>()
    );
    for id in &accepted {
        assert_eq!(seen.get(id), Some(&1), "{id} delivered exactly once");
    }
    assert_eq!(seen.len(), accepted.len(), "no delivery of an unknown id");
    assert_eq!(events(&gw, "pending").await, Vec::<String>::new());
    assert_eq!(events(&gw, "dead").await, Vec::<String>::new());
}

/// How many times the sink received each `webhook-id`.
fn copies(sink: &MockReceiver) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in sink.received() {
        *seen
            .entry(r.header("webhook-id").unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

/// Ids of (at most 10) stored events in state `status`, from the admin
/// API.
async fn events(gw: &TestGateway, status: &str) -> Vec<String> {
    let page = gw
        .admin_get(&format!("/admin/events?status={status}&limit=10"))
        .await;
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events list: {page}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Ingest outruns a destination of concurrency 1: its lane fills and its
/// deliveries wait in the store. Each poll then claims what the lane has
/// room for, not the gateway's whole room only to hand the rest back (one
/// release per delivery, on every attempt that ended: 2,824 hand-backs
/// for these 120 deliveries before the fix).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_destination_is_polled_in_batches_without_handing_claims_back() {
    const EVENTS: usize = 120;
    let sink = MockReceiver::start().await;
    sink.delay(Duration::from_millis(10));
    let gw = Arc::new(
        TestGateway::spawn_env(
            &format!(
                "destinations:\n  slow: {{ url: \"{}\", concurrency: 1 }}\nroutes:\n  r:\n    to: [slow]\n",
                sink.url("/in")
            ),
            |_| {},
            &[("RUST_LOG", "warn,hookgate::delivery::dispatcher=debug")],
        )
        .await,
    );
    post_at_once(&gw, "r", EVENTS).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.count() < EVENTS {
        assert!(
            Instant::now() < deadline,
            "stalled: {} of {EVENTS}\n{}",
            sink.count(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.count(), EVENTS, "each delivered once");
    let log = strip_ansi(&gw.log());
    let handed_back: usize = log
        .lines()
        .filter(|l| l.contains("claims handed back"))
        .filter_map(|l| {
            let n = l.split(" n=").nth(1)?;
            n.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    // Inserts that all looked while the lane had room may overfill it,
    // once each at most (fewer than EVENTS in all); the poller's claims
    // used to be handed back on every attempt, thousands of them here.
    assert!(
        handed_back < EVENTS,
        "{handed_back} claims handed back for {EVENTS} deliveries\n{log}"
    );
}

/// A stored backlog (here: held by `paused: true` until a reload) is
/// claimed in batches as deep as the lane's queue, eight per place of its
/// concurrency: 2,000 deliveries to a destination of concurrency 32 take a
/// few dozen polls (27 when written). With a queue as deep as the
/// concurrency they took 90 (a claim, then an empty claim past the full
/// lane, for every 16-48 deliveries), and the drain ran at a quarter of
/// the speed (`hookgate-bench --only drain`).
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_drains_in_batches_as_deep_as_the_lanes_queue() {
    const EVENTS: usize = 2_000;
    let sink = MockReceiver::start().await;
    let yaml = |paused: &str| {
        format!(
            "admin: {{ token: {ADMIN_TOKEN} }}\n\
             destinations:\n  fast: {{ url: \"{}\", concurrency: 32{paused} }}\n\
             routes:\n  r:\n    to: [fast]\n",
            sink.url("/in")
        )
    };
    let gw = Arc::new(TestGateway::spawn(&yaml(", paused: true")).await);
    for _ in 0..EVENTS / 200 {
        post_at_once(&gw, "r", 200).await;
    }
    assert_eq!(sink.count(), 0, "paused");
    let polls = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("hookgate_delivery_polls_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let before = polls(&gw.metrics().await);
    gw.reload_with(&yaml("")).await;
    sink.wait_for(EVENTS, Duration::from_secs(60)).await;
    let drained = polls(&gw.metrics().await) - before;
    let ids: Vec<String> = sink
        .received()
        .iter()
        .filter_map(|r| r.webhook_id())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), EVENTS, "each delivered");
    assert_eq!(ids.len(), EVENTS, "once");
    eprintln!("{EVENTS} deliveries drained in {drained} polls");
    assert!(
        drained <= 60,
        "{drained} polls for {EVENTS} deliveries (90 with a queue of 32)"
    );
}

/// POSTs bodies `0`..`n` to route `route` all at once; each must be
/// accepted.
async fn post_at_once(gw: &Arc<TestGateway>, route: &'static str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let resp = gw.post(route, &[], format!("{i}").as_bytes()).await;
                assert_eq!(resp.status(), 202);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// `text` without its terminal colour codes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn lanes_share_a_small_gateway_wide_cap_without_stalling() {
    const EVENTS: usize = 40;
    let sinks = [
        MockReceiver::start().await,
        MockReceiver::start().await,
        MockReceiver::start().await,
    ];
    for s in &sinks {
        s.delay(Duration::from_millis(5));
    }
    // Two attempts in flight in the whole gateway, three destinations that
    // each could take four: lanes wait for gateway-wide slots and get them.
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
delivery: {{ workers: 2 }}
destinations:
  a: {{ url: "{}", concurrency: 4 }}
  b: {{ url: "{}", concurrency: 4 }}
  c: {{ url: "{}", concurrency: 4 }}
routes:
  all:
    to: [a, b, c]
"#,
            sinks[0].url("/in"),
            sinks[1].url("/in"),
            sinks[2].url("/in")
        ))
        .await,
    );
    post_at_once(&gw, "all", EVENTS).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sinks.iter().all(|s| s.count() >= EVENTS) {
        assert!(
            Instant::now() < deadline,
            "stalled: {:?} of {EVENTS} each\n{}",
            sinks.iter().map(MockReceiver::count).collect::<Vec<_>>(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in &sinks {
        assert_eq!(s.count(), EVENTS);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlogged_lane_does_not_keep_the_gateway_wide_slots() {
    const WAITING: usize = 10;
    let hanging = MockReceiver::start().await;
    // Never answers within the destination's 2 s timeout.
    hanging.delay(Duration::from_secs(120));
    let healthy = MockReceiver::start().await;
    // The hanging destination's concurrency is the whole gateway's: every
    // slot is its, and it has a backlog. Each of its attempts that times
    // out frees a slot; the healthy lane, waiting, must get the next one,
    // not the hanging lane's own queue (which would take WAITING / 2
    // timeouts, 10 s, to drain first).
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
delivery: {{ workers: 2 }}
destinations:
  hanging: {{ url: "{}", timeout: 2s, concurrency: 2 }}
  healthy: {{ url: "{}", timeout: 5s }}
routes:
  slow:
    to: [hanging]
  fast:
    to: [healthy]
"#,
            hanging.url("/in"),
            healthy.url("/in")
        ))
        .await,
    );
    post_at_once(&gw, "slow", WAITING).await;
    // The posts' deliveries were handed to the dispatcher before their 202s
    // (claimed in the insert); a moment for both attempts to be under way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = gw.post("fast", &[], b"{}").await;
    assert_eq!(resp.status(), 202);
    let accepted = Instant::now();
    wait_until("the healthy delivery", Duration::from_secs(20), || {
        healthy.count() >= 1
    })
    .await;
    let waited = healthy.received()[0].at.saturating_duration_since(accepted);
    // One timeout (2 s) at most, with room for a slow machine; the old
    // dispatcher took at least four more (8 s).
    assert!(
        waited <= Duration::from_millis(4_500),
        "the healthy delivery waited {waited:?} behind the hanging lane's backlog\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_lowers_concurrency_reaches_a_lane_with_a_backlog() {
    const EVENTS: usize = 24;
    const DELAY: Duration = Duration::from_millis(300);
    let sink = MockReceiver::start().await;
    sink.delay(DELAY);
    let yaml = |concurrency: usize| {
        format!(
            r#"
admin: {{ token: "{token}" }}
destinations:
  slow: {{ url: "{url}", concurrency: {concurrency} }}
routes:
  r:
    to: [slow]
"#,
            token = crate::support::gateway::ADMIN_TOKEN,
            url = sink.url("/in"),
        )
    };
    let gw = Arc::new(TestGateway::spawn(&yaml(4)).await);
    post_at_once(&gw, "r", EVENTS).await;
    wait_until("the first attempts", Duration::from_secs(10), || {
        sink.count() >= 4
    })
    .await;
    // The lane has a backlog now. Lower its concurrency to 1.
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    gw.reload_with(&text.replace("concurrency: 4", "concurrency: 1"))
        .await;
    let reloaded = Instant::now();
    wait_until("every delivery", Duration::from_secs(30), || {
        sink.count() >= EVENTS
    })
    .await;
    // Each request was in flight from DELAY before its answer until the
    // answer (20 ms of slack each side for timers). Those that started once
    // the attempts begun before the reload had ended must have run alone.
    let spans: Vec<(Instant, Instant)> = sink
        .received()
        .iter()
        .map(|r| {
            (
                r.at - DELAY + Duration::from_millis(20),
                r.at - Duration::from_millis(20),
            )
        })
        .collect();
    let settled = reloaded + DELAY + Duration::from_millis(50);
    let worst = spans
        .iter()
        .filter(|(start, _)| *start >= settled)
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0);
    let after = spans.iter().filter(|(s, _)| *s >= settled).count();
    assert!(after >= 10, "only {after} attempts began after the reload");
    assert_eq!(
        worst, 1,
        "attempts still overlapped after concurrency was lowered to 1"
    );
}

/// A destination with `signing:` gets every attempt signed when it is
/// sent: Standard Webhooks by the current and the previous secret while
/// rotating (each verifies on its own), a retry signed again with its own
/// timestamp and the same `webhook-id`; `ms-signature` on another
/// destination; nothing on a destination without `signing:`.
#[tokio::test(flavor = "multi_thread")]
async fn a_signing_destination_gets_each_attempt_signed_when_it_is_sent() {
    use crate::support::sign;
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const MS: &str = "an-ms-signature-secret-of-forty-chars!!!";
    let std_sink = MockReceiver::start().await;
    std_sink.script(&[500]);
    let ms_sink = MockReceiver::start().await;
    let plain_sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&format!(
        r#"
destinations:
  std:
    url: "{}"
    retry: {{ schedule: [1100ms], jitter: 0 }}
    signing: {{ secret: "{NEW}", previous_secret: "{OLD}" }}
  ms: {{ url: "{}", signing: {{ scheme: ms-signature, secret: "{MS}" }} }}
  plain: {{ url: "{}" }}
routes:
  hooks: {{ to: [std, ms, plain] }}
"#,
        std_sink.url("/in"),
        ms_sink.url("/in"),
        plain_sink.url("/in")
    ))
    .await;
    let resp = gw
        .post(
            "hooks",
            &[("content-type", "application/json")],
            br#"{"n":1}"#,
        )
        .await;
    assert_eq!(resp.status(), 202);
    wait_until("every delivery", Duration::from_secs(30), || {
        std_sink.successes().len() == 1 && ms_sink.count() == 1 && plain_sink.count() == 1
    })
    .await;

    let attempts = std_sink.deliveries();
    assert_eq!(attempts.len(), 2, "a failed attempt and its retry");
    let mut stamps = Vec::new();
    for a in &attempts {
        let (id, ts, sig) = (
            a.header("webhook-id").unwrap(),
            a.header("webhook-timestamp").unwrap(),
            a.header("webhook-signature").unwrap(),
        );
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
        for secret in [NEW, OLD] {
            assert!(
                sign::standard_webhooks_valid(secret, id, ts, sig, &a.body),
                "{secret}: {sig}"
            );
        }
        assert!(!sign::standard_webhooks_valid(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            id,
            ts,
            sig,
            &a.body
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ts: u64 = ts.parse().unwrap();
        assert!(now.abs_diff(ts) < 60, "signed at send time: {ts} vs {now}");
        stamps.push((id.to_owned(), ts));
    }
    assert_eq!(stamps[0].0, stamps[1].0, "one webhook-id for every attempt");
    assert!(
        stamps[1].1 > stamps[0].1,
        "the retry, 1.1 s later, is signed with its own timestamp: {stamps:?}"
    );

    let ms = &ms_sink.deliveries()[0];
    let values = ms.header_values("ms-signature");
    assert_eq!(values, [sign::ms_signature(MS, &ms.body)]);
    assert!(ms.header("webhook-signature").is_none());

    let plain = &plain_sink.deliveries()[0];
    for h in ["webhook-signature", "webhook-timestamp", "ms-signature"] {
        assert!(plain.header(h).is_none(), "{h} on an unsigned destination");
    }
    assert!(plain.header("webhook-id").is_some());
}

/// A destination URL with a user and password is sent with Basic
/// authentication (percent-decoded), not with the credentials in the
/// request line, as curl and reqwest do; a configured `authorization`
/// header wins over it.
#[tokio::test(flavor = "multi_thread")]
async fn a_urls_user_and_password_become_basic_authentication() {
    use base64::Engine as _;
    let sink = MockReceiver::start().await;
    let with_user = sink
        .url("/in")
        .replace("http://", "http://hook%40ops:p%3Ass@");
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            "destinations:\n  basic: {{ url: \"{with_user}\" }}\n  \
             header: {{ url: \"{with_user}\", headers: {{ authorization: \"Bearer configured\" }} }}\n\
             routes:\n  basic:\n    to: [basic]\n  header:\n    to: [header]\n"
        ))
        .await,
    );
    post_at_once(&gw, "basic", 1).await;
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hook@ops:p:ss")
    );
    assert_eq!(got[0].header("authorization"), Some(expected.as_str()));
    assert_eq!(got[0].uri.path(), "/in");
    post_at_once(&gw, "header", 1).await;
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].header("authorization"), Some("Bearer configured"));
}

/// `paused: true` keeps a destination's deliveries in the store, unsent
/// and with no attempt counted, while webhooks are accepted and the other
/// destinations of the same route deliver; a reload that removes the flag
/// sends them all at once. Deliveries already queued in the destination's
/// lane when a reload pauses it go back to the store instead of out.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_destination_holds_its_deliveries_until_a_reload_resumes_it() {
    const HELD: usize = 8;
    let held = MockReceiver::start().await;
    let other = MockReceiver::start().await;
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
admin: {{ token: "{ADMIN_TOKEN}" }}
destinations:
  held: {{ url: "{}", concurrency: 1, paused: true }}
  other: {{ url: "{}" }}
routes:
  both:
    to: [held, other]
"#,
            held.url("/in"),
            other.url("/in")
        ))
        .await,
    );
    let config = |paused: bool| {
        let text = std::fs::read_to_string(gw.config_path()).unwrap();
        text.replace(
            &format!("paused: {}", !paused),
            &format!("paused: {paused}"),
        )
    };
    post_at_once(&gw, "both", HELD).await;
    other.wait_for(HELD, Duration::from_secs(10)).await;
    // Polls come at least every second: two of them find nothing to send.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(held.count(), 0, "a paused destination was sent to");
    assert_eq!(
        gw.admin_get("/admin/status").await["paused"],
        serde_json::json!(["held"])
    );
    assert!(
        gw.metrics()
            .await
            .contains(r#"hookgate_destination_paused{destination="held"} 1"#)
    );
    let pending = events(&gw, "pending").await;
    assert_eq!(
        pending.len(),
        HELD,
        "every event waits for its paused delivery"
    );
    for id in &pending {
        let event = gw.admin_get(&format!("/admin/events/{id}")).await;
        let waiting = event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "held")
            .unwrap_or_else(|| panic!("no delivery to held: {event}"))
            .clone();
        assert_eq!(waiting["state"], "pending", "{event}");
        assert_eq!(
            waiting["attempts"].as_array().map(Vec::len),
            Some(0),
            "{event}"
        );
        // Never claimed, by the insert or a poll: claimed, it would have
        // been put back with a note (a store write per delivery per poll).
        assert!(waiting["last_error"].is_null(), "{event}");
    }

    // Resumed: everything that waited goes out, each once.
    let resumed = Instant::now();
    gw.reload_with(&config(false)).await;
    assert_eq!(
        gw.admin_get("/admin/status").await["paused"],
        serde_json::json!([])
    );
    assert!(!gw.metrics().await.contains("hookgate_destination_paused{"));
    held.wait_for(HELD, Duration::from_secs(10)).await;
    assert!(
        resumed.elapsed() < Duration::from_secs(5),
        "the held deliveries took {:?} after the resume",
        resumed.elapsed()
    );

    // Paused again with one delivery in flight and more queued in its
    // lane behind it (concurrency 1): the one in flight finishes, the
    // queued ones are not sent.
    held.delay(Duration::from_secs(3));
    post_at_once(&gw, "both", 4).await;
    wait_until(
        "the first of them in flight",
        Duration::from_secs(10),
        || held.arrived() > HELD,
    )
    .await;
    gw.reload_with(&config(true)).await;
    // Past the answer to the one in flight, and two polls.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert_eq!(
        held.arrived(),
        HELD + 1,
        "queued deliveries went out while paused"
    );
    assert_eq!(held.count(), HELD + 1, "the one in flight was answered");
    held.delay(Duration::ZERO);
    gw.reload_with(&config(false)).await;
    held.wait_for(HELD + 4, Duration::from_secs(10)).await;
    let copies = copies(&held);
    assert_eq!(copies.len(), HELD + 4, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

/// A reload that resumes a destination sends what it held at once, not at
/// the poller's next idle look (up to a second later): five rounds of
/// pause, post, resume, each held delivery there within 400 ms of the
/// reload's answer. Without the reload's wake-up a round passed about
/// two times in five (685 ms in the first round of a run without it).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_resumes_a_destination_sends_its_backlog_at_once() {
    let held = MockReceiver::start().await;
    let other = MockReceiver::start().await;
    let yaml = |paused: bool| {
        format!(
            "admin: {{ token: \"{ADMIN_TOKEN}\" }}\n\
             destinations:\n  held: {{ url: \"{}\", paused: {paused} }}\n  other: {{ url: \"{}\" }}\n\
             routes:\n  both:\n    to: [held, other]\n",
            held.url("/in"),
            other.url("/in")
        )
    };
    let gw = Arc::new(TestGateway::spawn(&yaml(true)).await);
    const ROUNDS: usize = 5;
    for round in 1..=ROUNDS {
        if round > 1 {
            gw.reload_with(&yaml(true)).await;
        }
        post_at_once(&gw, "both", 1).await;
        other.wait_for(round, Duration::from_secs(10)).await;
        // The insert's own wake-up and the poll it may start are over.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            held.arrived(),
            round - 1,
            "round {round}: sent while paused"
        );
        gw.reload_with(&yaml(false)).await;
        let resumed = Instant::now();
        held.wait_for(round, Duration::from_secs(10)).await;
        assert!(
            resumed.elapsed() < Duration::from_millis(400),
            "round {round}: the held delivery came {:?} after the resume",
            resumed.elapsed()
        );
    }
    let copies = copies(&held);
    assert_eq!(copies.len(), ROUNDS, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

/// A destination that a reload took out of the config (a typo, a rename
/// undone) and a later reload brings back: what waited for it meanwhile,
/// postponed a minute at a time, is sent at once, not at its next look.
#[tokio::test(flavor = "multi_thread")]
async fn a_destination_a_reload_brings_back_gets_its_backlog_at_once() {
    const WAITING: usize = 3;
    let away = MockReceiver::start().await;
    let other = MockReceiver::start().await;
    // `away` paused while the webhooks come, so that none is sent before
    // the reload takes it out.
    let yaml = |away_block: &str| {
        format!(
            "admin: {{ token: \"{ADMIN_TOKEN}\" }}\n\
             destinations:\n{away_block}  other: {{ url: \"{}\" }}\n\
             routes:\n  both:\n    to: [{}other]\n",
            other.url("/in"),
            if away_block.is_empty() { "" } else { "away, " },
        )
    };
    let with_away = |paused: bool| {
        format!(
            "  away: {{ url: \"{}\", paused: {paused} }}\n",
            away.url("/in")
        )
    };
    let gw = Arc::new(TestGateway::spawn(&yaml(&with_away(true))).await);
    post_at_once(&gw, "both", WAITING).await;
    other.wait_for(WAITING, Duration::from_secs(10)).await;

    gw.reload_with(&yaml("")).await;
    // Claimed now that it is not paused, and postponed: missing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut postponed = 0;
        for id in events(&gw, "pending").await {
            let event = gw.admin_get(&format!("/admin/events/{id}")).await;
            let text = event["deliveries"].to_string();
            if text.contains("is not configured; postponed") {
                postponed += 1;
            }
        }
        if postponed == WAITING {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{postponed} of {WAITING} postponed as missing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let back = Instant::now();
    gw.reload_with(&yaml(&with_away(false))).await;
    away.wait_for(WAITING, Duration::from_secs(10)).await;
    assert!(
        back.elapsed() < Duration::from_secs(3),
        "the waiting deliveries came {:?} after the reload brought `away` back",
        back.elapsed()
    );
    let copies = copies(&away);
    assert_eq!(copies.len(), WAITING, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

/// `rate:` spaces the request starts to a destination however many
/// deliveries wait for it, counts no attempt for a delivery that waited
/// its turn in the store, and holds up no other destination.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_spaces_a_destinations_requests_and_holds_up_no_other() {
    const PACED: usize = 12;
    const OTHER: usize = 20;
    // 5/s: 200 ms apart. Twelve then take 2.2 s: more than an attempt may
    // wait for its slot (1 s), so some are postponed and claimed again.
    let paced = MockReceiver::start().await;
    let other = MockReceiver::start().await;
    let gw = Arc::new(
        TestGateway::spawn(&format!(
            r#"
admin: {{ token: "{ADMIN_TOKEN}" }}
destinations:
  paced: {{ url: "{}", rate: 5/s, concurrency: 8 }}
  other: {{ url: "{}" }}
routes:
  slow:
    to: [paced]
  fast:
    to: [other]
"#,
            paced.url("/in"),
            other.url("/in")
        ))
        .await,
    );
    let sent = Instant::now();
    post_at_once(&gw, "slow", PACED).await;
    post_at_once(&gw, "fast", OTHER).await;
    other.wait_for(OTHER, Duration::from_secs(20)).await;
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the unpaced destination waited behind the paced one: {:?}",
        sent.elapsed()
    );
    let got = paced.wait_for(PACED, Duration::from_secs(30)).await;
    assert_eq!(got.len(), PACED);
    let mut at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    at.sort();
    // Slots are 200 ms apart; a request may reach the receiver a little
    // after its slot, never a slot early.
    let closest = at.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest >= Duration::from_millis(150),
        "two requests {closest:?} apart at 5/s"
    );
    assert!(
        at[PACED - 1] - at[0] >= Duration::from_millis(200 * (PACED as u64 - 1) - 100),
        "{PACED} requests in {:?} at 5/s",
        at[PACED - 1] - at[0]
    );
    // Each delivered once, with one attempt: waiting for a slot is not one.
    let copies = copies(&paced);
    assert_eq!(copies.len(), PACED, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(&gw, "pending").await.is_empty() {
        assert!(Instant::now() < deadline, "events still pending after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in copies.keys() {
        let event = gw.admin_get(&format!("/admin/events/{id}")).await;
        let attempts = event["deliveries"][0]["attempts"]
            .as_array()
            .unwrap_or_else(|| panic!("no attempts: {event}"));
        assert_eq!(attempts.len(), 1, "{event}");
    }
}
