//! The OpenAPI document is the truth about the API: the served document
//! equals the committed one, and a property-based fuzzer (schemathesis,
//! from PyPI) run against the real binary with every check on finds
//! nothing: no 5xx, no undocumented status or content type, no answer off
//! its schema, no schema-valid request refused and no schema-violating
//! one accepted; on SQLite and on PostgreSQL.
//!
//! `.ci/run` installs schemathesis. Without it the fuzz test fails under
//! `CI=true` and otherwise says how to install it and passes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};

const KEY: &str = "openapi-tenant-key-0123456789";

/// Test cases per operation and phase: bounded, so the run takes about a
/// minute on a shared 2-core machine.
const MAX_EXAMPLES: u32 = 25;

/// Fixed, so a failure found in CI can be replayed locally.
const SEED: u32 = 20261202;

/// Deadline of the whole fuzz run.
const FUZZ_DEADLINE: Duration = Duration::from_secs(600);

fn yaml() -> String {
    yaml_with("")
}

/// The fuzzed gateway's config, with `extra` (a `store:` line) added.
fn yaml_with(extra: &str) -> String {
    format!(
        r#"
{extra}
admin: {{ token: "{ADMIN_TOKEN}" }}
subscriptions:
  api_keys: {{ tenant-a: "{KEY}" }}
  validation_timeout: 1s
destinations:
  console: {{ kind: log }}
routes:
  github:
    verify: {{ plugin: github, with: {{ secret: s3cret }} }}
    to: [console]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_the_committed_one() {
    let gw = TestGateway::spawn(&yaml()).await;
    let served: Value = gw
        .client()
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        served, committed,
        "regenerate: cargo run -p hookgate -- openapi > gateway/openapi.json"
    );
    for path in [
        "/v1/webhook",
        "/v1/webhook/{id}",
        "/v1/webhook/{id}/rotate-secret",
        "/v1/events",
        "/admin/events",
        "/admin/events/{id}",
        "/admin/events/{id}/replay",
        "/admin/replay",
        "/admin/status",
        "/admin/reload",
        "/hooks/{route}",
        "/healthz",
    ] {
        assert!(
            served["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }
    let object_type = &served["components"]["schemas"]["CreateWebhook"]["properties"]["objectType"];
    assert_eq!(
        object_type["enum"],
        serde_json::json!(["Group", "Action", "ActionPackage"])
    );
}

/// The schemathesis command, if it is installed.
fn schemathesis() -> Option<Command> {
    let found = Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| Command::new("schemathesis"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openapi_fuzzer_finds_no_difference_between_the_document_and_the_api() {
    fuzz("").await;
}

/// The same on PostgreSQL, which refuses some text SQLite keeps (a NUL):
/// the document holds on every engine.
#[tokio::test(flavor = "multi_thread")]
async fn an_openapi_fuzzer_finds_no_difference_on_postgresql_either() {
    let Some(db) = crate::scale_out::TestDatabase::create().await else {
        return;
    };
    fuzz(&format!(
        "store: {{ engine: postgres, url: \"{}\" }}",
        db.url
    ))
    .await;
}

/// Runs schemathesis against a gateway with `store` (a config line).
async fn fuzz(store: &str) {
    let Some(mut cmd) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install schemathesis (see .ci/run)"
        );
        eprintln!(
            "schemathesis is not installed, so the OpenAPI fuzz run is skipped.\n\
             Install it with `python3 -m pip install schemathesis` and run this test again."
        );
        return;
    };
    let gw = TestGateway::spawn(&yaml_with(store)).await;
    let report = tempfile::tempdir().unwrap();
    cmd.arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/it/schemathesis.toml"
        ))
        .arg("--no-color")
        .arg("run")
        .arg(gw.url("/openapi.json"))
        .args(["--checks", "all"])
        .args(["--header", &format!("accessToken: {KEY}")])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .arg("--report-dir")
        .arg(report.path())
        .current_dir(report.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("schemathesis starts");
    // Waited on in a blocking thread, with the run's deadline.
    let output = tokio::time::timeout(
        FUZZ_DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .unwrap_or_else(|_| panic!("schemathesis did not finish within {FUZZ_DEADLINE:?}"))
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "schemathesis took {:.0?}; summary:\n{}",
        started.elapsed(),
        stdout
            .lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (replay with --seed {SEED}):\n{stdout}\n{stderr}"
    );
}
