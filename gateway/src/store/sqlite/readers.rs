//! Read-only connections, off the writer.
//!
//! In WAL mode readers see the last committed state and never wait for the
//! writer, nor it for them. Admin lists, event detail and subscription
//! look-ups run here, on blocking threads, so a slow query never stalls
//! ingest's group commits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::db_err;
use crate::store::StoreError;

/// Read-only connections open at most at once.
const READERS: usize = 4;

/// How long a reader waits on a lock (only while a checkpoint resets the
/// WAL, in practice).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A small pool of read-only connections to one database file.
#[derive(Clone, Debug)]
pub struct Readers {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    /// Readers of the database at `path` (which the writer has created).
    pub fn new(path: PathBuf) -> Self {
        Readers {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::with_capacity(READERS))),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &*self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `f` on a read-only connection.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => this.open()?,
            };
            // One read transaction: a read of several statements (an
            // event and its deliveries, a console page and its counts)
            // sees one snapshot, not an event "pending" beside a delivery
            // a commit between two statements made "delivered".
            let out = match conn.unchecked_transaction() {
                Ok(tx) => f(&tx),
                Err(e) => Err(e.into()),
            };
            this.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a read failed: {e}")))?
    }
}
