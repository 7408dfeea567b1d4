//! Plugins that loop, trap or hog memory fail only their own request, with
//! a 5xx inside the deadline, while other routes keep serving.
//!
//! Each test component under tests/components has its test here, under the
//! component's name (see `components.rs`).

use std::time::{Duration, Instant};

pub use crate::reload::{stamp_a, stamp_b};
use crate::support::gateway::TestGateway;
use crate::support::plugin::{TestPlugin, TestRequest};

/// Plugin deadline configured for these tests.
const DEADLINE: Duration = Duration::from_millis(200);
/// Slack for scheduling, process start and loopback HTTP on a busy 2-core
/// machine; the point is "bounded", not a benchmark.
const MARGIN: Duration = Duration::from_millis(1500);

async fn gateway_with(component: &str) -> TestGateway {
    let yaml = format!(
        r#"
plugins: {{ dir: "{{dir}}/plugins", timeout: 200ms, memory: 16MiB }}
destinations:
  console: {{ kind: log }}
routes:
  bad:
    verify: {{ plugin: {component} }}
    to: [console]
  good:
    verify: {{ plugin: noop }}
    to: [console]
"#
    );
    let component = component.to_owned();
    TestGateway::spawn_with(&yaml, move |dir| {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in [component.as_str(), "noop"] {
            std::fs::write(
                plugins.join(format!("{name}.wasm")),
                crate::support::test_component(name),
            )
            .unwrap();
        }
    })
    .await
}

/// Sends a request to the bad route and, at the same time, requests to the
/// good route; checks both outcomes and returns the bad one's JSON.
async fn bad_route_fails_alone(gw: &TestGateway, expected_error: &str) -> serde_json::Value {
    let started = Instant::now();
    let bad = gw.post("bad", &[], b"{}");
    let good = async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(gw.post("good", &[], b"{}").await.status().as_u16());
        }
        statuses
    };
    let (bad, good) = tokio::join!(bad, good);
    let elapsed = started.elapsed();
    assert!(bad.status().is_server_error(), "status {}", bad.status());
    assert!(elapsed < DEADLINE + MARGIN, "took {elapsed:?}");
    assert_eq!(good, vec![202; 5], "the other route kept serving");
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"], expected_error, "{body}");
    assert!(
        body["request_id"].as_str().unwrap().starts_with("req_"),
        "{body}"
    );
    // The gateway survived and still serves the bad route's neighbours.
    assert_eq!(gw.post("good", &[], b"{}").await.status(), 202);
    body
}

#[tokio::test(flavor = "multi_thread")]
pub async fn spin() {
    let mut gw = gateway_with("spin").await;
    let body = bad_route_fails_alone(&gw, "timeout").await;
    assert!(
        body["message"].as_str().unwrap().contains("spin"),
        "names the plugin: {body}"
    );
    // Again: the interrupted instance left nothing behind.
    let again = gw.post("bad", &[], b"{}").await;
    assert_eq!(again.status(), 500);
    assert!(gw.is_running());
    assert!(gw.log().contains("spin"), "logged with the plugin name");
}

#[tokio::test(flavor = "multi_thread")]
pub async fn trap() {
    let mut gw = gateway_with("trap").await;
    let body = bad_route_fails_alone(&gw, "trap").await;
    assert!(body["message"].as_str().unwrap().contains("trap"), "{body}");
    assert!(gw.is_running());
}

#[tokio::test(flavor = "multi_thread")]
pub async fn hog() {
    let mut gw = gateway_with("hog").await;
    let body = bad_route_fails_alone(&gw, "out_of_memory").await;
    assert!(
        body["message"].as_str().unwrap().contains("memory"),
        "{body}"
    );
    assert!(gw.is_running());
}

#[tokio::test(flavor = "multi_thread")]
pub async fn noop() {
    // The no-op component implements every stage with the SDK defaults.
    let p = TestPlugin::component("noop", serde_json::json!({}));
    assert_eq!(p.loaded().stages().len(), 3);
    let verdict = p.verify(&TestRequest::post(b"{}".to_vec())).unwrap();
    assert!(matches!(
        verdict,
        hookgate::plugin::Verdict::Accept { id: None, .. }
    ));
    let msg = hookgate::plugin::Message::json(Some("e"), &serde_json::json!({"a": 1}));
    assert_eq!(p.transform(msg.clone()).unwrap(), vec![msg.clone()]);
    assert_eq!(p.route(msg, &["x", "y"]).unwrap(), vec!["x", "y"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_used_for_a_stage_it_does_not_implement_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "routes:\n  r:\n    verify: { plugin: github-teams }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes.r.verify.plugin") && err.contains("does not implement verify"),
        "{err}"
    );
}
