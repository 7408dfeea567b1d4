use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::*;

fn writer(path: &Path, synchronous: &str, cache_pages: i64) -> Connection {
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), register().unwrap())
        .unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = {cache_pages}; \
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, b BLOB);"
    ))
    .unwrap();
    conn
}

/// A connection on the default VFS: it reads the WAL through a file
/// descriptor of its own, so it sees only what reached the real file.
fn reader(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Inserts `n` rows (random keys, so index pages split out of order) in
/// one transaction.
fn insert(conn: &mut Connection, first: i64, n: i64) {
    let tx = conn.transaction().unwrap();
    for i in first..first + n {
        let key = format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        tx.execute(
            "INSERT INTO t (id, k, b) VALUES (?1, ?2, zeroblob(?3))",
            params![i, key, 200 + (i % 7) * 300],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Every `synchronous` level: the buffer must be invisible at each.
const LEVELS: [&str; 3] = ["OFF", "NORMAL", "FULL"];

/// A database in a new temporary directory (kept alive by the returned
/// guard) and a writer on it through this VFS.
fn fresh(synchronous: &str, cache_pages: i64) -> (tempfile::TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let w = writer(&path, synchronous, cache_pages);
    (dir, path, w)
}

#[test]
fn other_connections_see_every_commit_at_every_synchronous_level() {
    for level in LEVELS {
        let (_dir, path, mut w) = fresh(level, 2000);
        let r = reader(&path);
        let mut rows = 0;
        for tx in 0..40 {
            // Single-row transactions (one commit frame, nothing before it)
            // between larger ones.
            let n = if tx % 3 == 0 { 1 } else { 25 };
            insert(&mut w, rows, n);
            rows += n;
            assert_eq!(count(&r), rows, "synchronous = {level}, transaction {tx}");
        }
        assert_eq!(integrity(&r), "ok", "synchronous = {level}");
    }
}

#[test]
fn a_copy_of_the_files_after_a_commit_recovers_every_committed_row() {
    // What a crash right after a commit leaves on disk (the process's
    // memory is gone; what the kernel was given survives): recovery from
    // the WAL through the default VFS.
    for level in LEVELS {
        let (dir, _path, mut w) = fresh(level, 2000);
        insert(&mut w, 0, 300);
        insert(&mut w, 300, 1);
        let copy = tempfile::tempdir().unwrap();
        for suffix in ["", "-wal"] {
            std::fs::copy(
                dir.path().join(format!("db{suffix}")),
                copy.path().join(format!("db{suffix}")),
            )
            .unwrap();
        }
        let c = Connection::open(copy.path().join("db")).unwrap();
        assert_eq!(count(&c), 301, "synchronous = {level}");
        assert_eq!(integrity(&c), "ok", "synchronous = {level}");
        drop(w);
    }
}

#[test]
fn a_transaction_larger_than_the_cache_reads_back_its_own_frames() {
    // A 20-page cache spills a large transaction's pages into the WAL
    // before it commits, and reads them back from there; checkpoints in
    // between restart the WAL from its start.
    let (_dir, path, mut w) = fresh("FULL", 20);
    let mut rows = 0;
    for round in 0..4 {
        insert(&mut w, rows, 2000);
        rows += 2000;
        // Updating every row revisits pages spilled earlier in this
        // transaction (frames rewritten in place).
        let tx = w.transaction().unwrap();
        tx.execute("UPDATE t SET b = zeroblob(length(b) + 1)", [])
            .unwrap();
        tx.commit().unwrap();
        let mode = if round % 2 == 0 {
            "RESTART"
        } else {
            "TRUNCATE"
        };
        w.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            .unwrap();
    }
    insert(&mut w, rows, 500);
    rows += 500;
    let r = reader(&path);
    assert_eq!(count(&r), rows);
    assert_eq!(integrity(&r), "ok");
    drop(w);
    let c = Connection::open(&path).unwrap();
    assert_eq!(count(&c), rows);
    assert_eq!(integrity(&c), "ok");
}

#[test]
fn other_files_are_the_default_vfs_files() {
    // The database file itself (and any journal) is opened by the real VFS
    // in place: a rollback-journal database works through this VFS too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut c =
        Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), register().unwrap())
            .unwrap();
    c.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, b BLOB);")
        .unwrap();
    insert(&mut c, 0, 100);
    drop(c);
    let c = Connection::open(&path).unwrap();
    assert_eq!(count(&c), 100);
}
