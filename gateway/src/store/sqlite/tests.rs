//! The SQLite engine's own tests; the shared contract is checked by the
//! conformance suite, run here first.

use super::*;
use crate::store::NextState;

crate::store::conformance::suite!(|| {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (store, dir)
});

/// A read of several statements sees one snapshot: a commit between
/// two of its statements is not seen by the second.
#[tokio::test]
async fn a_read_is_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    crate::store::conformance::insert_one(&store, "evt_1", None, &["d"]).await;
    let path = dir.path().join(DB_FILE);
    let (before, after) = store
        .readers
        .read(move |c| {
            let count = |c: &Connection| -> Result<i64, StoreError> {
                Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
            };
            let before = count(c)?;
            let other = Connection::open(&path)?;
            other.busy_timeout(std::time::Duration::from_secs(10))?;
            other.execute(
                "INSERT INTO events (id, route, received_at, status) \
                 VALUES ('evt_2', 'r', 0, 'delivered')",
                [],
            )?;
            Ok((before, count(c)?))
        })
        .await
        .unwrap();
    assert_eq!((before, after), (1, 1));
}

/// A killed gateway's `memory` store leaves its scratch directory;
/// the next one removes it, and never one whose store is still open.
#[tokio::test]
async fn scratch_directories_of_dead_stores_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = tmp.path().join(format!("{SCRATCH_PREFIX}dead"));
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
    std::fs::write(dead.join(DB_FILE), vec![0u8; 4096]).unwrap();
    let live = tmp.path().join(format!("{SCRATCH_PREFIX}live"));
    let _open = SqliteStore::open_in(&live, false, None).unwrap();
    let unlocked = tmp.path().join(format!("{SCRATCH_PREFIX}nolock"));
    std::fs::create_dir(&unlocked).unwrap();
    let other = tmp.path().join("someone-else");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join(LOCK_FILE), b"").unwrap();

    // Too young: nothing goes.
    sweep_stale_scratch(tmp.path(), std::time::Duration::from_secs(3600));
    assert!(dead.exists());

    sweep_stale_scratch(tmp.path(), std::time::Duration::ZERO);
    assert!(!dead.exists(), "the dead store's directory is removed");
    assert!(
        live.join(DB_FILE).exists(),
        "an open store's directory stays"
    );
    assert!(unlocked.exists(), "a directory without a lock file stays");
    assert!(other.exists(), "other directories stay");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SqliteStore::open(dir.path()).unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("another hookgate process"), "{err}");
}

/// The free space reported for `/metrics` is that of data_dir's file
/// system: it shrinks as a file there grows.
#[cfg(unix)]
#[tokio::test]
async fn free_disk_bytes_is_data_dirs_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    // 64 MiB written and synced beside it: the free space drops by about
    // that. Other writers on the machine move it too (a build that frees
    // tens of MiB at that moment), so three tries, each from a fresh
    // reading; a number from another file system never drops by this.
    let big = vec![1u8; 64 << 20];
    let filler = dir.path().join("filler");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let before = store.free_disk_bytes().expect("read on unix");
        assert!(before > 0);
        std::fs::write(&filler, &big).unwrap();
        std::fs::File::open(&filler).unwrap().sync_all().unwrap();
        let after = store.free_disk_bytes().unwrap();
        let dropped = before.saturating_sub(after);
        if dropped > 48 << 20 && dropped < 80 << 20 {
            return;
        }
        seen.push((before, after));
        std::fs::remove_file(&filler).unwrap();
    }
    panic!("free bytes (before, after) 64 MiB written, three tries: {seen:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let _store = SqliteStore::open(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join(DB_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[tokio::test]
async fn a_restart_hands_back_the_claims_of_the_previous_process() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        crate::store::conformance::insert_one(&store, "evt_1", None, &["d"]).await;
        let claimed = store
            .claim_due(10, Duration::from_secs(600), Vec::new())
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
    }
    // The writer thread of the first store may still hold the file for
    // a moment after the drop; the lock goes with the last handle.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let store = loop {
        match SqliteStore::open(dir.path()) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let again = store
        .claim_due(10, Duration::from_secs(600), Vec::new())
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "due again at once after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_continuous_writes() {
    // Before, the WAL only started over once it reached the writer's
    // backstop, whose checkpoint then stalled a commit for everything
    // the checkpointer had not copied yet (checkpointer.rs). Twice the
    // backstop is written here, in commits of 512 KiB a few ms apart,
    // so the checkpointer (every 200 ms) sees the WAL grow.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store
        .write_raw(|tx| {
            tx.execute_batch("CREATE TABLE filler (b BLOB NOT NULL)")?;
            Ok(())
        })
        .await
        .unwrap();
    let backstop = u64::from(checkpointer::BACKSTOP_PAGES) * 4096;
    const ROW: usize = 64 << 10;
    let blob = Arc::new(vec![7u8; ROW]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Commits of 8 rows each.
    for _ in 0..2 * backstop / (8 * ROW as u64) {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        let writes: Vec<_> = (0..8)
            .map(|_| {
                let (store, blob) = (store.clone(), blob.clone());
                tokio::spawn(async move {
                    store
                        .write_raw(move |tx| {
                            tx.execute("INSERT INTO filler (b) VALUES (?1)", [&blob[..]])?;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for w in writes {
            tokio::time::timeout_at(deadline.into(), w)
                .await
                .expect("writes too slow")
                .unwrap()
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wal = std::fs::metadata(dir.path().join(format!("{DB_FILE}-wal")))
        .unwrap()
        .len();
    assert!(
        wal < backstop * 3 / 4,
        "the WAL grew to {wal} bytes (backstop {backstop}): it did not start over"
    );
}

#[tokio::test]
async fn a_panicking_operation_is_rolled_back_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let err = store
        .write_raw(|tx| -> Result<(), StoreError> {
            tx.execute(
                "INSERT INTO events (id, route, received_at, status) VALUES ('evt_p', 'r', 0, 'pending')",
                [],
            )?;
            panic!("boom")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err}");
    // The caller may hear of the failure a moment before the writer
    // has counted it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.panics() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.panics(), 1);
    assert!(store.health().is_ok());
    assert!(
        store.get("evt_p".into()).await.unwrap().is_none(),
        "rolled back"
    );
    crate::store::conformance::insert_one(&store, "evt_after", None, &["d"]).await;
    assert!(store.get("evt_after".into()).await.unwrap().is_some());
}

/// SQLite rolls the whole transaction back on some errors (a full
/// disk, an I/O error), not just the statement: simulated here by an
/// operation that ends the transaction itself. The others of its batch
/// are stored and told so; none is committed behind a "failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_ends_the_whole_transaction_fails_only_its_own_operation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    // Holds the writer so that the three below make one batch.
    let hold = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write_raw(|_| {
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "holds the writer thread so the next operations batch up"
                    )]
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let insert = |id: &'static str, end_the_transaction: bool| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write_raw(move |tx| -> Result<(), StoreError> {
                    tx.execute(
                        "INSERT INTO events (id, route, received_at, status) \
                         VALUES (?1, 'r', 0, 'pending')",
                        [id],
                    )?;
                    if end_the_transaction {
                        tx.execute_batch("ROLLBACK")?;
                        return Err(StoreError::Database("disk full (simulated)".into()));
                    }
                    Ok(())
                })
                .await
        })
    };
    let (a, b, c) = (
        insert("evt_a", false),
        insert("evt_b", true),
        insert("evt_c", false),
    );
    let within = Duration::from_secs(10);
    let wait = |h: tokio::task::JoinHandle<Result<(), StoreError>>| async move {
        tokio::time::timeout(within, h).await.unwrap().unwrap()
    };
    assert!(wait(hold).await.is_ok());
    assert!(wait(a).await.is_ok(), "evt_a is stored and told so");
    assert!(wait(b).await.is_err(), "evt_b failed");
    assert!(wait(c).await.is_ok(), "evt_c is stored and told so");
    for (id, stored) in [("evt_a", true), ("evt_b", false), ("evt_c", true)] {
        let found: bool = store
            .write_raw(move |tx| {
                Ok(tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
                    [id],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(found, stored, "{id}");
    }
    assert!(store.health().is_ok());
}

#[tokio::test]
async fn prune_finishes_a_settlement_a_crash_left() {
    // A re-enable (and a delete) commit their first batch with a note;
    // the state a crash right after leaves is made here by hand: the
    // flag flipped (or the row gone), the note written, the parked
    // deliveries not yet settled. Prune finishes it.
    use crate::store::EventStatus;
    use crate::store::conformance::publish;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    crate::store::conformance::disabled_subscriptions(&store, &["wh_1", "wh_2"]).await;
    store
        .insert(
            publish("evt_1", "A"),
            InsertOptions {
                dedup_window: Duration::ZERO,
                claim: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.parked("wh_1".into(), 10).await.unwrap().len(), 1);
    assert_eq!(store.parked("wh_2".into(), 10).await.unwrap().len(), 1);
    store
        .write_raw(|tx| {
            tx.execute_batch(
                "UPDATE subscriptions SET active = 1 WHERE id = 'wh_1'; \
                 DELETE FROM subscriptions WHERE id = 'wh_2'; \
                 INSERT INTO subscription_settlements VALUES ('wh_1'), ('wh_2');",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    store
        .prune(crate::store::conformance::KEEP_AN_HOUR)
        .await
        .unwrap();
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    assert!(store.parked("wh_2".into(), 10).await.unwrap().is_empty());
    let due = store
        .claim_due(10, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].destination, "sub:wh_1");
    let dead = crate::store::conformance::delivery_to(&store, "evt_1", "sub:wh_2").await;
    assert_eq!(dead.state, EventStatus::Dead);
    let notes: i64 = store
        .write_raw(|tx| {
            Ok(
                tx.query_row("SELECT COUNT(*) FROM subscription_settlements", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(notes, 0);
}

#[tokio::test]
async fn a_settlement_batch_that_fails_once_is_tried_again_within_the_change() {
    use std::sync::atomic::{AtomicI64, Ordering};
    // A re-enable settles its first batch with the change and each later
    // batch in a writer operation of its own, tried again after a
    // failure: one that fails once is settled within the change, and no
    // note is left for prune.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    crate::store::conformance::disabled_subscriptions(&store, &["wh_1"]).await;
    // More parked deliveries than a batch, and a fault the first time a
    // row past the first batch is settled. The count lives in Rust: a
    // row written by the failed batch would be rolled back with it.
    let per = BATCH_ROWS as i64 + 40;
    let faults = Arc::new(AtomicI64::new(0));
    let counted = Arc::clone(&faults);
    store
        .write_raw(move |tx| {
            park_deliveries(tx, &["wh_1"], per)?;
            let counted = Arc::clone(&counted);
            tx.create_scalar_function(
                "settle_fault",
                0,
                rusqlite::functions::FunctionFlags::SQLITE_UTF8,
                move |_| Ok(counted.fetch_add(1, Ordering::SeqCst) + 1),
            )?;
            tx.execute_batch(&format!(
                "CREATE TEMP TRIGGER settle_fault BEFORE UPDATE OF state ON deliveries \
                 WHEN OLD.id > {BATCH_ROWS} AND settle_fault() = 1 \
                 BEGIN SELECT RAISE(ABORT, 'test fault'); END;"
            ))?;
            Ok(())
        })
        .await
        .unwrap();
    let enabled = crate::store::conformance::set_active(&store, "wh_1", true).await;
    assert!(enabled.active);
    assert!(
        faults.load(Ordering::SeqCst) > 1,
        "the fault fired and the batch ran again ({faults:?})"
    );
    assert_eq!(
        settling_left(&store, "pending").await,
        (per, 0),
        "settled within the re-enable"
    );
}

/// Parks `per` deliveries for each of `subs`, ids from 1 in that order.
fn park_deliveries(tx: &Connection, subs: &[&str], per: i64) -> rusqlite::Result<()> {
    for (k, sub) in (0..).zip(subs) {
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO deliveries (id, event_id, message_id, destination, state, next_attempt_at) \
             SELECT i + ?2, 'evt_' || (i + ?2), i + ?2, ?3, 'parked', 0 FROM n",
            params![per, k * per, format!("sub:{sub}")],
        )?;
    }
    Ok(())
}

/// Deliveries in `state`, and the settlement notes left.
async fn settling_left(store: &SqliteStore, state: &'static str) -> (i64, i64) {
    store
        .write_raw(move |tx| {
            Ok(tx.query_row(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = ?1), \
                        (SELECT COUNT(*) FROM subscription_settlements)",
                params![state],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_change_whose_later_settling_fails_is_reported_done_and_prune_finishes_it() {
    // A re-enable (and a delete) commit with their first batch of
    // settled deliveries; the batches after are their own writes. When
    // one of those fails, the change has still happened: the caller
    // must hear it succeeded (not an error inviting a retry), and the
    // note left behind lets prune finish the rest.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    crate::store::conformance::disabled_subscriptions(&store, &["wh_1", "wh_2"]).await;
    // More parked deliveries than a batch for each, and a fault on
    // every one past the first batch (a temporary trigger lives on the
    // writer's connection only).
    let per = BATCH_ROWS as i64 + 40;
    store
        .write_raw(move |tx| {
            park_deliveries(tx, &["wh_1", "wh_2"], per)?;
            tx.execute_batch(&format!(
                "CREATE TEMP TRIGGER settle_fault BEFORE UPDATE OF state ON deliveries \
                 WHEN OLD.id % {per} > {BATCH_ROWS} OR OLD.id % {per} = 0 \
                 BEGIN SELECT RAISE(ABORT, 'test fault'); END;"
            ))?;
            Ok(())
        })
        .await
        .unwrap();
    let enabled = crate::store::conformance::set_active(&store, "wh_1", true).await;
    assert!(enabled.active);
    assert!(
        store
            .delete_subscription("t".into(), "wh_2".into())
            .await
            .expect("the delete committed: it is reported done")
    );
    // The first batch of each went with its change; the rest waits,
    // noted.
    assert_eq!(
        settling_left(&store, "parked").await,
        (2 * (per - BATCH_ROWS as i64), 2)
    );
    store
        .write_raw(|tx| Ok(tx.execute_batch("DROP TRIGGER temp.settle_fault")?))
        .await
        .unwrap();
    store
        .prune(crate::store::conformance::KEEP_AN_HOUR)
        .await
        .unwrap();
    assert_eq!(settling_left(&store, "parked").await, (0, 0));
    let states: Vec<(String, String, i64)> = store
        .write_raw(|tx| {
            Ok(tx
                .prepare(
                    "SELECT destination, state, COUNT(*) FROM deliveries \
                     GROUP BY destination, state ORDER BY destination",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
        .unwrap();
    assert_eq!(
        states,
        [
            ("sub:wh_1".to_owned(), "pending".to_owned(), per),
            ("sub:wh_2".to_owned(), "dead".to_owned(), per)
        ]
    );
}

#[tokio::test]
async fn a_subscription_stored_undecodable_is_reported_corrupt_not_read_with_defaults() {
    // Event types read as "none" would silently stop its deliveries,
    // headers read as "none" would send it without them: each column
    // that does not decode is an error naming it.
    use crate::store::conformance::subscription;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    for (column, bad) in [
        ("event_types", "[\"A\""),
        ("context", "{"),
        ("headers", "not json"),
        ("properties", "[1,"),
        ("signature_scheme", "rot13"),
    ] {
        let id = format!("wh_{column}");
        store
            .create_subscription(subscription(&id, "t", "g", &["*"]))
            .await
            .unwrap();
        let (sql_id, sql_bad) = (id.clone(), bad.to_owned());
        let sql = format!("UPDATE subscriptions SET {column} = ?1 WHERE id = ?2");
        store
            .write_raw(move |tx| Ok(tx.execute(&sql, params![sql_bad, sql_id])?))
            .await
            .unwrap();
        crate::store::conformance::assert_reported_corrupt(&store, &id, column).await;
    }
}

#[tokio::test]
async fn prune_leaves_no_row_of_a_pruned_event_behind() {
    // The writer does not enforce foreign keys: prune deletes every
    // child table's rows itself. A table added later must be added
    // there (and here).
    use crate::store::conformance::event;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut ev = event("evt_1", Some("g1"), &["d"]);
    ev.inbound = Some(InboundView {
        method: "POST".into(),
        path: "/hooks/r".into(),
        headers: vec![("x-github-event".into(), "issues".into())],
    });
    let opts = InsertOptions {
        dedup_window: Duration::ZERO,
        claim: Some(crate::store::ClaimNew {
            lease: Duration::from_secs(60),
            destinations: vec!["d".into()],
            subscribers: false,
            full: Vec::new(),
            held: Vec::new(),
        }),
    };
    let Inserted::New { claimed, .. } = store.insert(ev, opts).await.unwrap() else {
        panic!("new");
    };
    for d in claimed {
        let recorded = store
            .record(AttemptRecord {
                delivery_id: d.id,
                event_id: d.event_id.clone(),
                lease: d.lease,
                attempted_at_ms: crate::clock::now_ms(),
                status: Some(200),
                latency_ms: 1,
                error: None,
                response_excerpt: None,
                next: NextState::Delivered,
            })
            .await
            .unwrap();
        assert_eq!(recorded, Recorded::Written);
    }
    let rows = |store: &SqliteStore| {
        let store = store.clone();
        async move {
            store
                .write_raw(|tx| {
                    let mut counts = Vec::new();
                    for t in [
                        "events",
                        "event_requests",
                        "messages",
                        "deliveries",
                        "attempts",
                        "dedup",
                    ] {
                        let n: i64 =
                            tx.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
                        counts.push((t, n));
                    }
                    Ok(counts)
                })
                .await
                .unwrap()
        }
    };
    assert!(
        rows(&store).await.iter().all(|(_, n)| *n == 1),
        "{:?}",
        rows(&store).await
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let everything = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    assert_eq!(store.prune(everything).await.unwrap(), 1);
    let left = rows(&store).await;
    assert!(left.iter().all(|(_, n)| *n == 0), "{left:?}");
}

#[tokio::test]
async fn a_dedup_key_outlives_its_pruned_event_until_its_window_ends() {
    use crate::store::conformance::event;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let window = Duration::from_secs(2);
    let opts = || InsertOptions {
        dedup_window: window,
        claim: None,
    };
    let keys = |store: &SqliteStore| {
        let store = store.clone();
        async move {
            store
                .write_raw(|tx| {
                    Ok(tx.query_row("SELECT count(*) FROM dedup", [], |r| r.get::<_, i64>(0))?)
                })
                .await
                .unwrap()
        }
    };
    // No destinations: delivered at once, so retention 0 prunes it.
    let started = std::time::Instant::now();
    store
        .insert(event("evt_1", Some("g1"), &[]), opts())
        .await
        .unwrap();
    let everything = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    // Retention 0 prunes what was received before now, in
    // milliseconds: not what was received within the same one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.prune(everything).await.unwrap(), 1);
    assert!(store.get("evt_1".into()).await.unwrap().is_none());
    // Its key is still in its window: the provider's retry is refused.
    match store
        .insert(event("evt_2", Some("g1"), &[]), opts())
        .await
        .unwrap()
    {
        Inserted::Duplicate { existing_id } => assert_eq!(existing_id, "evt_1"),
        other => panic!("a duplicate inside the window: {other:?}"),
    }
    assert!(
        started.elapsed() < window,
        "the machine was too slow to test the window"
    );
    assert_eq!(keys(&store).await, 1, "the orphaned key is kept");
    // Once the window has passed, pruning sweeps the orphaned key and
    // the id is new again.
    tokio::time::sleep(window.saturating_sub(started.elapsed()) + Duration::from_millis(50)).await;
    store.prune(everything).await.unwrap();
    assert_eq!(keys(&store).await, 0, "the orphaned key is swept");
    assert!(matches!(
        store
            .insert(event("evt_3", Some("g1"), &[]), opts())
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
}

/// The most times any store's fan-out look-up of subscriptions was
/// prepared again (see `ingest.rs`).
pub(super) static FANOUT_REPREPARES: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);

/// The writer's statements are planned once, whatever is bound to them:
/// the fan-out look-up, planned for its bound values, was compiled anew on
/// every publish (a fifth of the writer's time while publishing).
#[tokio::test]
async fn the_fan_out_look_up_is_not_prepared_again_for_each_publish() {
    use crate::store::conformance::{event, opts, subscription};
    use crate::store::{Fanout, Inserted};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    for i in 0..3 {
        store
            .create_subscription(subscription(&format!("wh_{i}"), "t1", "g1", &["*"]))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let mut e = event(&format!("evt_{i}"), None, &[]);
        e.fanout.push(Fanout {
            tenant: Some("t1".into()),
            object_type: "Group".into(),
            object_id: "g1".into(),
            event_type: format!("Type{i}"),
            envelope: crate::plugin::Message::json(Some("Created"), &serde_json::json!({"i": i})),
        });
        let inserted = store.insert(e, opts()).await.unwrap();
        assert!(
            matches!(inserted, Inserted::New { deliveries: 3, .. }),
            "{inserted:?}"
        );
    }
    // Every store of this process counts, and none may prepare it again.
    let again = FANOUT_REPREPARES.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        again, 0,
        "the fan-out look-up was prepared again {again} times"
    );
}

/// The queries that look deliveries up by destination go through
/// `deliveries_lane`, which indexes only undelivered rows (schema 11), and
/// never scan the table: SQLite uses a partial index only when the
/// query's terms imply its condition, so each spells it out. Without it
/// the claim past a hanging destination's backlog, or the console's
/// destination pages, would walk every delivery ever made.
#[test]
fn the_lane_queries_use_the_lane_index() {
    let mut c = Connection::open_in_memory().unwrap();
    schema::migrate(&mut c).unwrap();
    // Plans only: every parameter is bound a placeholder value, the
    // claim's fourth (its skip list) the JSON that `json_each` reads.
    let plan = |sql: &str, n: usize| -> String {
        let args: Vec<rusqlite::types::Value> = (0..n)
            .map(|i| rusqlite::types::Value::Text(if i == 3 { "[]".into() } else { "1".into() }))
            .collect();
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows.join("\n")
    };
    let (enable, delete) = (
        subscriptions::settle_sql(true),
        subscriptions::settle_sql(false),
    );
    for (name, sql, n, index, uses) in [
        (
            "claim by lane",
            deliveries::CLAIM_BY_LANE,
            5,
            "deliveries_lane",
            3,
        ),
        (
            "parked counts",
            console::PARKED_COUNTS,
            1,
            "deliveries_lane",
            1,
        ),
        ("hasten a lane", HASTEN_LANE, 3, "deliveries_lane", 1),
        ("parked list", PARKED_LIST, 2, "deliveries_lane", 1),
        ("settle on enable", &enable, 2, "deliveries_lane", 1),
        ("settle on delete", &delete, 3, "deliveries_lane", 1),
        ("backlog", console::BACKLOG, 0, "deliveries_due", 1),
    ] {
        let plan = plan(sql, n);
        assert_eq!(
            plan.matches(&format!("INDEX {index}")).count(),
            uses,
            "{name}:\n{plan}"
        );
        for line in plan.lines() {
            // A table walked without an index ("SCAN d"); the recursive
            // lanes, the skip list and the constant row are no tables.
            let walks_a_table = line.starts_with("SCAN ")
                && !line.contains("USING")
                && !["lanes", "json_each", "subquery", "CONSTANT ROW"]
                    .iter()
                    .any(|t| line.contains(t));
            assert!(!walks_a_table, "{name}: {line} in\n{plan}");
        }
    }
}

#[tokio::test]
async fn a_record_naming_another_event_changes_nothing() {
    // The record carries its delivery's event (so the writer need not read
    // it back); one that names another event is refused with its lease's
    // check, and neither event nor delivery moves.
    use crate::store::EventStatus;
    use crate::store::conformance::{attempt, delivery_to, insert_one};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    insert_one(&store, "evt_1", None, &["d"]).await;
    insert_one(&store, "evt_2", None, &["d"]).await;
    let due = store
        .claim_due(10, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    let d1 = due.iter().find(|d| d.event_id == "evt_1").unwrap();
    let wrong = AttemptRecord {
        event_id: "evt_2".into(),
        ..attempt(d1, 200, NextState::Delivered)
    };
    assert_eq!(store.record(wrong).await.unwrap(), Recorded::LeaseLost);
    for id in ["evt_1", "evt_2"] {
        let detail = store.get(id.into()).await.unwrap().unwrap();
        assert_eq!(detail.summary.status, EventStatus::Pending, "{id}");
        let d = delivery_to(&store, id, "d").await;
        assert_eq!(
            (d.state, d.attempts_made),
            (EventStatus::Pending, 0),
            "{id}"
        );
    }
    // The same record with its own event is written: the lease held.
    let right = attempt(d1, 200, NextState::Delivered);
    assert_eq!(store.record(right).await.unwrap(), Recorded::Written);
    let detail = store.get("evt_1".into()).await.unwrap().unwrap();
    assert_eq!(detail.summary.status, EventStatus::Delivered);
    let detail = store.get("evt_2".into()).await.unwrap().unwrap();
    assert_eq!(detail.summary.status, EventStatus::Pending);
}
