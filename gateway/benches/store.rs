//! Store micro benchmarks (criterion): what one accepted webhook costs the
//! SQLite engine on the delivery path, without HTTP or plugins around it.
//!
//! `store/ingest+deliver/64`: 64 concurrent webhooks (as the load benchmark's
//! 64 connections send them), each inserted durably with its delivery
//! claimed in the insert's transaction, then the attempt recorded as
//! delivered, as the dispatcher does after the destination answers 200. The
//! event is shaped like the load benchmark's: a GitHub delivery id (a
//! version-1 UUID of now, as GitHub's: not a random key, see
//! `delivery_id`), the
//! redacted inbound headers, one ~2.5 KB Teams card message.
//!
//! `store/ingest/64`: the same inserts with no destination (what the
//! no-delivery rows of `hookgate-bench` store).
//!
//! `store/claim-past-backlog/N`: a poll that skips a full lane (a hanging
//! destination) with N of its deliveries due in front of one due delivery
//! to another destination: the claim takes that one, then hands it back.
//! The claim's cost should not grow with N (1,000 against 100,000).
//!
//! Measured in the process's CPU time (every thread: tokio workers and the
//! store's writer), not wall time: on a small shared machine wall time is
//! mostly fsync latency and the neighbours; CPU per webhook is what limits
//! throughput. Throughput is webhooks per CPU second.
//!
//! Run: `cargo bench -p hookgate --bench store`. Compare numbers only
//! within one run or against a baseline saved on the same machine
//! (`-- --save-baseline NAME`, then `-- --baseline NAME`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use hookgate::plugin::Message;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::stats::InboundView;
use hookgate::store::{
    AttemptRecord, ClaimNew, InsertOptions, Inserted, NewEvent, NewMessage, NextState, Store,
};

#[path = "plugin/cpu_time.rs"]
mod cpu_time;

const CONCURRENCY: usize = 64;

fn card() -> Bytes {
    // A Teams card of the size github-teams makes from the load
    // benchmark's `issues` event.
    let text = "x".repeat(2_000);
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                "content": {"type": "AdaptiveCard", "version": "1.4",
                    "body": [{"type": "TextBlock", "text": text}]}}]
        }))
        .expect("json"),
    )
}

/// A provider id as GitHub's `X-GitHub-Delivery`: a version-1 UUID of the
/// time it is made, with a random clock sequence and node (62 random bits:
/// two ids of one tick do not meet). Its text starts with the timestamp's
/// low 32 bits, so ids made close together sort side by side and a
/// commit's new dedup keys share a leaf or two, where random (version-4)
/// ids, as this bench used before, put each in a leaf of its own.
fn delivery_id() -> String {
    // 100 ns ticks from the Gregorian epoch (1582-10-15) to the Unix one.
    const GREGORIAN_TO_UNIX_TICKS: u64 = 0x01b2_1dd2_1381_4000;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let tick = (since_unix.as_nanos() / 100) as u64 + GREGORIAN_TO_UNIX_TICKS;
    let random = uuid::Uuid::new_v4().into_bytes();
    let node: [u8; 6] = random[..6].try_into().expect("six bytes");
    let clock_seq = u16::from_be_bytes([random[6], random[7]]) & 0x3fff;
    uuid::Builder::from_gregorian_timestamp(tick, clock_seq, &node)
        .into_uuid()
        .to_string()
}

fn event(body: &Bytes, destination: Option<&str>) -> NewEvent {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let source = delivery_id();
    NewEvent {
        id: format!("evt_{id}"),
        route: "github".into(),
        source_id: Some(source.clone()),
        received_at_ms: hookgate::clock::now_ms(),
        messages: vec![NewMessage {
            message: Message {
                id: Some(source),
                event_type: Some("issues".into()),
                content_type: "application/json".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.clone(),
            },
            destinations: destination.map(|d| vec![d.to_owned()]).unwrap_or_default(),
        }],
        fanout: Vec::new(),
        inbound: Some(InboundView {
            method: "POST".into(),
            path: "/hooks/github".into(),
            headers: [
                ("host", "127.0.0.1:8080"),
                ("content-type", "application/json"),
                ("user-agent", "GitHub-Hookshot/hookgate-bench"),
                ("x-github-event", "issues"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-hub-signature-256", "[redacted]"),
                ("content-length", "2264"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        }),
    }
}

async fn one(store: Arc<SqliteStore>, body: Bytes, deliver: bool) {
    let opts = InsertOptions {
        dedup_window: Duration::from_secs(86_400),
        claim: deliver.then(|| ClaimNew {
            lease: Duration::from_secs(60),
            destinations: vec!["sink".into()],
            subscribers: false,
            full: Vec::new(),
            held: Vec::new(),
        }),
    };
    let inserted = store
        .insert(event(&body, deliver.then_some("sink")), opts)
        .await
        .expect("insert");
    let Inserted::New { claimed, .. } = inserted else {
        panic!("not a duplicate");
    };
    for d in claimed {
        store
            .record(AttemptRecord {
                delivery_id: d.id,
                event_id: d.event_id.clone(),
                lease: d.lease,
                attempted_at_ms: hookgate::clock::now_ms(),
                status: Some(200),
                latency_ms: 1,
                error: None,
                response_excerpt: Some("ok".into()),
                next: NextState::Delivered,
            })
            .await
            .expect("record");
    }
}

/// A store with `backlog` due deliveries to `hang` (never claimed), then
/// one due delivery to `ok`.
async fn with_backlog(dir: &std::path::Path, backlog: usize, body: &Bytes) -> Arc<SqliteStore> {
    const PER_EVENT: usize = 1_000;
    let store = Arc::new(SqliteStore::open(dir).expect("open the store"));
    let opts = InsertOptions {
        dedup_window: Duration::from_secs(86_400),
        claim: None,
    };
    for _ in 0..backlog.div_ceil(PER_EVENT) {
        let mut e = event(body, Some("hang"));
        let m = e.messages.pop().expect("one message");
        e.messages = vec![m; PER_EVENT.min(backlog)];
        e.source_id = None;
        store.insert(e, opts.clone()).await.expect("insert");
    }
    let mut e = event(body, Some("ok"));
    e.source_id = None;
    store.insert(e, opts).await.expect("insert");
    store
}

fn store_benches<M: Measurement>(c: &mut Criterion<M>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open the store"));

    let body = card();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, deliver) in [("ingest+deliver", true), ("ingest", false)] {
        group.bench_function(format!("{name}/{CONCURRENCY}"), |b| {
            b.to_async(&rt).iter(|| {
                let (store, body) = (store.clone(), body.clone());
                async move {
                    let tasks: Vec<_> = (0..CONCURRENCY)
                        .map(|_| tokio::spawn(one(store.clone(), body.clone(), deliver)))
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    for backlog in [1_000, 100_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = rt.block_on(with_backlog(dir.path(), backlog, &body));
        group.bench_function(format!("claim-past-backlog/{backlog}"), |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                async move {
                    let got = store
                        .claim_due(64, Duration::from_secs(60), vec!["hang".into()])
                        .await
                        .expect("claim");
                    assert_eq!(got.len(), 1, "the one due behind the backlog");
                    assert!(
                        store
                            .release(got[0].id, got[0].lease)
                            .await
                            .expect("release")
                    );
                }
            });
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .with_measurement(cpu_time::CpuTime::process())
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    store_benches(&mut c);
    c.final_summary();
}
