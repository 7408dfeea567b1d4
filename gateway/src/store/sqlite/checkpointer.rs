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

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::{db_err, open_err};
use crate::store::StoreError;

/// Time between checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own automatic checkpoint threshold (pages): a bound on the
/// WAL, not the usual path.
pub const BACKSTOP_PAGES: u32 = 16_384;

/// Stops the thread when the last clone is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("hookgate-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| open_err(path, e))?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    let mut wait = INTERVAL;
    loop {
        match stopped.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The store is gone (or asked to stop): closing the writer's
            // connection checkpoints what is left.
            _ => return,
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => wait = INTERVAL,
            Err(e) => {
                // The writer's backstop keeps the WAL bounded meanwhile.
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                wait = INTERVAL * 10;
            }
        }
    }
}
