//! Plugins in Rust, JavaScript and Python (`cargo bench -p hookgate --bench
//! guests`): the examples under `gateway/examples/plugins/`, built with
//! `hookgate plugin build` first (an example that is not built is skipped,
//! with the command that builds it).
//!
//! For each it prints the component's size and how long the gateway takes
//! to compile and load it (no cache, once), then times one stage call on a
//! fresh instance with criterion (`guest/<example>`: new `Store`,
//! instantiate from the pool, call, tear down; the same path a webhook
//! takes), on the example's own fixture:
//!
//! - `rust-router`: route one message by its event type;
//! - `js-verifier`: a timestamped HMAC-SHA256 over a 50-byte body;
//! - `python-transform`: a 13 KB GitHub `issues` event into a chat message.
//!
//! The work differs, so read the numbers as the cost of each runtime's
//! call, not as a race. Not run by `cargo test` (building the examples
//! needs npm and componentize-py).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;

use hookgate::authoring::fixture::FixtureConfig;
use hookgate::plugin::{
    CallContext, PluginConfig, PluginEngine, PluginLimits, PluginSource, Stage,
};

/// (example, stage, fixture).
const EXAMPLES: &[(&str, Stage, &str)] = &[
    ("rust-router", Stage::Route, "billing.yaml"),
    ("js-verifier", Stage::Verify, "signed.yaml"),
    ("python-transform", Stage::Transform, "issue-opened.yaml"),
];

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // What the examples' manifests and routes give them.
    let limits = PluginLimits {
        timeout: std::time::Duration::from_secs(1),
        memory: 64 << 20,
    };
    let engine = PluginEngine::new(limits).expect("engine");
    let mut c = Criterion::default()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(5))
        .configure_from_args();

    for (name, stage, fixture) in EXAMPLES {
        let dir =
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plugins")).join(name);
        let wasm = dir.join("target").join(format!("{name}.wasm"));
        let Ok(bytes) = std::fs::read(&wasm) else {
            eprintln!(
                "guest/{name}: skipped, not built: cargo run -p hookgate -- plugin build {}",
                dir.display()
            );
            continue;
        };
        let size = bytes.len();
        let started = Instant::now();
        let plugin = rt
            .block_on(engine.load(name, bytes, PluginSource::File(wasm.display().to_string())))
            .expect("the example loads");
        let load = started.elapsed();
        eprintln!(
            "guest/{name}: component {:.2} MB, compiled and loaded in {:.2} s",
            size as f64 / 1e6,
            load.as_secs_f64()
        );

        let fixtures = dir.join("fixtures");
        let fx = FixtureConfig::read(&fixtures.join(fixture)).expect("fixture");
        let ctx = CallContext {
            plugin: plugin.name().clone(),
            route: Arc::from("bench"),
            config: Arc::new(PluginConfig::new(Some(&fx.with))),
            limits,
            http: None,
        };
        let id = format!("guest/{name}");
        match stage {
            Stage::Verify => {
                let req = fx.inbound(&fixtures).expect("request");
                c.bench_function(&id, |b| {
                    b.to_async(&rt)
                        .iter(|| async { plugin.verify(&ctx, &req).await.expect("verify") })
                });
            }
            Stage::Transform => {
                let msg = fx.message(&fixtures).expect("message");
                c.bench_function(&id, |b| {
                    b.to_async(&rt)
                        .iter(|| async { plugin.transform(&ctx, &msg).await.expect("transform") })
                });
            }
            Stage::Route => {
                let msg = fx.message(&fixtures).expect("message");
                c.bench_function(&id, |b| {
                    b.to_async(&rt).iter(|| async {
                        plugin.route(&ctx, &msg, &fx.defaults).await.expect("route")
                    })
                });
            }
        }
    }
    c.final_summary();
}
