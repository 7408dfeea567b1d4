//! Micro benchmarks of the plugin host (`cargo bench -p hookgate`):
//!
//! - `driver/*`: what driving an async call costs on its own, to read the
//!   other numbers against;
//! - `stage/*`: one stage call on a fresh instance (new `Store`,
//!   instantiate from the pool, call, tear down): the no-op test component
//!   (pure host overhead), the built-in `github` verifier on a correctly
//!   signed 2 KB and 25 KB body (so the HMAC really runs), and the
//!   `github-teams` transform on a real `issues` event;
//! - `chain/*`: one request's whole verify → transform → route chain through
//!   `Snapshot::process`, on a snapshot compiled from a config.
//!
//! Async calls are driven with criterion's `to_async` on a current-thread
//! tokio runtime: one `block_on` per batch of iterations rather than one per
//! iteration. `stage/noop_verify/block_on_per_iter` keeps the alternative
//! visible; see `driver/*` for the difference.
//!
//! Under `cargo test` (`test = true`) criterion runs each benchmark once, so
//! the code is exercised without being timed.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use hookgate::metrics::Metrics;
use hookgate::pipeline::{self, Outcome};
use hookgate::plugin::{
    CallContext, InboundRequest, LoadedPlugin, Message, PluginConfig, PluginEngine, PluginLimits,
    PluginSource, Verdict, builtin,
};

#[path = "../bench/src/payload.rs"]
mod payload;

/// Body sizes of the `github` verify benchmarks: a small event and a large
/// one (a push with many commits, a long issue).
const LARGE_BODY: usize = 25 * 1024;

/// The chain benchmark's config: GitHub verify, Teams card, event router.
const CHAIN_CONFIG: &str = r#"
destinations:
  sink: { kind: log }
  triage: { kind: log }
routes:
  github:
    verify: { plugin: github, with: { secret: bench-secret } }
    transform: [ { plugin: github-teams, with: { card: message-card } } ]
    route: { plugin: by-event, with: { rules: [ { event: issues, to: [triage] } ] } }
    to: [sink]
"#;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn load(rt: &Runtime, engine: &PluginEngine, name: &str, wasm: Vec<u8>) -> LoadedPlugin {
    rt.block_on(engine.load(name, wasm, PluginSource::Builtin))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn builtin_plugin(rt: &Runtime, engine: &PluginEngine, name: &str) -> LoadedPlugin {
    let wasm = builtin::get(name).unwrap_or_else(|| panic!("no built-in plugin {name}"));
    load(rt, engine, name, wasm.to_vec())
}

fn test_component(rt: &Runtime, engine: &PluginEngine, name: &str) -> LoadedPlugin {
    let path = std::path::Path::new(env!("HOOKGATE_TEST_COMPONENTS")).join(format!("{name}.wasm"));
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    load(rt, engine, name, wasm)
}

fn ctx(plugin: &LoadedPlugin, with: serde_json::Value) -> CallContext {
    let serde_json::Value::Object(with) = with else {
        panic!("`with` is an object")
    };
    CallContext {
        plugin: plugin.name().clone(),
        route: Arc::from("bench"),
        config: Arc::new(PluginConfig::new(Some(&with))),
    }
}

/// A signed GitHub `issues` delivery, as ingress hands it to the pipeline.
fn github_request(body: Vec<u8>) -> InboundRequest {
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-github-event", "issues".to_owned()),
        (
            "x-github-delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
        ),
        ("x-hub-signature-256", payload::github_signature(&body)),
    ];
    InboundRequest {
        method: "POST".into(),
        path: "/hooks/github".into(),
        query: String::new(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body: Bytes::from(body),
        route: "github".into(),
        received_at_ms: hookgate::clock::now_ms(),
    }
}

fn driver(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("driver");
    group.bench_function("empty/to_async", |b| {
        b.to_async(&rt).iter(|| async { black_box(1) });
    });
    group.bench_function("empty/block_on_per_iter", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }));
    });
    group.finish();
}

fn stage(c: &mut Criterion) {
    let rt = runtime();
    let engine = PluginEngine::new(PluginLimits::default()).expect("plugin engine");
    let mut group = c.benchmark_group("stage");

    // The no-op component: every stage at the SDK default, so what is left
    // is the host: store, instantiate, lift/lower, teardown.
    let noop = test_component(&rt, &engine, "noop");
    let noop_ctx = ctx(&noop, serde_json::json!({}));
    let small = payload::issue_opened_small();
    let req = github_request(small.clone());
    assert!(matches!(
        rt.block_on(noop.verify(&noop_ctx, &req)),
        Ok(Verdict::Accept { .. })
    ));
    group.bench_function("noop_verify/to_async", |b| {
        b.to_async(&rt).iter(|| noop.verify(&noop_ctx, &req));
    });
    group.bench_function("noop_verify/block_on_per_iter", |b| {
        b.iter(|| rt.block_on(noop.verify(&noop_ctx, &req)));
    });

    // `github` on correctly signed bodies: the HMAC over the whole body runs.
    let github = builtin_plugin(&rt, &engine, "github");
    let github_ctx = ctx(&github, serde_json::json!({ "secret": payload::SECRET }));
    for (label, body) in [
        ("2KB", small),
        ("25KB", payload::issue_opened_padded(LARGE_BODY)),
    ] {
        let req = github_request(body);
        assert!(
            matches!(
                rt.block_on(github.verify(&github_ctx, &req)),
                Ok(Verdict::Accept { .. })
            ),
            "the {label} body must verify, or the benchmark skips the HMAC"
        );
        group.throughput(Throughput::Bytes(req.body.len() as u64));
        group.bench_function(format!("github_verify/{label}"), |b| {
            b.to_async(&rt).iter(|| github.verify(&github_ctx, &req));
        });
    }

    // `github-teams` on a whole real event.
    let teams = builtin_plugin(&rt, &engine, "github-teams");
    let teams_ctx = ctx(&teams, serde_json::json!({ "card": "message-card" }));
    let event = serde_json::to_vec(&payload::issue_opened()).expect("JSON");
    let msg = Message {
        id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
        event_type: Some("issues".into()),
        content_type: "application/json".into(),
        headers: vec![("x-github-event".into(), "issues".into())],
        body: Bytes::from(event),
    };
    let cards = rt
        .block_on(teams.transform(&teams_ctx, &msg))
        .expect("github-teams transforms an issues event");
    assert_eq!(cards.len(), 1);
    group.throughput(Throughput::Bytes(msg.body.len() as u64));
    group.bench_function("github_teams_transform/issues_opened", |b| {
        b.to_async(&rt).iter(|| teams.transform(&teams_ctx, &msg));
    });
    group.finish();
}

fn chain(c: &mut Criterion) {
    let rt = runtime();
    let config = hookgate::config::from_str(CHAIN_CONFIG, &|_| None).expect("valid config");
    let (engine, snapshot) = rt.block_on(async {
        let engine = PluginEngine::new(hookgate::plugin_limits(&config)).expect("plugin engine");
        let snapshot = pipeline::compile(&config, &engine, None, 1)
            .await
            .expect("config compiles");
        (engine, snapshot)
    });
    let route = snapshot.routes["github"].clone();
    let metrics = Metrics::default();
    let req = github_request(payload::issue_opened_small());
    match rt.block_on(snapshot.process(&route, &req, &metrics)) {
        Ok(Outcome::Accepted { routed, .. }) => {
            assert_eq!(routed.len(), 1);
            assert_eq!(&*routed[0].destinations[0].name, "triage");
        }
        other => panic!("the chain must accept the request: {other:?}"),
    }
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Bytes(req.body.len() as u64));
    group.bench_function("process/github+github-teams+by-event", |b| {
        b.to_async(&rt)
            .iter(|| snapshot.process(&route, &req, &metrics));
    });
    group.finish();
    drop(engine);
}

criterion_group!(benches, driver, stage, chain);
criterion_main!(benches);
