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
//!   `Snapshot::process`, on a snapshot compiled from a config;
//! - `cpu/*`: the no-op call, the `github` 2 KB verify, the Teams transform
//!   and the chain again, and the three stage calls on a warm instance
//!   (`cpu/warm/*`, as a route's calls run), measured in the thread's
//!   CPU time rather than wall time (see `plugin/cpu_time.rs`): on a small
//!   shared machine that is the number that does not depend on the
//!   neighbours.
//!
//! Async calls are driven with criterion's `to_async` on a current-thread
//! tokio runtime: one `block_on` per batch of iterations, where a
//! `block_on` per iteration adds its own cost to every call (compare
//! `driver/empty/*` and `stage/noop_verify/*`).
//!
//! Under `cargo test` (`test = true`) criterion runs each benchmark once,
//! untimed, so the code is exercised without being measured.

#[path = "plugin/cpu_time.rs"]
mod cpu_time;

/// The allocator the `hookgate` binary runs with (`src/main.rs`): the
/// numbers are then what a call costs in the gateway, not under glibc's
/// malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use tokio::runtime::Runtime;

use hookgate::metrics::Metrics;
use hookgate::pipeline::{self, CompiledRoute, Outcome, Snapshot};
use hookgate::plugin::{
    CallContext, InboundRequest, LoadedPlugin, Message, PluginConfig, PluginEngine, PluginLimits,
    PluginSource, Verdict, builtin,
};

#[path = "../bench/src/payload.rs"]
mod payload;

/// Body size of the large `github` verify benchmark (a push with many
/// commits, a long issue); the small one is the load benchmark's 2 KB event.
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

/// A plugin with its `with:` block.
struct Bound {
    plugin: LoadedPlugin,
    /// Every call on a fresh instance.
    ctx: CallContext,
    /// Calls on the use's warm instances, as a route's calls run.
    warm: CallContext,
}

/// Everything the benchmarks call, compiled once.
struct Fixture {
    rt: Runtime,
    noop: Bound,
    github: Bound,
    teams: Bound,
    /// The 2 KB signed request (the load benchmark's payload).
    small: InboundRequest,
    /// The same event padded to 25 KB, signed.
    large: InboundRequest,
    /// A whole real `issues` event as the transform sees it.
    issue: Message,
    snapshot: Snapshot,
    route: Arc<CompiledRoute>,
    metrics: Metrics,
    // Last: the plugins above keep the engine alive anyway.
    _engine: PluginEngine,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let engine = PluginEngine::new(PluginLimits::default()).expect("plugin engine");
        let load = |name: &str, wasm: Vec<u8>, with: serde_json::Value| {
            let plugin = rt
                .block_on(engine.load(name, wasm, PluginSource::Builtin))
                .unwrap_or_else(|e| panic!("loading {name}: {e}"));
            let serde_json::Value::Object(with) = with else {
                panic!("`with` is an object")
            };
            let ctx = CallContext {
                plugin: plugin.name().clone(),
                route: Arc::from("bench"),
                config: Arc::new(PluginConfig::single_use(Some(&with))),
                limits: PluginLimits::default(),
                http: None,
            };
            let warm = CallContext {
                config: Arc::new(PluginConfig::new(Some(&with))),
                ..ctx.clone()
            };
            Bound { plugin, ctx, warm }
        };
        let builtin = |name: &str| {
            builtin::get(name)
                .unwrap_or_else(|| panic!("no built-in plugin {name}"))
                .to_vec()
        };
        let noop_path = std::path::Path::new(env!("HOOKGATE_TEST_COMPONENTS")).join("noop.wasm");
        let noop_wasm = std::fs::read(&noop_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", noop_path.display()));

        let config = hookgate::config::from_str(CHAIN_CONFIG, &|_| None).expect("valid config");
        let snapshot = rt
            .block_on(pipeline::compile(&config, &engine, None, 1))
            .expect("the chain config compiles");
        let route = snapshot.routes["github"].clone();

        Fixture {
            noop: load("noop", noop_wasm, serde_json::json!({})),
            github: load(
                "github",
                builtin("github"),
                serde_json::json!({ "secret": payload::SECRET }),
            ),
            teams: load(
                "github-teams",
                builtin("github-teams"),
                serde_json::json!({ "card": "message-card" }),
            ),
            small: github_request(payload::issue_opened_small()),
            large: github_request(payload::issue_opened_padded(LARGE_BODY)),
            issue: Message {
                id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
                event_type: Some("issues".into()),
                content_type: "application/json".into(),
                headers: vec![("x-github-event".into(), "issues".into())],
                body: Bytes::from(serde_json::to_vec(&payload::issue_opened()).expect("JSON")),
            },
            snapshot,
            route,
            metrics: Metrics::default(),
            rt,
            _engine: engine,
        }
    }

    /// Checks once, before timing, that each benchmark measures what it
    /// says: signatures verify (so the HMAC runs), the transform produces a
    /// card, the chain accepts and routes.
    fn check(&self) {
        let rt = &self.rt;
        for req in [&self.small, &self.large] {
            assert!(matches!(
                rt.block_on(self.noop.plugin.verify(&self.noop.ctx, req)),
                Ok(Verdict::Accept { .. })
            ));
            assert!(
                matches!(
                    rt.block_on(self.github.plugin.verify(&self.github.ctx, req)),
                    Ok(Verdict::Accept { .. })
                ),
                "a {}-byte body must verify, or the benchmark skips the HMAC",
                req.body.len()
            );
        }
        let cards = rt
            .block_on(self.teams.plugin.transform(&self.teams.ctx, &self.issue))
            .expect("github-teams transforms an issues event");
        assert_eq!(cards.len(), 1);
        match rt.block_on(self.process()) {
            Ok(Outcome::Accepted { routed, .. }) => {
                assert_eq!(routed.len(), 1);
                assert_eq!(&*routed[0].destinations[0].name, "triage");
            }
            other => panic!("the chain must accept the request: {other:?}"),
        }
    }

    async fn noop_verify(&self) -> Result<Verdict, hookgate::plugin::PluginError> {
        self.noop.plugin.verify(&self.noop.ctx, &self.small).await
    }

    async fn process(&self) -> Result<Outcome, pipeline::PipelineError> {
        self.snapshot
            .process(&self.route, &self.small, &self.metrics)
            .await
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

fn driver(c: &mut Criterion, f: &Fixture) {
    let rt = &f.rt;
    let mut group = c.benchmark_group("driver");
    group.bench_function("empty/to_async", |b| {
        b.to_async(rt).iter(|| async { black_box(1) });
    });
    group.bench_function("empty/block_on_per_iter", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }));
    });
    group.finish();
}

fn stage(c: &mut Criterion, f: &Fixture) {
    let rt = &f.rt;
    let mut group = c.benchmark_group("stage");
    group.bench_function("noop_verify/to_async", |b| {
        b.to_async(rt).iter(|| f.noop_verify());
    });
    group.bench_function("noop_verify/block_on_per_iter", |b| {
        b.iter(|| rt.block_on(f.noop_verify()));
    });
    for (label, req) in [("2KB", &f.small), ("25KB", &f.large)] {
        group.throughput(Throughput::Bytes(req.body.len() as u64));
        group.bench_function(format!("github_verify/{label}"), |b| {
            b.to_async(rt)
                .iter(|| f.github.plugin.verify(&f.github.ctx, req));
        });
    }
    group.throughput(Throughput::Bytes(f.issue.body.len() as u64));
    group.bench_function("github_teams_transform/issues_opened", |b| {
        b.to_async(rt)
            .iter(|| f.teams.plugin.transform(&f.teams.ctx, &f.issue));
    });
    group.finish();
}

fn chain(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Bytes(f.small.body.len() as u64));
    group.bench_function("process/github+github-teams+by-event", |b| {
        b.to_async(&f.rt).iter(|| f.process());
    });
    group.finish();
}

fn cpu<M: Measurement>(c: &mut Criterion<M>, f: &Fixture) {
    let mut group = c.benchmark_group("cpu");
    group.bench_function("stage/noop_verify", |b| {
        b.to_async(&f.rt).iter(|| f.noop_verify());
    });
    group.bench_function("stage/github_verify/2KB", |b| {
        b.to_async(&f.rt)
            .iter(|| f.github.plugin.verify(&f.github.ctx, &f.small));
    });
    group.bench_function("stage/github_teams_transform/issues_opened", |b| {
        b.to_async(&f.rt)
            .iter(|| f.teams.plugin.transform(&f.teams.ctx, &f.issue));
    });
    group.bench_function("chain/process/github+github-teams+by-event", |b| {
        b.to_async(&f.rt).iter(|| f.process());
    });
    group.bench_function("warm/noop_verify", |b| {
        b.to_async(&f.rt)
            .iter(|| f.noop.plugin.verify(&f.noop.warm, &f.small));
    });
    group.bench_function("warm/github_verify/2KB", |b| {
        b.to_async(&f.rt)
            .iter(|| f.github.plugin.verify(&f.github.warm, &f.small));
    });
    group.bench_function("warm/github_teams_transform/issues_opened", |b| {
        b.to_async(&f.rt)
            .iter(|| f.teams.plugin.transform(&f.teams.warm, &f.issue));
    });
    group.finish();
}

fn main() {
    let fixture = Fixture::new();
    fixture.check();
    let mut wall = Criterion::default().configure_from_args();
    driver(&mut wall, &fixture);
    stage(&mut wall, &fixture);
    chain(&mut wall, &fixture);
    let mut thread_cpu = Criterion::default()
        .with_measurement(cpu_time::CpuTime::thread())
        .configure_from_args();
    cpu(&mut thread_cpu, &fixture);
    wall.final_summary();
}
