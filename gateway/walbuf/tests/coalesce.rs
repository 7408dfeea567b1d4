//! The buffer's point, counted: its own test binary, because the counters
//! are process-wide and the unit tests write WAL files in parallel.

use rusqlite::{Connection, OpenFlags, params};

#[test]
fn a_transaction_reaches_the_file_in_a_few_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut conn = Connection::open_with_flags_and_vfs(
        &path,
        OpenFlags::default(),
        hookgate_walbuf::register().unwrap(),
    )
    .unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);",
    )
    .unwrap();
    let before = hookgate_walbuf::stats();
    let tx = conn.transaction().unwrap();
    for i in 0..100 {
        tx.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", params![i])
            .unwrap();
    }
    tx.commit().unwrap();
    let after = hookgate_walbuf::stats();
    let wal_writes = after.wal_writes - before.wal_writes;
    let file_writes = after.file_writes - before.file_writes;
    // About 100 pages, two writes each; 400 KiB in pieces of 128 KiB.
    assert!(wal_writes >= 200, "{wal_writes} WAL writes");
    assert!(
        (3..=5).contains(&file_writes),
        "{wal_writes} WAL writes became {file_writes}"
    );
}
