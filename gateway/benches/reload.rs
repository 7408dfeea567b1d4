//! Reload latency: from writing a plugin file to the first request that
//! the new version serves. The test components `stamp-a` and `stamp-b`
//! answer `200 stamp-<version>`, so the client sees which one ran. A
//! gateway runs in-process (`hookgate::run`) on a loopback port-0 listener,
//! and one client sends signed requests back to back after each write.
//!
//! - `watch/cached`: the two versions alternate, both already in the
//!   on-disk plugin cache: file watch + debounce + read + link + swap.
//! - `watch/new`: each write is a build never seen before (a version plus
//!   a unique custom section), so Cranelift compiles it as well.
//! - `admin/new`: `plugins.watch: false`; the write is followed by
//!   `POST /admin/reload` (no debounce), then requests.
//!
//! `cargo bench -p hookgate --bench reload`. On the 2-core development
//! machine (shared with other builds), mean times were: `watch/cached`
//! 156 ms (the 150 ms debounce plus ~6 ms), `watch/new` 361 ms, and
//! `admin/new` 135 ms (mostly Cranelift compiling a 60 KB component).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-token-0123456789abcdef-0123";
/// A reload that takes longer than this is a bug, not a slow sample.
const GIVE_UP: Duration = Duration::from_secs(30);

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("HOOKGATE_TEST_COMPONENTS")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `bytes` plus a custom section holding `nonce`: the same plugin, but
/// bytes (and so a content hash) never seen before.
fn unique(mut bytes: Vec<u8>, nonce: u64) -> Vec<u8> {
    let name = b"bench-nonce";
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(payload.len()).unwrap()); // < 128: one LEB byte
    bytes.extend(payload);
    bytes
}

struct Gateway {
    base: String,
    plugin: PathBuf,
    client: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(rt: &Runtime, watch: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let plugin = plugins.join("stamp.wasm");
        std::fs::write(&plugin, component("stamp-a")).unwrap();
        let config_path = dir.path().join("hookgate.yaml");
        std::fs::write(
            &config_path,
            format!(
                r#"
listen: 127.0.0.1:0
data_dir: "{data}"
admin: {{ token: {TOKEN} }}
plugins: {{ dir: "{plugins}", watch: {watch} }}
destinations:
  console: {{ kind: log }}
routes:
  stamped:
    verify: {{ plugin: stamp, with: {{ secret: {SECRET} }} }}
    to: [console]
"#,
                data = dir.path().join("data").display(),
                plugins = plugins.display(),
            ),
        )
        .unwrap();
        let config = hookgate::config::from_path(&config_path).expect("bench config");
        let shutdown = CancellationToken::new();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(hookgate::run(
            config,
            Some(config_path),
            listener,
            shutdown.clone(),
        ));
        let gw = Gateway {
            base,
            plugin,
            #[expect(
                clippy::disallowed_methods,
                reason = "the benchmark's own client, not delivery"
            )]
            client: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        };
        rt.block_on(gw.until_served_by("stamp-a"));
        gw
    }

    /// Sends signed requests until one is answered by `stamp`.
    async fn until_served_by(&self, stamp: &str) {
        let body = br#"{"bench":true}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let deadline = Instant::now() + GIVE_UP;
        loop {
            if let Ok(resp) = self
                .client
                .post(format!("{}/hooks/stamped", self.base))
                .header("x-hub-signature-256", &sig)
                .body(&body[..])
                .send()
                .await
                && resp.text().await.is_ok_and(|t| t == stamp)
            {
                return;
            }
            assert!(Instant::now() < deadline, "{stamp} never served");
        }
    }

    async fn admin_reload(&self) {
        let resp = self
            .client
            .post(format!("{}/admin/reload", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{:?}", resp.text().await);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Writes version `i` (b, a, b, … so it always differs from the one
/// serving) and returns how long until a request is answered by it.
async fn swap(gw: &Gateway, i: u64, new_build: bool, via_admin: bool) -> Duration {
    let stamp = if i.is_multiple_of(2) {
        "stamp-b"
    } else {
        "stamp-a"
    };
    let mut bytes = component(stamp);
    if new_build {
        bytes = unique(bytes, i);
    }
    let started = Instant::now();
    std::fs::write(&gw.plugin, bytes).unwrap();
    if via_admin {
        gw.admin_reload().await;
    }
    gw.until_served_by(stamp).await;
    started.elapsed()
}

fn reload(c: &mut Criterion) {
    // The gateway's log, when RUST_LOG asks for it.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("reload");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    for (name, watch, new_build) in [("watch/cached", true, false), ("watch/new", true, true)] {
        let gw = Gateway::start(&rt, watch);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += swap(&gw, i, new_build, false).await;
                        i += 1;
                    }
                    total
                })
            })
        });
    }

    let gw = Gateway::start(&rt, false);
    let mut i = 0;
    group.bench_function("admin/new", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += swap(&gw, i, true, true).await;
                    i += 1;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
