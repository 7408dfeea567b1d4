//! `hookgate-bench --smoke` runs every row end to end (baseline, the real
//! gateway with and without plugins, delivery to a sink) for a few hundred
//! requests, so `cargo test --workspace` keeps the benchmark working. It
//! checks only that the run completes with zero errors: no timing.

use std::path::Path;
use std::process::Command;

#[test]
fn smoke_run_completes_without_errors() {
    let bench = Path::new(env!("CARGO_BIN_EXE_hookgate-bench"));
    // `cargo test --workspace` builds the gateway binary next to this
    // package's (the `hookgate` package has integration tests that need
    // it). Building it from here would race that cargo for its lock.
    let gateway = bench
        .parent()
        .unwrap()
        .join(format!("hookgate{}", std::env::consts::EXE_SUFFIX));
    assert!(
        gateway.is_file(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p hookgate`) first",
        gateway.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // The PostgreSQL rows run where the PostgreSQL tests do (CI starts a
    // server: see .ci/run).
    let postgres = std::env::var("HOOKGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut cmd = Command::new(bench);
    cmd.arg("--smoke")
        .arg("--no-build")
        .arg("--gateway")
        .arg(&gateway)
        .arg("--json")
        .arg(&json)
        .env_remove("HOOKGATE_BENCH_POSTGRES_URL");
    if let Some(url) = &postgres {
        cmd.arg("--postgres-url").arg(url);
    }
    let output = cmd.output().expect("running hookgate-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hookgate-bench --smoke failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON report written")).unwrap();
    let rows = report["rows"].as_array().expect("rows");
    // Row 9 (adnanh/webhook) runs where the `webhook` package is installed,
    // as in CI.
    let peer = rows.iter().any(|r| r["key"] == "peer");
    // Rows 1-6, the SQLite publish row and the fan-out row; with
    // PostgreSQL, its two rows and its publish row.
    let expected = 8 + usize::from(peer) + if postgres.is_some() { 3 } else { 0 };
    assert_eq!(rows.len(), expected, "{stdout}");
    for key in ["publish", "postgres-publish"] {
        assert_eq!(
            rows.iter().any(|r| r["key"] == key),
            key == "publish" || postgres.is_some(),
            "{key}\n{stdout}"
        );
    }
    if std::env::var_os("CI").is_some() {
        assert!(
            peer,
            "CI installs adnanh/webhook (apt-get install webhook)\n{stdout}"
        );
    }
    for row in rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
    }
    let delivery = report["delivery"].as_array().expect("delivery rows");
    // Rows 5, 6 and the fan-out row, whose webhooks owe a delivery to
    // each of two destinations.
    assert_eq!(delivery.len(), 3, "{stdout}");
    for d in delivery {
        let copies = if d["row"] == "fan-out" { 2 } else { 1 };
        assert_eq!(d["copies"], copies, "{stdout}");
        assert_eq!(d["missing"], 0, "{stdout}");
        assert_eq!(d["duplicates"], 0, "{stdout}");
        assert_eq!(
            d["delivered"].as_u64().unwrap(),
            d["accepted"].as_u64().unwrap() * copies,
            "{stdout}"
        );
    }
    // `--smoke` runs one round of rows 1, 5 and 9 again.
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 1, "{stdout}");
    assert_eq!(rounds[0]["errors"], 0, "{stdout}");
    assert!(
        rounds[0]["delivery_to_baseline"].as_f64().unwrap() > 0.0,
        "{stdout}"
    );
    assert_eq!(rounds[0]["peer"].is_null(), !peer, "{stdout}");
    assert_eq!(
        report["rounds_median"]["delivery_to_peer"].is_null(),
        !peer,
        "{stdout}"
    );
}
