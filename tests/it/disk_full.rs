//! A full disk, on a real file system: the WAL keeps small while space is
//! tight, so the database gets the space; once full the gateway answers
//! 503 with Retry-After and says why on `/healthz`, logs the failing
//! commits once a window, and once space is freed gives the WAL's space
//! back before it writes again; every webhook it accepted is delivered.
//!
//! Needs a small file system of its own (`HOOKGATE_TEST_SMALL_FS`, a tmpfs
//! that `.ci/run` mounts); CI fails without it, elsewhere the test says it
//! did not run.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;

const WAIT: Duration = Duration::from_secs(30);

/// The small file system, or `None` (with a note) outside CI.
fn small_fs() -> Option<PathBuf> {
    match std::env::var_os("HOOKGATE_TEST_SMALL_FS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set HOOKGATE_TEST_SMALL_FS to a small file system of its own (.ci/run mounts a tmpfs)"
            );
            eprintln!("not run: HOOKGATE_TEST_SMALL_FS is not set");
            None
        }
    }
}

/// Fills the file system holding `filler` until a write fails, then
/// gives `leave` bytes back.
fn fill(filler: &Path, leave: u64) {
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
        assert!(written < 1 << 34, "{} never filled", filler.display());
    }
    let _ = f.sync_all();
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

fn wal_size(data: &Path) -> u64 {
    std::fs::metadata(data.join("hookgate.db-wal")).map_or(0, |m| m.len())
}

async fn post(gw: &TestGateway, body: &[u8]) -> reqwest::Response {
    gw.post("hooks", &[("content-type", "application/json")], body)
        .await
}

#[tokio::test]
async fn a_full_disk_answers_503_and_the_store_writes_again_once_space_is_freed() {
    let Some(fs) = small_fs() else { return };
    let place = tempfile::tempdir_in(&fs).unwrap();
    let data = place.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let sink = MockReceiver::start().await;
    let config = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}", timeout: 5s, retry: {{ schedule: [100ms, 100ms, 100ms], jitter: 0 }} }}
routes:
  hooks: {{ to: [sink] }}
"#,
        sink.url("/in")
    );
    // The harness puts data_dir in its own directory: there, a link to
    // the small file system.
    let gw = Arc::new(
        TestGateway::spawn_with(&config, |dir| {
            #[cfg(unix)]
            std::os::unix::fs::symlink(&data, dir.join("data")).unwrap();
        })
        .await,
    );
    // 40 MiB left: less than the WAL takes under load before its space is
    // used again (64 MiB), so the database can fill the disk only if the
    // WAL starts over sooner.
    let filler = place.path().join("filler");
    fill(&filler, 40 << 20);
    // `/metrics` says how little is left.
    let metrics = gw.metrics().await;
    let free: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookgate_store_free_bytes{} "))
        .unwrap_or_else(|| panic!("no hookgate_store_free_bytes: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(free > 32 << 20 && free <= 41 << 20, "{free} bytes free");

    // Webhooks of 16 KiB from 8 senders until the disk is full.
    let body = Arc::new(format!(r#"{{"pad": "{}"}}"#, "x".repeat(16 << 10)).into_bytes());
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (gw, body, accepted, refused) =
                (gw.clone(), body.clone(), accepted.clone(), refused.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + WAIT;
                while !refused.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let resp = post(&gw, &body).await;
                    match resp.status().as_u16() {
                        202 => {
                            let v: serde_json::Value = resp.json().await.unwrap();
                            accepted
                                .lock()
                                .await
                                .insert(v["id"].as_str().unwrap().to_owned());
                        }
                        503 => {
                            assert_eq!(
                                resp.headers()
                                    .get("retry-after")
                                    .map(|v| v.to_str().unwrap()),
                                Some("5"),
                                "a 503 says when to come back"
                            );
                            refused.store(true, Ordering::Relaxed);
                        }
                        other => panic!("{other}: {}", resp.text().await.unwrap_or_default()),
                    }
                }
            })
        })
        .collect();
    for s in senders {
        tokio::time::timeout(WAIT + Duration::from_secs(5), s)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(refused.load(Ordering::Relaxed), "the disk never filled");
    // Still full: more webhooks are refused, and /healthz says why.
    for _ in 0..20 {
        assert_eq!(post(&gw, &body).await.status(), 503);
    }
    let health = gw.client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let health = health.text().await.unwrap();
    assert!(health.contains("full"), "{health}");
    let wal_full = wal_size(&data);
    let db_full = std::fs::metadata(data.join("hookgate.db")).unwrap().len();
    assert!(
        wal_full < 16 << 20 && db_full > 2 * wal_full,
        "the database, not the WAL, took the space: WAL {wal_full} bytes, database {db_full}"
    );

    // Space freed: the WAL's space comes back before anything is written.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = post(&gw, &body).await;
        if resp.status() == 202 {
            let v: serde_json::Value = resp.json().await.unwrap();
            accepted
                .lock()
                .await
                .insert(v["id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "never writes again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wal_after = wal_size(&data);
    assert!(
        wal_after < wal_full / 2,
        "the WAL was copied and written from its start: {wal_after} bytes after, {wal_full} when full"
    );
    let health = gw.client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Everything accepted is delivered.
    let accepted = accepted.lock().await.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let delivered: BTreeSet<String> = sink
            .successes()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect();
        let missing: Vec<_> = accepted.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted never delivered, e.g. {:?}",
            missing.len(),
            accepted.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The failing commits were logged once a window, not once each.
    let log = gw.log();
    let errors = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("store commit failed"))
        .count();
    let all = log
        .lines()
        .filter(|l| l.contains("store commit failed"))
        .count();
    assert!(all > 3, "commits failed: {all}");
    assert!(errors <= 3, "{errors} error lines for {all} failed commits");
}
