//! The thread that copies the WAL back into the database file.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the writer: it reads every page of the WAL, writes it to
//! the database file and fsyncs, while every webhook of the next batch
//! waits. Measured on the store benchmark, checkpoints were a sixth of the
//! writer's time. Here a second connection checkpoints in `PASSIVE` mode
//! (never blocking the writer or readers) every [`INTERVAL`]. Not more
//! often: the pages every commit rewrites (the right edge of each index)
//! are copied once per checkpoint however many commits wrote them, and the
//! counts `wal_checkpoint` returns are cumulative since the WAL last
//! restarted, so they cannot tell a backlog from a WAL a reader holds on
//! to. The writer keeps an automatic checkpoint at
//! [`BACKSTOP_PAGES`] so the WAL stays bounded should this thread fall
//! behind or stop.
//!
//! Copying the WAL back is not enough: SQLite starts writing the WAL from
//! its beginning again only when a write transaction begins while every
//! frame is already in the database file, and under load the writer has
//! always committed more by the time this thread is done. The WAL then grew
//! to the backstop, and the writer's automatic checkpoint copied everything
//! this thread had not (up to an interval of commits) and synced the
//! database inside a commit: measured with `perf probe` on
//! `sqlite3WalCheckpoint` in `hookgate-bench --only delivery`, a 15-16 ms
//! stall of every webhook in flight every 0.6-0.75 s. So once the WAL holds
//! [`RESTART_FRAMES`], this thread copies it (a second pass for what was
//! committed during the first), writes the database file back, and asks
//! the writer (`restart`) to checkpoint the commit or two made meanwhile
//! before its next batch: a short copy, after which that batch starts the
//! WAL over. On a file system with little space left it does so every
//! [`TIGHT_RESTART_FRAMES`] instead.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::writer::{TIGHT_WAL_BYTES, WalRequests};
use super::{db_err, free_bytes, open_err};
use crate::observability::flood::{Flood, log_limited};
use crate::store::StoreError;

/// Time between checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own automatic checkpoint threshold (pages): a bound on the
/// WAL, not the usual path.
pub const BACKSTOP_PAGES: u32 = 32_768;

/// WAL frames (64 MiB with 4 KiB pages) from which this thread asks the
/// writer to let the WAL start over. The writer's share stalls its queue
/// for one copy and one fsync of the database file (3-7 ms measured), so
/// it should come rarely: with the 4,096 frames tried first it came at
/// every pass, 200 ms apart (5-10 ms each), a larger share of the time
/// than the old backstop stalls. At this size it comes every 0.6-0.7 s
/// under the load benchmark, and the backstop above is twice as far.
const RESTART_FRAMES: i64 = BACKSTOP_PAGES as i64 / 2;

/// Free space on the database's file system below which the WAL starts
/// over sooner: twice what it may reach at [`RESTART_FRAMES`].
const TIGHT_BYTES: u64 = 2 * RESTART_FRAMES as u64 * 4096;

/// WAL frames (4 MiB) from which it starts over while space is tight; the
/// writer then also cuts the WAL file back to [`TIGHT_WAL_BYTES`].
///
/// At [`RESTART_FRAMES`] the WAL takes 64 MiB of disk before its space is
/// used again. On a disk with less than that free, the WAL took the last
/// of it while the database had room to grow (on a 40 MiB file system: 31
/// MiB of WAL, 10 MiB of database, then every commit failing). Starting
/// over every 4 MiB costs the writer a short copy and an fsync (3-7 ms)
/// about as often, a price paid only on a nearly full disk, where it lets
/// the database grow into the space instead.
const TIGHT_RESTART_FRAMES: i64 = TIGHT_WAL_BYTES / 4096;

/// Stops the thread when the last clone is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    /// Sets `requests.restart` when the writer should checkpoint the rest of the WAL
    /// before its next batch ([`Writer`](super::writer::Writer) clears it).
    pub fn start(path: &Path, requests: Arc<WalRequests>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        let db = File::open(path).map_err(|e| open_err(path, e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("hookgate-checkpoint".into())
            .spawn(move || run(&conn, &db, &stopped, &requests))
            .map_err(|e| open_err(path, e))?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(conn: &Connection, db: &File, stopped: &mpsc::Receiver<()>, requests: &WalRequests) {
    let mut wait = INTERVAL;
    loop {
        match stopped.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The store is gone (or asked to stop): closing the writer's
            // connection checkpoints what is left.
            _ => return,
        }
        // (busy, frames in the WAL, frames copied to the database file)
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => {
                let free = free_bytes(db);
                let tight = free.is_some_and(|free| free < TIGHT_BYTES);
                requests.tight.store(tight, Ordering::Release);
                let restart_at = if tight {
                    static TIGHT: Flood = Flood::new();
                    log_limited!(
                        TIGHT,
                        "",
                        warn,
                        free_bytes = free.unwrap_or(0),
                        "less than 128 MiB free on the store's file system: the WAL starts over every 4 MiB"
                    );
                    TIGHT_RESTART_FRAMES
                } else {
                    RESTART_FRAMES
                };
                if frames >= restart_at {
                    // A second pass copies what was committed during the
                    // first, so the writer's share is a batch or two. Should
                    // it fail, the writer's pass copies more; nothing else.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    // SQLite syncs the database file only at a pass that
                    // reaches the end of the WAL, and that sync writes back
                    // every page copied since the last one: 12-18 ms
                    // measured (`perf probe` on `unixSync`), which fell on
                    // the writer's pass whenever a commit landed during the
                    // second one. Written back here, it leaves the writer's
                    // sync the pages of its own short copy. An extra sync
                    // of the database file is always safe.
                    if let Err(e) = db.sync_data() {
                        tracing::warn!(error = %e, "cannot sync the database file");
                    }
                    requests.restart.store(true, Ordering::Release);
                }
                wait = INTERVAL;
            }
            Err(e) => {
                // The writer's backstop keeps the WAL bounded meanwhile.
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                wait = INTERVAL * 10;
            }
        }
    }
}
