//! Hot reload: plugins and config change under traffic without a failed or
//! mixed request; anything invalid is refused, reported, and leaves the old
//! generation serving; a restart takes unchanged plugins from the cache.
//!
//! The test components `stamp-a` and `stamp-b` are two versions of one
//! plugin. A route uses the plugin as verifier and as transform, and every
//! delivery carries both stamps (`x-verify-stamp: stamp-a`,
//! `x-transform-stamp: a`), so a delivery shows which version ran each
//! stage.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::gateway::TestGateway;
use crate::support::plugin::{TestPlugin, TestRequest};
use crate::support::receiver::{MockReceiver, Received};
use crate::support::{sign, test_component};

const SECRET: &str = "reload-secret";
const TOKEN: &str = "admin-token-0123456789abcdef-0123";

/// A written plugin or config must be serving within this.
const SWAP_DEADLINE: Duration = Duration::from_secs(1);

/// For waits that are about eventually, not about speed.
const PATIENCE: Duration = Duration::from_secs(20);

/// Bounds on the traffic the load test sends (loopback only).
const MAX_REQUESTS: usize = 20_000;
const MAX_TRAFFIC_TIME: Duration = Duration::from_secs(120);

/// Config with route `stamped` running plugin `stamp` (a file in
/// `{dir}/plugins`) as verifier and transform, delivering to `sink`.
fn config(sink: &MockReceiver, tag: &str, extra_plugins: &str) -> String {
    format!(
        r#"
admin: {{ token: {TOKEN} }}
plugins: {{ dir: "{{dir}}/plugins"{extra_plugins} }}
destinations:
  sink: {{ url: "{}", timeout: 5s }}
routes:
  stamped:
    verify: {{ plugin: stamp, with: {{ secret: "{SECRET}" }} }}
    transform: [ {{ plugin: stamp, with: {{ tag: {tag} }} }} ]
    to: [sink]
"#,
        sink.url("/sink")
    )
}

/// Writes test component `component` as `plugins/NAME.wasm`, the way `cp`
/// does (truncate, then write in place).
fn install(dir: &Path, name: &str, component: &str) {
    write_plugin(dir, name, &test_component(component));
}

fn write_plugin(dir: &Path, name: &str, bytes: &[u8]) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join(format!("{name}.wasm")), bytes).unwrap();
}

/// POSTs a signed request to `stamped`; the status and the body (the
/// verifier's stamp).
async fn send(gw: &TestGateway, seq: usize) -> (u16, String) {
    let body = format!(r#"{{"seq":{seq}}}"#).into_bytes();
    let sig = sign::github(SECRET, &body);
    let seq = seq.to_string();
    let resp = gw
        .post(
            "stamped",
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", &sig),
                ("x-seq", &seq),
            ],
            &body,
        )
        .await;
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// (verify stamp, transform stamp, tag) of a delivery.
fn stamps(r: &Received) -> (String, String, String) {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    (h("x-verify-stamp"), h("x-transform-stamp"), h("x-tag"))
}

async fn admin(gw: &TestGateway, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = gw
        .client()
        .request(method, gw.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn status(gw: &TestGateway) -> Value {
    let (code, body) = admin(gw, reqwest::Method::GET, "/admin/status").await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls `check` until it holds, or panics after `timeout` with `what` and
/// the gateway's log.
async fn eventually(
    gw: &TestGateway,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                gw.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a request and waits for its delivery; returns the delivery.
async fn one_delivery(gw: &TestGateway, sink: &MockReceiver, seq: usize) -> Received {
    let before = sink.count();
    let (status, body) = send(gw, seq).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("stamp-"), "the verifier's reply: {body}");
    sink.wait_for(before + 1, PATIENCE).await;
    sink.received()
        .into_iter()
        .skip(before)
        .find(|r| r.header("x-seq") == Some(seq.to_string().as_str()))
        .expect("the request's delivery")
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_and_config_swap_under_traffic_without_a_failed_or_mixed_request() {
    let sink = MockReceiver::start().await;
    // Route `warm` names stamp-b too, so both versions' compiled code is in
    // the plugin cache from start-up: the 1 s bound below is then about
    // the reload path (watch, debounce, read, link, swap), not about how
    // fast Cranelift runs on a busy 2-core CI machine. The benchmark
    // (gateway/benches/reload.rs) measures a cold compile too.
    let yaml = format!(
        "{}  warm:\n    verify: {{ plugin: stamp-b, with: {{ secret: x }} }}\n    to: [sink]\n",
        config(&sink, "v1", "")
    );
    let gw = TestGateway::spawn_with(&yaml, |dir| {
        install(dir, "stamp", "stamp-a");
        install(dir, "stamp-b", "stamp-b");
    })
    .await;
    let first = one_delivery(&gw, &sink, 0).await;
    assert_eq!(stamps(&first), ("stamp-a".into(), "a".into(), "v1".into()));

    // Steady signed traffic from two clients until told to stop. Sequence
    // numbers are shared, so "sent after the write" is `seq >= next_seq`
    // read after the write.
    let stop = Arc::new(AtomicBool::new(false));
    let next_seq = Arc::new(AtomicUsize::new(1));
    let gw = Arc::new(gw);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (gw, stop, next_seq) = (gw.clone(), stop.clone(), next_seq.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_TRAFFIC_TIME {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    if seq >= MAX_REQUESTS {
                        break;
                    }
                    statuses.push(send(&gw, seq).await.0);
                }
                statuses
            })
        })
        .collect();

    // Waits until a request sent after the write is delivered with `want`
    // (verify stamp, transform stamp, tag). Deliveries of requests sent
    // before the write do not count: they may still be in the delivery
    // queue, stamped by the generation before the last one.
    let served_after_write = async |what: String, want: (String, String, String)| {
        let written = Instant::now();
        let mark = sink.count();
        let after = next_seq.load(Ordering::Relaxed);
        eventually(&gw, &what, SWAP_DEADLINE, async || {
            sink.received_from(mark).iter().any(|r| {
                let seq: usize = r.header("x-seq").unwrap().parse().unwrap();
                seq >= after && stamps(r) == want
            })
        })
        .await;
        eprintln!("{what} served after {:?}", written.elapsed());
    };

    // 20 plugin swaps, alternating b and a, and one config change half way.
    let mut tag = "v1";
    for swap in 0..20 {
        if swap == 10 {
            let path = gw.config_path();
            let yaml = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, yaml.replace("tag: v1", "tag: v2")).unwrap();
            tag = "v2";
            served_after_write(
                "the config change".into(),
                ("stamp-a".into(), "a".into(), tag.into()),
            )
            .await;
        }
        let version = if swap % 2 == 0 { "b" } else { "a" };
        install(gw.dir(), "stamp", &format!("stamp-{version}"));
        served_after_write(
            format!("swap {swap} to stamp-{version}"),
            (format!("stamp-{version}"), version.into(), tag.into()),
        )
        .await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for client in clients {
        let statuses = client.await.unwrap();
        sent += statuses.len();
        assert!(
            statuses.iter().all(|s| (200..300).contains(s)),
            "every request is answered 2xx: {:?}",
            statuses
                .iter()
                .filter(|s| !(200..300).contains(*s))
                .collect::<Vec<_>>()
        );
    }
    assert!(
        sent >= 20,
        "traffic flowed during the swaps ({sent} requests)"
    );
    eprintln!("{sent} requests during 20 plugin swaps and a config change, all 2xx");

    // Every accepted request is delivered once, and each ran one version.
    let received = sink.wait_for(sent + 1, PATIENCE).await;
    for r in &received {
        let (verify, transform, _) = stamps(r);
        assert_eq!(
            verify,
            format!("stamp-{transform}"),
            "request {:?} mixed two versions",
            r.header("x-seq")
        );
    }

    let status = status(&gw).await;
    let reload = &status["reload"];
    assert_eq!(
        reload["failures"], 0,
        "no write was read half-way: {status}"
    );
    assert!(status["generation"].as_u64().unwrap() >= 22, "{status}");
    assert_eq!(status["routes"]["stamped"]["verify"]["plugin"], "stamp");
    // The last swap (19) installed stamp-a.
    assert_eq!(status["plugins"]["stamp"]["version"], "1.0.0", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_plugin_and_an_invalid_config_leave_the_old_generation_serving() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn_with(&config(&sink, "v1", ""), |dir| {
        install(dir, "stamp", "stamp-a");
    })
    .await;
    let served_by_a = async |seq| {
        let r = one_delivery(&gw, &sink, seq).await;
        assert_eq!(stamps(&r), ("stamp-a".into(), "a".into(), "v1".into()));
    };
    served_by_a(1).await;
    let failures = async || status(&gw).await["reload"]["failures"].as_u64().unwrap();

    // Not WebAssembly at all.
    write_plugin(gw.dir(), "stamp", b"this is not wasm");
    eventually(
        &gw,
        "the corrupt plugin to be refused",
        PATIENCE,
        async || failures().await >= 1,
    )
    .await;
    served_by_a(2).await;

    // A component, but of another world: the empty component.
    write_plugin(gw.dir(), "stamp", b"\0asm\x0d\0\x01\0");
    eventually(
        &gw,
        "the foreign component to be refused",
        PATIENCE,
        async || failures().await >= 2,
    )
    .await;
    served_by_a(3).await;

    // An invalid config: a typo'd key.
    let config_path = gw.config_path();
    let yaml = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        yaml.replace("    to: [sink]", "    too: [sink]"),
    )
    .unwrap();
    eventually(
        &gw,
        "the invalid config to be refused",
        PATIENCE,
        async || failures().await >= 3,
    )
    .await;
    served_by_a(4).await;

    let status = status(&gw).await;
    assert_eq!(status["generation"], 1, "{status}");
    let errors = status["reload"]["recent_errors"].as_array().unwrap();
    let reported = |at: usize| {
        let e = &errors[at];
        assert_eq!(e["generation"], 1, "{e}");
        assert_eq!(e["trigger"], "watch", "{e}");
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
        (
            e["errors"][0]["path"].as_str().unwrap().to_owned(),
            e["errors"][0]["message"].as_str().unwrap().to_owned(),
        )
    };
    // Newest first.
    let (path, message) = reported(0);
    assert_eq!(path, "routes.stamped.too", "{status}");
    assert_eq!(message, "unknown key");
    assert_eq!(status["reload"]["last_error"], errors[0]);
    let (path, message) = reported(1);
    assert_eq!(path, "routes.stamped.verify.plugin");
    assert!(
        message.contains("does not fit the hookgate:plugin world"),
        "{message}"
    );
    let (path, message) = reported(2);
    assert_eq!(path, "routes.stamped.verify.plugin");
    assert!(
        message.contains("is not a valid WebAssembly component"),
        "{message}"
    );
    assert!(
        gw.log()
            .contains("reload refused, still serving generation 1")
    );

    // Asked for over the admin API, the refusal comes back with the reason.
    let (code, answer) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["error"], "reload_refused");
    assert_eq!(answer["generation"], 1);
    assert_eq!(answer["errors"][0]["path"], "routes.stamped.too");

    // Fixing both goes live.
    std::fs::write(&config_path, &yaml).unwrap();
    install(gw.dir(), "stamp", "stamp-b");
    let (code, answer) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["outcome"], "reloaded");
    let r = one_delivery(&gw, &sink, 5).await;
    assert_eq!(stamps(&r).1, "b");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_plugin_file_a_route_uses_is_refused() {
    // `github.wasm` overrides the built-in `github`. Deleting the file must
    // not silently switch the route to different code.
    let sink = MockReceiver::start().await;
    let yaml =
        config(&sink, "v1", "").replace("verify: { plugin: stamp,", "verify: { plugin: github,");
    let gw = TestGateway::spawn_with(&yaml, |dir| {
        install(dir, "github", "stamp-a");
        install(dir, "stamp", "stamp-a");
    })
    .await;
    std::fs::remove_file(gw.dir().join("plugins/github.wasm")).unwrap();
    let (code, answer) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["errors"][0]["path"], "routes.stamped.verify.plugin");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("github.wasm"),
        "{answer}"
    );
    let r = one_delivery(&gw, &sink, 1).await;
    assert_eq!(stamps(&r).0, "stamp-a", "the file's verifier still runs");
    let status = status(&gw).await;
    assert_eq!(status["plugins"]["github"]["source"]["kind"], "file");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_watching_sighup_and_the_admin_api_reload() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn_with(&config(&sink, "v1", ", watch: false"), |dir| {
        install(dir, "stamp", "stamp-a");
    })
    .await;
    assert_eq!(status(&gw).await["reload"]["watching"], false);

    install(gw.dir(), "stamp", "stamp-b");
    let (code, answer) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["outcome"], "reloaded");
    assert_eq!(
        answer["generation"], 2,
        "not reloaded by the write: {answer}"
    );
    assert_eq!(answer["plugins_loaded"], serde_json::json!(["stamp"]));
    assert_eq!(stamps(&one_delivery(&gw, &sink, 1).await).1, "b");

    // A changed listen address is kept, logged and reported.
    let path = gw.config_path();
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        yaml.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1"),
    )
    .unwrap();
    install(gw.dir(), "stamp", "stamp-a");
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(&gw, "the SIGHUP reload", PATIENCE, async || {
        status(&gw).await["generation"] == 3
    })
    .await;
    assert_eq!(stamps(&one_delivery(&gw, &sink, 2).await).1, "a");
    let status = status(&gw).await;
    assert_eq!(status["reload"]["last_reload"]["trigger"], "signal");
    let restart = status["reload"]["restart_required"][0].as_str().unwrap();
    assert!(
        restart.starts_with("listen changed to \"127.0.0.1:1\" but needs a restart"),
        "{status}"
    );
    assert!(gw.log().contains("WARN"), "logged at warn");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_unchanged_plugins_takes_them_from_the_cache() {
    let sink = MockReceiver::start().await;
    let mut gw = TestGateway::spawn_with(&config(&sink, "v1", ""), |dir| {
        install(dir, "stamp", "stamp-a");
    })
    .await;
    let cache = status(&gw).await["plugin_cache"].clone();
    assert_eq!(cache["misses"], 1, "compiled once: {cache}");
    assert_eq!(cache["hits"], 0, "{cache}");
    let dir = cache["dir"].as_str().unwrap().to_owned();
    assert!(dir.ends_with("data/plugin-cache"), "{dir}");
    // Compiled code only: wasmtime also keeps usage stats and lock files.
    let files = || {
        walk(&Path::new(&dir).join("modules"))
            .into_iter()
            .filter(|p| p.extension().is_none())
            .count()
    };
    let cached = files();
    assert!(cached > 0);

    gw.restart().await;
    let status = status(&gw).await;
    let cache = &status["plugin_cache"];
    assert_eq!(cache["hits"], 1, "{status}");
    assert_eq!(cache["misses"], 0, "nothing compiled: {status}");
    assert_eq!(files(), cached, "nothing new written");
    eprintln!(
        "stamp loaded in {} ms from the cache",
        status["plugins"]["stamp"]["load_ms"]
    );
    assert_eq!(stamps(&one_delivery(&gw, &sink, 1).await).1, "a");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Test component `stamp-a`: verifies the signature and stamps "a".
#[tokio::test(flavor = "multi_thread")]
pub async fn stamp_a() {
    check_stamp("stamp-a", "a", "1.0.0");
}

/// Test component `stamp-b`: the same plugin, stamping "b".
#[tokio::test(flavor = "multi_thread")]
pub async fn stamp_b() {
    check_stamp("stamp-b", "b", "2.0.0");
}

fn check_stamp(component: &str, stamp: &str, version: &str) {
    let p = TestPlugin::component(
        component,
        serde_json::json!({ "secret": SECRET, "tag": "t" }),
    );
    assert_eq!(p.loaded().version(), version);
    let body = br#"{"seq":1}"#;
    let signed =
        TestRequest::post(body.to_vec()).header("x-hub-signature-256", &sign::github(SECRET, body));
    match p.verify(&signed).unwrap() {
        hookgate::plugin::Verdict::Accept {
            event_type, reply, ..
        } => {
            assert_eq!(
                event_type.as_deref(),
                Some(format!("stamp-{stamp}").as_str())
            );
            let reply = reply.expect("a reply naming the version");
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, format!("stamp-{stamp}").as_bytes());
        }
        other => panic!("{other:?}"),
    }
    let forged = TestRequest::post(body.to_vec())
        .header("x-hub-signature-256", &sign::github("other", body));
    assert!(matches!(
        p.verify(&forged).unwrap(),
        hookgate::plugin::Verdict::Reject { status: 401, .. }
    ));
    let msg = hookgate::plugin::Message::json(Some("stamp-x"), &serde_json::json!({}));
    let out = p.transform(msg).unwrap();
    assert_eq!(out[0].header("x-verify-stamp"), Some("stamp-x"));
    assert_eq!(out[0].header("x-transform-stamp"), Some(stamp));
    assert_eq!(out[0].header("x-tag"), Some("t"));
}
