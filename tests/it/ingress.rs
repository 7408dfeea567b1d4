//! The HTTP edge: limits, unknown routes, health and metrics.

use crate::support::gateway::TestGateway;

const ROUTES: &str = r#"
destinations:
  console: { kind: log }
routes:
  open:
    to: [console]
  small:
    max_body_size: 64
    to: [console]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_is_404() {
    let gw = TestGateway::spawn(ROUTES).await;
    let resp = gw.post("nope", &[], b"{}").await;
    assert_eq!(resp.status(), 404);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "unknown_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_is_413() {
    let gw = TestGateway::spawn(ROUTES).await;
    assert_eq!(gw.post("small", &[], &[b'x'; 64]).await.status(), 202);
    assert_eq!(gw.post("small", &[], &[b'x'; 65]).await.status(), 413);
    // Default limit is 1 MiB.
    assert_eq!(
        gw.post("open", &[], &vec![b'x'; (1 << 20) + 1])
            .await
            .status(),
        413
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_without_content_length_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::spawn(ROUTES).await;
    // A chunked body has no Content-Length: the limit must be enforced
    // while reading.
    let addr = gw.url("").trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = b"POST /hooks/small HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"a\r\nyyyyyyyyyy\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&req).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_are_served() {
    let gw = TestGateway::spawn(ROUTES).await;
    assert_eq!(gw.post("open", &[], b"{}").await.status(), 202);
    for name in ["no-such-route", "nor-this-one"] {
        assert_eq!(gw.post(name, &[], b"{}").await.status(), 404);
    }
    let health: serde_json::Value = gw
        .client()
        .get(gw.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    // Delivery happens after the answer: wait for it to be counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let m = gw.metrics().await;
        if m.contains("hookgate_deliveries_total") || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains(r#"hookgate_requests_total{route="open",status="202"} 1"#),
        "{metrics}"
    );
    // Unknown route names never become label values: both count under one.
    assert!(
        metrics.contains(r#"hookgate_requests_total{route="_unknown",status="404"} 2"#),
        "{metrics}"
    );
    assert!(!metrics.contains("no-such-route"), "{metrics}");
    assert!(metrics.contains("hookgate_deliveries_total"), "{metrics}");
}

/// A client that gives up while its webhook's insert waits for the writer:
/// the commit still happens, with the delivery claimed in it, and that
/// claim still reaches the dispatcher. Before, it was only sent when its
/// lease ran out (20 s here).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_gives_up_mid_insert_does_not_delay_its_delivery() {
    use crate::support::receiver::MockReceiver;
    use std::time::{Duration, Instant};

    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&format!(
        "delivery: {{ lease: 20s }}\ndestinations:\n  sink: {{ url: \"{}\" }}\nroutes:\n  r:\n    to: [sink]\n",
        sink.url("/in")
    ))
    .await;
    // Hold SQLite's write lock, as a long commit (a checkpoint, a slow
    // disk) would: the writer's next transaction waits for it.
    let db = gw.dir().join("data").join("hookgate.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    #[expect(clippy::disallowed_methods, reason = "a client that gives up")]
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let r = impatient.post(gw.url("/hooks/r")).body("x").send().await;
    assert!(r.is_err(), "the client gave up: {r:?}");
    // The lock goes; the writer commits the event and its claim.
    conn.execute_batch("ROLLBACK").unwrap();
    let released = Instant::now();
    let deadline = released + Duration::from_secs(25);
    while sink.count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = released.elapsed();
    assert_eq!(sink.count(), 1, "delivered at all");
    assert!(
        took < Duration::from_secs(3),
        "delivered {took:?} after the writer could commit it (lease 20 s)"
    );
}

/// The gateway's start-up line.
fn start_line(gw: &TestGateway) -> String {
    let log = gw.log();
    log.lines()
        .find(|l| l.contains("hookgate listening"))
        .unwrap_or_else(|| panic!("no start-up line in the log:\n{log}"))
        .to_owned()
}

/// The runtime's scheduler as the gateway's start-up line reports it.
fn scheduler_logged(gw: &TestGateway) -> String {
    let line = start_line(gw);
    line.split("scheduler=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("the start-up line names no scheduler: {line}"))
}

/// The runtime's workers as the gateway's start-up line reports them.
fn workers_logged(gw: &TestGateway) -> usize {
    let line = start_line(gw);
    let rest = line
        .split("workers=")
        .nth(1)
        .unwrap_or_else(|| panic!("the start-up line names no workers: {line}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("workers is not a number: {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_leaves_a_core_to_the_store_writer_unless_told_otherwise() {
    const ROUTE: &str = "routes:\n  r:\n    to: []\n";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gw = TestGateway::spawn(ROUTE).await;
    let default = cores.saturating_sub(1).max(1);
    assert_eq!(workers_logged(&gw), default);
    let expected = if default == 1 {
        "current-thread"
    } else {
        "multi-thread"
    };
    assert_eq!(scheduler_logged(&gw), expected);
    let gw = TestGateway::spawn_env(ROUTE, |_| {}, &[("TOKIO_WORKER_THREADS", "3")]).await;
    assert_eq!(workers_logged(&gw), 3);
    assert_eq!(scheduler_logged(&gw), "multi-thread");
}

/// One worker is the current-thread scheduler (`main.rs`), and the
/// gateway serves on it: a route answers.
#[tokio::test(flavor = "multi_thread")]
async fn one_worker_is_the_current_thread_scheduler_and_serves() {
    const ROUTE: &str = "routes:\n  r:\n    to: []\n";
    let gw = TestGateway::spawn_env(ROUTE, |_| {}, &[("TOKIO_WORKER_THREADS", "1")]).await;
    assert_eq!(workers_logged(&gw), 1);
    assert_eq!(scheduler_logged(&gw), "current-thread");
    assert_eq!(gw.post("r", &[], b"{}").await.status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_to_a_file_has_no_color_codes() {
    let gw = TestGateway::spawn("routes:\n  r:\n    to: []\n").await;
    let log = gw.log();
    assert!(log.contains("hookgate listening"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a log that is not a terminal:\n{log:?}"
    );
}
