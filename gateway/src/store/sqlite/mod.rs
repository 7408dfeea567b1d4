//! The embedded engine: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One thread writes, with group commit ([`writer`]); reads run on
//! read-only connections beside it ([`readers`]); the schema is versioned
//! ([`schema`]). The file is this process's alone: an exclusive lock on
//! `data_dir` stops a second gateway from sharing it by accident. Because of
//! that lock, start-up may hand every claimed delivery back at once (their
//! owner was this data_dir's previous process); everything else follows the
//! many-writer contract of [`crate::store`], as the conformance suite
//! checks. The store's clock (leases, due times, dedup expiry) is this
//! process's wall clock, read inside the writer.
//!
//! The `memory` engine ([`crate::store::memory`]) is this code on a scratch
//! file without fsync.

pub mod backup;
mod checkpointer;
mod console;
mod deliveries;
mod events;
#[cfg(debug_assertions)]
mod fault;
mod ingest;
mod readers;
mod schema;
mod subscriptions;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};

use super::stats::{
    Backlog, BulkReplay, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    ReplayTally, StatusCounts,
};
use super::{
    AttemptHealth, AttemptRecord, DueDelivery, EventDetail, EventFilter, EventPage, EventStatus,
    InsertOptions, Inserted, LeaseToken, NewEvent, ParkedDelivery, Recorded, ReplayTarget,
    Retention, SUBSCRIBER_PREFIX, Store, StoreError, Subscription, SubscriptionHealth,
    SubscriptionPatch, rfc3339, settle_in_batches, settled_later,
};
use checkpointer::Checkpointer;
use deliveries::{claim, record, refresh_event_status};
use events::{get_event, list_events, prune_batch, replay_batch};
use ingest::insert_event;
use readers::Readers;
pub(crate) use subscriptions::{SUBSCRIPTION_COLUMNS, subscription_params, subscription_row};
use subscriptions::{
    SubscriptionNow, begin_settlement, health_update, parked_under, patch_subscription,
    settle_batch,
};
use writer::{Priority, Writer};

/// Rows a bulk replay or a prune changes per writer operation, so that
/// ingest's operations interleave with it instead of waiting for it.
const BATCH_ROWS: usize = 500;

/// How long SQLite waits on a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a delivery created for a disabled subscription is parked.
const PARKED_REASON: &str = "parked: the subscription is disabled";

/// The database file under `data_dir`.
pub const DB_FILE: &str = "hookgate.db";

/// The lock file under `data_dir`.
pub const LOCK_FILE: &str = "hookgate.lock";

/// The SQLite store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    /// Stops checkpointing when the last clone is dropped.
    _checkpointer: Arc<Checkpointer>,
    /// Held for the store's life: the exclusive lock on `data_dir`.
    lock: Arc<File>,
    /// The scratch directory of the `memory` engine, removed on drop.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

/// The writer connection's page cache, in KiB (as a negative
/// `cache_size`, SQLite's unit for "KiB rather than pages").
const WRITER_CACHE_KIB: i64 = -64 * 1024;

/// Maps an SQLite error into the store's own.
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        // A stored value that does not decode: the data is bad, not the
        // database.
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        e => StoreError::Database(e.to_string()),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        db_err(e)
    }
}

fn open_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl SqliteStore {
    /// Settles the deliveries waiting for `subscription_id`, a batch per
    /// writer operation, until none is left (see [`settle_batch`]); a
    /// failed batch is tried again after a pause ([`settle_in_batches`]).
    async fn settle(&self, subscription_id: String) -> Result<(), StoreError> {
        let id = Arc::new(subscription_id);
        settle_in_batches(|| {
            let id = id.clone();
            self.writer
                .run(Priority::Always, move |tx| settle_batch(tx, &id))
        })
        .await
    }

    /// Opens (creating if needed) `data_dir/hookgate.db`, durable.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_in(data_dir, true, None)
    }

    /// A store on a scratch database in a temporary directory, without
    /// fsync: nothing survives the process. The `memory` engine.
    pub fn scratch() -> Result<Self, StoreError> {
        sweep_stale_scratch(&std::env::temp_dir(), SCRATCH_MIN_AGE);
        let dir = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir()
            .map_err(|e| open_err(Path::new("temporary directory"), e))?;
        let path = dir.path().to_owned();
        Self::open_in(&path, false, Some(Arc::new(dir)))
    }

    fn open_in(
        data_dir: &Path,
        durable: bool,
        scratch: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| open_err(data_dir, e))?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        create_private(&path)?;
        // The writer's WAL writes go through hookgate-walbuf: a commit's
        // frames reach the file in a few large writes, not two per page
        // (see that crate). Readers and the checkpointer only read the WAL
        // and keep the default VFS.
        let mut conn = hookgate_walbuf::register()
            .and_then(|vfs| Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), vfs))
            .map_err(|e| open_err(&path, e))?;
        // FULL: a commit is fsynced before its replies go out; group commit
        // is what keeps that affordable. WAL lets readers work beside the
        // writer. temp_store = MEMORY keeps the savepoint of every operation
        // (its statement journal) in memory instead of a temporary file:
        // measured, that file was a large share of the writer's time.
        //
        // foreign_keys = OFF: this writer is the only one, and it writes an
        // event's rows together, parents first, in one operation; the one
        // place rows are deleted (prune) deletes the children explicitly.
        // Enforcement cost a parent look-up per child row (five per
        // webhook) and, with them, a statement journal for the statements
        // that could fail half-way.
        conn.execute_batch(if durable {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; \
             PRAGMA temp_store = MEMORY;"
        } else {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; \
             PRAGMA temp_store = MEMORY;"
        })?;
        // The writer's page cache: SQLite's default is 2 MiB, less than the
        // indexes every insert walks once the database holds a day of
        // events, so the writer re-read their pages from the OS (a copy and
        // a system call each) on most operations.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        schema::migrate(&mut conn)?;
        // The data_dir lock makes this process the only owner of every
        // claim in this file: the claims of its previous process (which
        // died or stopped mid-attempt) are due again now.
        conn.execute(
            "UPDATE deliveries SET lease_token = NULL, next_attempt_at = ?1 \
             WHERE state = 'pending' AND lease_token IS NOT NULL",
            params![ms(crate::clock::now_ms())],
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        // Plans that do not depend on the values bound. Without this
        // guarantee SQLite may plan a statement for the values bound to
        // it, and then prepares it again whenever they change: the fan-out
        // look-up of subscriptions (`ingest.rs`) was compiled anew on every
        // publish, a fifth of the writer's time in `hookgate-bench` row 10.
        // What it gives up needs bound values at planning time: a `LIKE`
        // with a bound pattern, or a partial index matched by a bound
        // value; no statement of the writer relies on either (their
        // partial-index conditions are literals), and the readers, which
        // run the console's searches, keep the default.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // Checkpoints run on their own thread; the writer's automatic one
        // is only a bound (see checkpointer.rs).
        conn.pragma_update(None, "wal_autocheckpoint", checkpointer::BACKSTOP_PAGES)?;
        let requests = Arc::new(writer::WalRequests::default());
        let checkpointer = Arc::new(Checkpointer::start(&path, requests.clone())?);
        let lock = Arc::new(lock);
        let writer = Writer::start(conn, requests, lock.clone())?;
        Ok(SqliteStore {
            writer,
            readers: Readers::new(path),
            _checkpointer: checkpointer,
            lock,
            _scratch: scratch,
        })
    }

    /// Operations that panicked so far (each was rolled back).
    pub fn panics(&self) -> u64 {
        self.writer.panics()
    }

    /// Runs `f` on the writer as an ordinary (never shed) operation; for
    /// tests of the writer's resilience.
    #[cfg(test)]
    pub(crate) async fn write_raw<T: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.run(Priority::Always, f).await
    }
}

/// Takes the exclusive lock on `data_dir`, or says who holds it.
fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    take_lock(data_dir).map_err(|e| match e {
        LockError::Held => open_err(
            data_dir,
            "another hookgate process is using this data_dir (one SQLite store per process; \
             use the postgres engine to run several gateways on one queue)",
        ),
        LockError::Io(path, e) => open_err(&path, e),
    })
}

/// Bytes free for this process on the file system holding `file`; `None`
/// where that cannot be read.
fn free_bytes(file: &File) -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::fs::fstatvfs(file)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Why `data_dir`'s lock was not taken.
enum LockError {
    /// Another process holds it.
    Held,
    /// The lock file could not be opened or locked.
    Io(std::path::PathBuf, std::io::Error),
}

/// The exclusive lock on `data_dir`: held for as long as the file is open.
fn take_lock(data_dir: &Path) -> Result<File, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LockError::Io(path.clone(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held),
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(path, e)),
    }
}

/// The name of every `memory` store's scratch directory starts with this.
const SCRATCH_PREFIX: &str = "hookgate-memory-";

/// A scratch directory younger than this is never swept: it may be one
/// that another process has just created and not yet locked.
const SCRATCH_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the scratch directories of `memory` stores whose process is
/// gone. A process that exits removes its own, but one that is killed
/// cannot, and each left a database of up to hundreds of megabytes behind
/// (seen: 300 MB in `/tmp` after a day of benchmarks). A directory whose
/// lock ([`LOCK_FILE`]) can be taken has no living owner: a live store
/// holds its lock for as long as it is open. Best effort: whatever cannot
/// be read, locked or removed stays.
fn sweep_stale_scratch(tmp: &Path, min_age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            continue;
        }
        let dir = entry.path();
        let old_enough = entry
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if !old_enough {
            continue;
        }
        // Without its lock file it is not a store's (or not yet one).
        let Ok(lock) = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(LOCK_FILE))
        else {
            continue;
        };
        if lock.try_lock().is_ok() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "removed a dead memory store's scratch directory")
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot remove a stale scratch directory")
                }
            }
        }
    }
}

/// Creates the database file readable by its owner only (SQLite gives the
/// WAL and shared-memory files the same mode), and narrows an existing one.
fn create_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| open_err(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Milliseconds as SQLite's signed integer (saturating: "forever" stays
/// forever rather than wrapping to the past).
pub(crate) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A duration in ms as SQLite's signed integer, saturating.
fn dur(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The store's clock.
fn now() -> i64 {
    ms(crate::clock::now_ms())
}

/// `a + b` for times in ms, saturating.
fn later(a: i64, b: Duration) -> i64 {
    a.saturating_add(dur(b))
}

/// A batch of a destination's waiting deliveries made due now (a
/// destination back after a reload): a range of `deliveries_lane`, whose
/// condition the query spells out (schema 11).
const HASTEN_LANE: &str = "UPDATE deliveries SET next_attempt_at = ?2 WHERE id IN \
     (SELECT id FROM deliveries WHERE destination = ?1 \
      AND state = 'pending' AND state <> 'delivered' AND next_attempt_at > ?2 \
      AND lease_token IS NULL LIMIT ?3)";

/// A disabled subscription's parked deliveries, oldest first: a range of
/// `deliveries_lane`.
const PARKED_LIST: &str = "SELECT d.id, d.event_id, e.event_type, e.received_at \
     FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.destination = ?1 AND d.state = 'parked' AND d.state <> 'delivered' \
     ORDER BY d.id LIMIT ?2";

pub(crate) fn status_of(s: &str) -> Result<EventStatus, StoreError> {
    EventStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

pub(crate) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("headers: {e}")))
}

pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert(&self, event: NewEvent, opts: InsertOptions) -> Result<Inserted, StoreError> {
        self.writer
            .run(Priority::Ingest, move |tx| {
                #[cfg(debug_assertions)]
                fault::on_insert(&event.route);
                insert_event(tx, &event, &opts)
            })
            .await
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| claim(tx, limit, lease, &skip))
            .await
    }

    async fn renew(&self, id: i64, token: LeaseToken, lease: Duration) -> Result<bool, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at = ?3 \
                         WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
                    )?
                    .execute(params![id, token.0, later(now(), lease)])?
                    > 0)
            })
            .await
    }

    async fn release(&self, id: i64, token: LeaseToken) -> Result<bool, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at = ?3, lease_token = NULL \
                         WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
                    )?
                    .execute(params![id, token.0, now()])?
                    > 0)
            })
            .await
    }

    async fn record(&self, attempt: AttemptRecord) -> Result<Recorded, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| record(tx, &attempt))
            .await
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        self.readers
            .read(|tx| {
                let next: Option<i64> = tx
                    .prepare_cached(
                        "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
                    )?
                    .query_row([], |r| r.get(0))?;
                Ok(next.map(|n| Duration::from_millis(n.saturating_sub(now()).max(0) as u64)))
            })
            .await
    }

    async fn list(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        self.readers
            .read(move |tx| list_events(tx, &filter, limit, cursor))
            .await
    }

    async fn get(&self, id: String) -> Result<Option<EventDetail>, StoreError> {
        self.readers.read(move |tx| get_event(tx, &id)).await
    }

    async fn replay(&self, target: ReplayTarget, to: Option<String>) -> Result<u64, StoreError> {
        let target = Arc::new((target, to));
        let mut total = 0;
        let mut after = i64::MIN;
        // Each batch is its own writer operation, so a replay of a million
        // dead letters never holds ingest up for long.
        loop {
            let t = target.clone();
            let (n, last) = self
                .writer
                .run(Priority::Always, move |tx| {
                    replay_batch(tx, &t.0, t.1.as_deref(), after)
                })
                .await?;
            total += n;
            match last {
                Some(last) if n as usize == BATCH_ROWS => after = last,
                _ => return Ok(total),
            }
        }
    }

    async fn hasten(&self, destinations: Vec<String>) -> Result<u64, StoreError> {
        let mut total = 0;
        for destination in destinations {
            let destination: Arc<str> = Arc::from(destination);
            // In batches, each its own writer operation (a destination
            // brought back may have a day's backlog waiting): those made
            // due leave the `> now` range, so each batch takes the next.
            loop {
                let d = destination.clone();
                let n = self
                    .writer
                    .run(Priority::Always, move |tx| {
                        Ok(tx.prepare_cached(HASTEN_LANE)?.execute(params![
                            &*d,
                            now(),
                            BATCH_ROWS as i64
                        ])? as u64)
                    })
                    .await?;
                total += n;
                if n < BATCH_ROWS as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        // Settlements a crash (or a failed batch) left unfinished.
        let unfinished: Vec<String> = self
            .readers
            .read(|c| {
                Ok(
                    c.prepare("SELECT subscription_id FROM subscription_settlements")?
                        .query_map([], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?,
                )
            })
            .await?;
        for sub in unfinished {
            self.settle(sub).await?;
        }
        let mut total = 0;
        loop {
            let n = self
                .writer
                .run(Priority::Always, move |tx| prune_batch(tx, retention))
                .await?;
            total += n;
            if (n as usize) < BATCH_ROWS {
                return Ok(total);
            }
        }
    }

    async fn create_subscription(&self, s: Subscription) -> Result<Subscription, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| {
                let mut s = s.clone();
                s.created_at_ms = now().max(0) as u64;
                tx.prepare_cached(&format!(
                    "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18, ?19)"
                ))?
                .execute(params_from_iter(subscription_params(&s)?))?;
                Ok(s)
            })
            .await
    }

    async fn get_subscription(
        &self,
        tenant: Option<String>,
        id: String,
    ) -> Result<Option<Subscription>, StoreError> {
        self.readers
            .read(move |tx| {
                Ok(tx
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                         WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                    ))?
                    .query_row(params![id, tenant], subscription_row)
                    .optional()?)
            })
            .await
    }

    async fn list_subscriptions(
        &self,
        tenant: String,
        object_id: Option<String>,
        object_type: Option<String>,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.readers
            .read(move |tx| {
                Ok(tx
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant = ?1 \
                         AND (?2 IS NULL OR object_id = ?2) AND (?3 IS NULL OR object_type = ?3) \
                         ORDER BY id"
                    ))?
                    .query_map(params![tenant, object_id, object_type], subscription_row)?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn update_subscription(
        &self,
        tenant: String,
        id: String,
        patch: SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        let sub = id.clone();
        let (updated, more) = self
            .writer
            .run(Priority::Always, move |tx| {
                patch_subscription(tx, &tenant, &id, &patch)
            })
            .await?;
        if more {
            settled_later(&sub, self.settle(sub.clone()).await);
        }
        Ok(updated)
    }

    async fn delete_subscription(&self, tenant: String, id: String) -> Result<bool, StoreError> {
        let sub = id.clone();
        let (deleted, more) = self
            .writer
            .run(Priority::Always, move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM subscriptions WHERE id = ?1 AND tenant = ?2")?
                    .execute(params![id, tenant])?
                    > 0;
                let more = deleted && begin_settlement(tx, &id)?;
                Ok((deleted, more))
            })
            .await?;
        if more {
            settled_later(&sub, self.settle(sub.clone()).await);
        }
        Ok(deleted)
    }

    async fn subscription_outcome(
        &self,
        id: String,
        outcome: AttemptHealth,
        disable_after: Duration,
    ) -> Result<SubscriptionHealth, StoreError> {
        self.writer
            .run(Priority::Always, move |tx| {
                health_update(tx, &id, outcome, disable_after)
            })
            .await
    }

    async fn parked(
        &self,
        subscription_id: String,
        limit: usize,
    ) -> Result<Vec<ParkedDelivery>, StoreError> {
        self.readers
            .read(move |tx| {
                Ok(tx
                    .prepare_cached(PARKED_LIST)?
                    .query_map(
                        params![
                            format!("{SUBSCRIBER_PREFIX}{subscription_id}"),
                            i64::try_from(limit).unwrap_or(i64::MAX)
                        ],
                        |r| {
                            let received: i64 = r.get(3)?;
                            Ok(ParkedDelivery {
                                delivery_id: r.get(0)?,
                                event_id: r.get(1)?,
                                event_type: r.get(2)?,
                                received_at: rfc3339(received.max(0) as u64),
                            })
                        },
                    )?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    fn health(&self) -> Result<(), String> {
        self.writer.health()
    }

    fn operation_panics(&self) -> u64 {
        self.writer.panics()
    }

    fn free_disk_bytes(&self) -> Option<u64> {
        // The lock file is in data_dir, beside the database.
        free_bytes(&self.lock)
    }

    // ---- Operator console: thin calls into console.rs ------------------

    async fn console_list(
        &self,
        filter: ConsoleFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        self.readers
            .read(move |c| Self::console_list(c, &filter, limit, cursor.as_deref()))
            .await
    }

    async fn count_by_status(&self, filter: ConsoleFilter) -> Result<StatusCounts, StoreError> {
        self.readers
            .read(move |c| Self::console_counts(c, &filter))
            .await
    }

    async fn count_replay_set(
        &self,
        filter: ConsoleFilter,
        moving: bool,
    ) -> Result<ReplaySet, StoreError> {
        self.readers
            .read(move |c| Self::console_replay_set(c, &filter, moving))
            .await
    }

    async fn replay_filtered(
        &self,
        filter: ConsoleFilter,
        expected: ReplaySet,
        to: Option<String>,
    ) -> Result<BulkReplay, StoreError> {
        // The confirmed set is counted again on a reader; then requeued in
        // batches, each its own writer operation (the filter checked again
        // per row), so a replay of a hundred thousand dead letters never
        // holds ingest up for long. The events' statuses are refreshed
        // after the last batch, not in each: the filter may name a status,
        // and an event whose deliveries span two batches would leave it
        // after the first (dead -> pending) and have the rest of its
        // confirmed deliveries skipped. Meanwhile a stale status is only
        // shown, never acted on: each attempt's record refreshes it too.
        let filter = Arc::new(filter);
        let to: Option<Arc<str>> = to.map(Arc::from);
        let f = filter.clone();
        let movable = to.is_some();
        let set = self
            .readers
            .read(move |c| Self::console_replay_set(c, &f, movable))
            .await?;
        if set != expected {
            return Ok(BulkReplay::Changed(set));
        }
        let mut tally = ReplayTally::default();
        let mut after = i64::MIN;
        loop {
            let (f, to) = (filter.clone(), to.clone());
            let (batch, requeued, last) = self
                .writer
                .run(Priority::Always, move |c| {
                    Self::console_replay_batch(c, &f, after, to.as_deref())
                })
                .await?;
            let Some(last) = last else {
                break;
            };
            after = last;
            tally.add(batch, requeued);
        }
        for chunk in tally.events_in_chunks(BATCH_ROWS) {
            self.writer
                .run(Priority::Always, move |c| {
                    Self::console_refresh_statuses(c, &chunk)
                })
                .await?;
        }
        Ok(tally.replayed())
    }

    async fn replay_delivery(
        &self,
        event_id: String,
        delivery_id: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(Priority::Always, move |c| {
                Self::console_replay_delivery(c, &event_id, delivery_id)
            })
            .await
    }

    async fn backlog(&self) -> Result<Vec<Backlog>, StoreError> {
        self.readers.read(Self::console_backlog).await
    }

    async fn destination_stats(
        &self,
        since_ms: u64,
        now_ms: u64,
        buckets: u32,
    ) -> Result<Vec<DestinationStats>, StoreError> {
        self.readers
            .read(move |c| Self::console_destination_stats(c, since_ms, now_ms, buckets))
            .await
    }

    async fn parked_deliveries(
        &self,
        destinations: Vec<String>,
    ) -> Result<Vec<(String, ParkedDeliveries)>, StoreError> {
        self.readers
            .read(move |c| Self::console_parked(c, &destinations))
            .await
    }

    async fn inbound(&self, event_id: String) -> Result<Option<InboundView>, StoreError> {
        self.readers
            .read(move |c| Self::console_inbound(c, &event_id))
            .await
    }
}

#[cfg(test)]
mod tests;
