//! `hookgate backup` and `hookgate restore` on the real binary: a backup
//! taken while webhooks keep arriving holds every webhook accepted before
//! it started and is a whole database; a restore refuses a running
//! gateway, keeps the store it replaces, and the gateway started on the
//! restored store delivers what the backup held.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `hookgate ARGS` to its end (at most 60 s): exit code, stdout,
/// stderr.
async fn hookgate(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hookgate");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hookgate {args:?} did not finish within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Finished: its output is in the pipes (a few lines).
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Route `hooks` to `sink` at `url`, `paused` or not.
fn config(url: &str, paused: bool) -> String {
    format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{url}", timeout: 5s, paused: {paused} }}
routes:
  hooks: {{ to: [sink] }}
"#
    )
}

async fn post(gw: &TestGateway, n: usize) -> Option<String> {
    let resp = gw
        .post(
            "hooks",
            &[("content-type", "application/json")],
            format!(r#"{{"n": {n}}}"#).as_bytes(),
        )
        .await;
    if resp.status() != 202 {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    v["id"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_backup_under_load_restores_to_a_gateway_that_delivers_what_it_held() {
    let sink = MockReceiver::start().await;
    // The source gateway holds its deliveries (paused): the backup then
    // has unfinished work for the restored gateway to do.
    let source = Arc::new(TestGateway::spawn(&config(&sink.url("/in"), true)).await);
    let mut before = Vec::new();
    for n in 0..40 {
        before.push(post(&source, n).await.expect("accepted"));
    }

    // Webhooks keep arriving while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (gw, stop) = (source.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted = 0_usize;
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) {
                if post(&gw, n).await.is_some() {
                    accepted += 1;
                }
                n += 1;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("hookgate-backup.db");
    let config_path = source.config_path();
    let (code, out, err) = hookgate(&[
        os("backup"),
        os("--config"),
        config_path.as_os_str(),
        file.as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("backed up "), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let during = tokio::time::timeout(WAIT, load).await.unwrap().unwrap();
    assert!(during > 0, "no webhook arrived during the backup");

    // A whole database holding everything accepted before it began.
    let db =
        rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    for id in &before {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM deliveries WHERE event_id = ?1 AND state = 'pending'",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{id} pending in the backup");
    }
    let stored: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(stored >= before.len() as i64, "{stored}");
    assert!(out.contains(&format!("{stored} events")), "{out}");
    drop(db);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds secrets: owner only");
    }
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [os("hookgate-backup.db")],
        "no partial file left"
    );

    // An existing file is not replaced without --force.
    let (code, _, err) = hookgate(&[
        os("backup"),
        os("--config"),
        config_path.as_os_str(),
        file.as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("exists; give --force"), "{err}");

    // The target: a gateway of its own, whose destination is open.
    let mut target = TestGateway::spawn(&config(&sink.url("/in"), false)).await;
    let own = post(&target, 7).await.expect("accepted");
    sink.wait_for(1, WAIT).await;
    let data_dir = target.dir().join("data");
    let (code, _, err) = hookgate(&[
        os("restore"),
        os("--data-dir"),
        data_dir.as_os_str(),
        file.as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(1), "a running gateway's store is not replaced");
    assert!(err.contains("a gateway is running on"), "{err}");

    assert!(target.terminate(WAIT).await, "the target stops");
    let (code, out, err) = hookgate(&[
        os("restore"),
        os("--data-dir"),
        data_dir.as_os_str(),
        file.as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{stored} events")), "{out}");
    let aside = aside_of(&data_dir);
    assert!(aside.is_some(), "the replaced store is kept: {out}");
    assert!(
        !data_dir.join("hookgate.db-wal").exists(),
        "no WAL of the old store beside the restored one"
    );

    target.restart().await;
    // What the backup held is now the target's: its event, and the
    // deliveries the source held, sent by the target.
    let event = target
        .admin_get(&format!("/admin/events/{}", before[0]))
        .await;
    assert_eq!(event["id"], before[0].as_str(), "{event}");
    let missing = target
        .admin(reqwest::Method::GET, &format!("/admin/events/{own}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        404,
        "the restored store replaced the target's own"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let arrived: std::collections::BTreeSet<u64> = sink
            .received()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| v["n"].as_u64())
            .collect();
        if (0..40).all(|n| arrived.contains(&n)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held deliveries never arrived: {arrived:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A backup of a stopped gateway's store (no WAL, no shared memory) works too.
    assert!(target.terminate(WAIT).await);
    let (code, out, err) = hookgate(&[
        os("backup"),
        os("--data-dir"),
        data_dir.as_os_str(),
        os("--force"),
        file.as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
}

/// The store `restore` moved aside in `data_dir`, if any.
fn aside_of(data_dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("hookgate.db.before-restore-")
                    && !n.ends_with("-wal")
                    && !n.ends_with("-shm")
            })
        })
}

/// A config whose store is not SQLite names the tool to use instead.
#[tokio::test]
async fn backup_of_another_engine_says_what_to_use() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, expected) in [("memory", "nothing to back up"), ("postgres", "pg_dump")] {
        let path = dir.path().join(format!("{engine}.yaml"));
        let store = if engine == "postgres" {
            "store: { engine: postgres, url: \"postgres://u@127.0.0.1:1/db\" }"
        } else {
            "store: { engine: memory }"
        };
        std::fs::write(&path, format!("{store}\nroutes: {{}}\n")).unwrap();
        let out = dir.path().join(format!("{engine}.db"));
        let (code, _, err) = hookgate(&[
            os("backup"),
            os("--config"),
            path.as_os_str(),
            out.as_os_str(),
        ])
        .await;
        assert_eq!(code, Some(1), "{engine}");
        assert!(err.contains(expected), "{engine}: {err}");
        assert!(!out.exists());
    }
    let (code, _, err) = hookgate(&[
        os("backup"),
        os("--data-dir"),
        dir.path().as_os_str(),
        dir.path().join("x.db").as_os_str(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no SQLite store at"), "{err}");
}
