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

mod checkpointer;
mod console;
#[cfg(debug_assertions)]
mod fault;
mod readers;
mod schema;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::stats::{
    Backlog, BulkReplay, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    ReplayTally, StatusCounts,
};
use super::{
    AttemptHealth, AttemptRecord, AttemptView, DeliveryView, DueDelivery, EventDetail, EventFilter,
    EventPage, EventStatus, EventSummary, InsertOptions, Inserted, LeaseToken, MessageView,
    NewEvent, NextState, ParkedDelivery, Recorded, ReplayTarget, Retention, SUBSCRIBER_PREFIX,
    SUBSCRIPTION_DELETED, Store, StoreError, Subscription, SubscriptionHealth, SubscriptionPatch,
    rfc3339, settle_in_batches, settled_later,
};
use crate::plugin::Message;
use checkpointer::Checkpointer;
use readers::Readers;
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
    _lock: Arc<File>,
    /// The scratch directory of the `memory` engine, removed on drop.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

/// Maps an SQLite error into the store's own.
/// The writer connection's page cache, in KiB (as a negative
/// `cache_size`, SQLite's unit for "KiB rather than pages").
const WRITER_CACHE_KIB: i64 = -64 * 1024;

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
        let mut conn = Connection::open(&path).map_err(|e| open_err(&path, e))?;
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
        // Checkpoints run on their own thread; the writer's automatic one
        // is only a bound (see checkpointer.rs).
        conn.pragma_update(None, "wal_autocheckpoint", checkpointer::BACKSTOP_PAGES)?;
        let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = Arc::new(Checkpointer::start(&path, restart.clone())?);
        let lock = Arc::new(lock);
        let writer = Writer::start(conn, restart, lock.clone())?;
        Ok(SqliteStore {
            writer,
            readers: Readers::new(path),
            _checkpointer: checkpointer,
            _lock: lock,
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
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| open_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(open_err(
            data_dir,
            "another hookgate process is using this data_dir (one SQLite store per process; \
             use the postgres engine to run several gateways on one queue)",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(open_err(&path, e)),
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

pub(crate) fn status_of(s: &str) -> Result<EventStatus, StoreError> {
    EventStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

pub(crate) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("headers: {e}")))
}

pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Recomputes an event's status from its deliveries.
fn refresh_event_status(tx: &Connection, event_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE events SET status = CASE \
           WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND state IN ('pending', 'parked')) THEN 'pending' \
           WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND state = 'dead') THEN 'dead' \
           ELSE 'delivered' END \
         WHERE id = ?1",
    )?
    .execute(params![event_id])?;
    Ok(())
}

// Issue 13: the sending side's extra columns follow the original 14
// (`subscription_columns`).
pub(crate) const SUBSCRIPTION_COLUMNS: &str = "id, tenant, object_id, object_type, event_types, callback_url, \
     callback_token, context, validity, active, secret, created_at, failing_since, disabled_reason, \
     headers, properties, signature_scheme, previous_secret, previous_secret_expires";

/// Encodes `s` as the values of [`SUBSCRIPTION_COLUMNS`], in that order:
/// what [`subscription_row`] decodes.
pub(crate) fn subscription_params(
    s: &Subscription,
) -> Result<Vec<rusqlite::types::Value>, StoreError> {
    use rusqlite::types::Value;
    let mut values = vec![
        Value::from(s.id.clone()),
        Value::from(s.tenant.clone()),
        Value::from(s.object_id.clone()),
        Value::from(s.object_type.clone()),
        Value::from(json_text(&s.event_types)?),
        Value::from(s.callback_url.clone()),
        Value::from(s.callback_token.clone()),
        Value::from(s.context.as_ref().map(json_text).transpose()?),
        Value::from(ms(s.validity_ms)),
        Value::from(s.active),
        Value::from(s.secret.clone()),
        Value::from(ms(s.created_at_ms)),
        Value::from(s.failing_since_ms.map(ms)),
        Value::from(s.disabled_reason.clone()),
    ];
    values.extend(super::subscription_columns::values(s)?);
    Ok(values)
}

/// Decodes a row of [`SUBSCRIPTION_COLUMNS`].
pub(crate) fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let event_types: String = r.get(4)?;
    let context: Option<String> = r.get(7)?;
    let validity: i64 = r.get(8)?;
    let created: i64 = r.get(11)?;
    let failing: Option<i64> = r.get(12)?;
    let mut s = Subscription {
        id: r.get(0)?,
        tenant: r.get(1)?,
        object_id: r.get(2)?,
        object_type: r.get(3)?,
        event_types: super::subscription_columns::json_column(4, "event_types", &event_types)?,
        callback_url: r.get(5)?,
        callback_token: r.get(6)?,
        context: context
            .map(|c| super::subscription_columns::json_column(7, "context", &c))
            .transpose()?,
        validity_ms: validity.max(0) as u64,
        active: r.get::<_, i64>(9)? != 0,
        secret: r.get(10)?,
        created_at_ms: created.max(0) as u64,
        failing_since_ms: failing.map(|f| f.max(0) as u64),
        disabled_reason: r.get(13)?,
        headers: Default::default(),
        properties: None,
        signature_scheme: Default::default(),
        previous_secret: None,
        previous_secret_expires_ms: None,
    };
    super::subscription_columns::read(r, 14, &mut s)?;
    Ok(s)
}

fn filter_sql(
    filter: &EventFilter,
    delivery_alias: Option<&str>,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(status) = filter.status {
        match delivery_alias {
            Some(d) => clauses.push(format!("{d}.state = ?")),
            None => clauses.push("e.status = ?".to_owned()),
        }
        args.push(Value::Text(status.as_str().to_owned()));
    }
    if let Some(route) = &filter.route {
        clauses.push("e.route = ?".to_owned());
        args.push(Value::Text(route.clone()));
    }
    if let Some(dest) = &filter.destination {
        match delivery_alias {
            Some(d) => clauses.push(format!("{d}.destination = ?")),
            None => clauses.push(
                "EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id AND x.destination = ?)"
                    .to_owned(),
            ),
        }
        args.push(Value::Text(dest.clone()));
    }
    if let Some(since) = filter.since_ms {
        clauses.push("e.received_at >= ?".to_owned());
        args.push(Value::Integer(ms(since)));
    }
    if let Some(until) = filter.until_ms {
        clauses.push("e.received_at < ?".to_owned());
        args.push(Value::Integer(ms(until)));
    }
    let sql = if clauses.is_empty() {
        "1 = 1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    (sql, args)
}

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<(EventSummary, String)> {
    let received: i64 = row.get("received_at")?;
    let status: String = row.get("status")?;
    Ok((
        EventSummary {
            id: row.get("id")?,
            route: row.get("route")?,
            status: EventStatus::Pending,
            source_id: row.get("source_id")?,
            event_type: row.get("event_type")?,
            received_at: rfc3339(received.max(0) as u64),
            received_at_ms: received.max(0) as u64,
        },
        status,
    ))
}

fn with_status((mut s, status): (EventSummary, String)) -> Result<EventSummary, StoreError> {
    s.status = status_of(&status)?;
    Ok(s)
}

/// The stored message `message_row` and its event's route.
fn load_message(tx: &Connection, message_row: i64) -> Result<(Message, String), StoreError> {
    let (mid, et, ct, headers, body, route) = tx
        .prepare_cached(
            "SELECT m.message_id, m.event_type, m.content_type, m.headers, m.body, e.route \
             FROM messages m JOIN events e ON e.id = m.event_id WHERE m.id = ?1",
        )?
        .query_row(params![message_row], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
    Ok((
        Message {
            id: mid,
            event_type: et,
            content_type: ct,
            headers: headers_from_json(&headers)?,
            body: Bytes::from(body),
        },
        route,
    ))
}

/// The insert, inside the writer's savepoint.
fn insert_event(
    tx: &Connection,
    event: &NewEvent,
    opts: &InsertOptions,
) -> Result<Inserted, StoreError> {
    let now = now();
    if let Some(source_id) = &event.source_id {
        // Insert-or-conflict on the unique key: the key is ours if it was
        // free or its window has passed. Two inserts of the same provider
        // delivery can never both win, whoever runs them.
        //
        // Two plain statements rather than one `ON CONFLICT DO UPDATE ...
        // RETURNING`: that form runs in a statement journal (a copy of
        // every page it touches) with an ephemeral table for its rows, a
        // tenth of the writer's time in its profile. A new key, the common
        // case, is the one insert.
        let expires = later(now, opts.dedup_window);
        let mut won = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO dedup (route, source_id, event_id, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![event.route, source_id, event.id, expires])?
            == 1;
        if !won {
            won = tx
                .prepare_cached(
                    "UPDATE dedup SET event_id = ?3, expires_at = ?4, orphaned = NULL \
                     WHERE source_id = ?2 AND route = ?1 AND expires_at <= ?5",
                )?
                .execute(params![event.route, source_id, event.id, expires, now])?
                == 1;
        }
        if !won {
            let existing_id: String = tx
                .prepare_cached("SELECT event_id FROM dedup WHERE source_id = ?1 AND route = ?2")?
                .query_row(params![source_id, event.route], |r| r.get(0))?;
            return Ok(Inserted::Duplicate { existing_id });
        }
    }
    // Subscriptions matching each fan-out, resolved in this transaction: a
    // subscription created after the commit never sees the event, one
    // deleted before it never does.
    let mut fanout_targets: Vec<Vec<(String, bool)>> = Vec::with_capacity(event.fanout.len());
    for f in &event.fanout {
        let ids: Vec<(String, bool)> = tx
            .prepare_cached(
                "SELECT id, active FROM subscriptions WHERE validity > ?1 \
                 AND object_type = ?2 AND object_id = ?3 AND (?4 IS NULL OR tenant = ?4) \
                 AND EXISTS (SELECT 1 FROM json_each(event_types) WHERE value = ?5 OR value = '*') \
                 ORDER BY id",
            )?
            .query_map(
                params![now, f.object_type, f.object_id, f.tenant, f.event_type],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        fanout_targets.push(ids);
    }
    let deliveries: usize = event
        .messages
        .iter()
        .map(|m| m.destinations.len())
        .sum::<usize>()
        + fanout_targets.iter().map(Vec::len).sum::<usize>();
    let status = if deliveries == 0 {
        "delivered"
    } else {
        "pending"
    };
    let event_type = event
        .messages
        .first()
        .and_then(|m| m.message.event_type.clone())
        .or_else(|| event.fanout.first().map(|f| f.event_type.clone()));
    tx.prepare_cached(
        "INSERT INTO events (id, route, source_id, received_at, status, event_type) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        event.id,
        event.route,
        event.source_id,
        ms(event.received_at_ms),
        status,
        event_type
    ])?;
    if let Some(inbound) = &event.inbound {
        SqliteStore::insert_inbound(tx, &event.id, inbound)?;
    }

    let token = LeaseToken::random();
    let lease_until = opts.claim.as_ref().map(|c| later(now, c.lease));
    let mut claimed = Vec::new();
    let NewEvent {
        id: event_id,
        route,
        messages,
        fanout,
        ..
    } = event;
    let named = messages.iter().map(|m| {
        let dests: Vec<(String, bool)> = m.destinations.iter().map(|d| (d.clone(), true)).collect();
        (&m.message, dests, false)
    });
    let published = fanout
        .iter()
        .zip(fanout_targets)
        .filter(|(_, subs)| !subs.is_empty())
        .map(|(f, subs)| {
            let dests = subs
                .into_iter()
                .map(|(id, active)| (format!("{SUBSCRIBER_PREFIX}{id}"), active))
                .collect();
            (&f.envelope, dests, true)
        });
    for (idx, (message, destinations, to_subscribers)) in named.chain(published).enumerate() {
        let headers = json_text(&message.headers)?;
        tx.prepare_cached(
            "INSERT INTO messages (event_id, idx, message_id, event_type, content_type, headers, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            event_id,
            idx as i64,
            message.id,
            message.event_type,
            message.content_type,
            headers,
            &message.body[..]
        ])?;
        let message_row = tx.last_insert_rowid();
        // Shared by this message's claimed deliveries; copied only if one is.
        let mut shared: Option<Arc<crate::plugin::Message>> = None;
        for (dest, active) in destinations {
            let claim = match (&opts.claim, lease_until) {
                (Some(c), Some(until))
                    if active
                        && ((to_subscribers && c.subscribers)
                            || c.destinations.contains(&dest)) =>
                {
                    Some(until)
                }
                _ => None,
            };
            // A disabled subscription's delivery is parked, not dropped.
            let state = if active { "pending" } else { "parked" };
            tx.prepare_cached(
                "INSERT INTO deliveries (event_id, message_id, destination, state, next_attempt_at, lease_token, last_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event_id,
                message_row,
                dest,
                state,
                claim.unwrap_or(now),
                claim.map(|_| token.0),
                (!active).then_some(PARKED_REASON)
            ])?;
            if claim.is_some() {
                claimed.push(DueDelivery {
                    id: tx.last_insert_rowid(),
                    lease: token,
                    event_id: event_id.clone(),
                    route: route.clone(),
                    destination: dest,
                    attempts: 0,
                    retries: 0,
                    message: shared
                        .get_or_insert_with(|| Arc::new(message.clone()))
                        .clone(),
                });
            }
        }
    }
    Ok(Inserted::New {
        deliveries,
        claimed,
    })
}

/// Due deliveries a claim with lanes to skip passes over, in due order,
/// before it looks destination by destination instead.
const SCAN_PAST: usize = 1024;

/// Leases up to `limit` due deliveries, oldest first, none for a
/// destination in `skip` (lanes that are full).
///
/// The due index is in time order, so a full lane's backlog that is due
/// sits in front of everyone else's and a plain scan passes over all of
/// it: with 300,000 due deliveries for a hanging destination, 100 ms of
/// the writer per claim. So with lanes to skip, the scan in due order
/// stops after [`SCAN_PAST`] rows; if it stopped there short of `limit`,
/// the rest is taken destination by destination (`deliveries_lane`), one
/// index seek per destination whatever its backlog.
fn claim(
    tx: &Connection,
    limit: usize,
    lease: Duration,
    skip: &[String],
) -> Result<Vec<DueDelivery>, StoreError> {
    let now = now();
    let token = LeaseToken::random();
    let lease_until = later(now, lease);
    let mut rows = if skip.is_empty() {
        // `LIMIT ?4 + 0`, not `LIMIT ?4`: SQLite re-plans a statement whose
        // LIMIT is a bare parameter each time a new value is bound to it (a
        // full re-parse, seen in the writer's profile), and the room varies
        // with every claim.
        claimed_rows(
            tx.prepare_cached(
                "UPDATE deliveries SET lease_token = ?1, next_attempt_at = ?2 \
                 WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?3 \
                              ORDER BY next_attempt_at, id LIMIT ?4 + 0) \
                 RETURNING id, event_id, message_id, destination, attempts, retries",
            )?,
            params![token.0, lease_until, now, limit as i64],
        )?
    } else {
        let skip = json_text(&skip)?;
        let mut rows = claimed_rows(
            tx.prepare_cached(
                "UPDATE deliveries SET lease_token = ?1, next_attempt_at = ?2 \
                 WHERE id IN (SELECT id FROM \
                     (SELECT id, destination FROM deliveries \
                      WHERE state = 'pending' AND next_attempt_at <= ?3 \
                      ORDER BY next_attempt_at, id LIMIT ?6 + 0) \
                   WHERE destination NOT IN (SELECT value FROM json_each(?4)) LIMIT ?5 + 0) \
                 RETURNING id, event_id, message_id, destination, attempts, retries",
            )?,
            params![
                token.0,
                lease_until,
                now,
                skip,
                limit as i64,
                SCAN_PAST as i64
            ],
        )?;
        if rows.len() < limit {
            // Did the scan stop at its cap? What it claimed is no longer
            // due, so the cap was reached if what is still due fills the
            // rest of it.
            let left: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
                     WHERE state = 'pending' AND next_attempt_at <= ?1 LIMIT ?2 + 0)",
                )?
                .query_row(params![now, SCAN_PAST as i64], |r| r.get(0))?;
            if left as usize + rows.len() >= SCAN_PAST {
                rows.extend(claimed_rows(
                    tx.prepare_cached(
                        "UPDATE deliveries SET lease_token = ?1, next_attempt_at = ?2 \
                         WHERE id IN ( \
                           WITH RECURSIVE lanes(d) AS ( \
                             SELECT (SELECT MIN(destination) FROM deliveries) \
                             UNION ALL \
                             SELECT (SELECT MIN(destination) FROM deliveries WHERE destination > lanes.d) \
                             FROM lanes WHERE lanes.d IS NOT NULL) \
                           SELECT c.id FROM lanes JOIN deliveries c ON c.id IN \
                             (SELECT id FROM deliveries WHERE destination = lanes.d \
                                AND state = 'pending' AND next_attempt_at <= ?3 \
                              ORDER BY next_attempt_at, id LIMIT ?5 + 0) \
                           WHERE lanes.d IS NOT NULL \
                             AND lanes.d NOT IN (SELECT value FROM json_each(?4)) \
                           ORDER BY c.next_attempt_at, c.id LIMIT ?5 + 0) \
                         RETURNING id, event_id, message_id, destination, attempts, retries",
                    )?,
                    params![token.0, lease_until, now, skip, (limit - rows.len()) as i64],
                )?);
            }
        }
        rows
    };
    // Oldest first across both passes.
    rows.sort_unstable_by_key(|r| r.0);
    let mut out = Vec::with_capacity(rows.len());
    let mut cache: Vec<(i64, Arc<Message>, String)> = Vec::new();
    for (id, event_id, message_row, destination, attempts, retries) in rows {
        let (message, route) = match cache.iter().find(|(m, _, _)| *m == message_row) {
            Some((_, m, r)) => (m.clone(), r.clone()),
            None => {
                let (message, route) = load_message(tx, message_row)?;
                let message = Arc::new(message);
                cache.push((message_row, message.clone(), route.clone()));
                (message, route)
            }
        };
        out.push(DueDelivery {
            id,
            lease: token,
            event_id,
            route,
            destination,
            attempts,
            retries,
            message,
        });
    }
    Ok(out)
}

/// A claimed row: id, event, message row, destination, attempts, retries.
type ClaimedRow = (i64, String, i64, String, u32, u32);

/// Runs a claim's `UPDATE ... RETURNING` and collects its rows.
fn claimed_rows(
    mut stmt: rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<ClaimedRow>, StoreError> {
    Ok(stmt
        .query_map(params, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

fn record(tx: &Connection, a: &AttemptRecord) -> Result<Recorded, StoreError> {
    let now = now();
    let (state, next_at, attempted, retried, last_error) = match &a.next {
        NextState::Delivered => ("delivered", now, 1, 0, None),
        NextState::Retry { after } => (
            "pending",
            later(now, *after),
            1,
            1,
            a.error
                .clone()
                .or_else(|| a.status.map(|s| format!("HTTP {s}"))),
        ),
        NextState::Postpone { after } => ("pending", later(now, *after), 0, 0, a.error.clone()),
        NextState::Dead { reason } => ("dead", now, 1, 0, Some(reason.clone())),
        NextState::Park { reason, attempted } => (
            "parked",
            now,
            i64::from(*attempted),
            0,
            Some(reason.clone()),
        ),
    };
    // A park was decided on a read of the subscription made before this
    // transaction; settle it against the subscription as it is now, in the
    // writer, so that a re-enable (which requeues what is parked) and this
    // park cannot miss each other.
    let (state, last_error, fresh_budget) = match &a.next {
        NextState::Park { .. } => match parked_under(tx, a.delivery_id)? {
            Some(SubscriptionNow::Active) => ("pending", None, true),
            Some(SubscriptionNow::Deleted) => {
                ("dead", Some(SUBSCRIPTION_DELETED.to_owned()), false)
            }
            Some(SubscriptionNow::Disabled) | None => (state, last_error, false),
        },
        _ => (state, last_error, false),
    };
    // The lease is checked in the update itself: a stale token changes
    // nothing, and then no attempt row is written either. No `RETURNING`:
    // SQLite runs such a statement in its own statement journal (a copy of
    // every page it touches) with an ephemeral table for the rows; the
    // event id is one rowid look-up away instead.
    let updated = tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, lease_token = NULL, \
             attempts = attempts + ?5, retries = retries + ?6, last_error = ?7 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'pending'",
        )?
        .execute(params![
            a.delivery_id,
            a.lease.0,
            state,
            next_at,
            attempted,
            retried,
            last_error
        ])?;
    let event_id: Option<String> = if updated == 0 {
        None
    } else {
        Some(
            tx.prepare_cached("SELECT event_id FROM deliveries WHERE id = ?1")?
                .query_row(params![a.delivery_id], |r| r.get(0))?,
        )
    };
    let Some(event_id) = event_id else {
        return Ok(Recorded::LeaseLost);
    };
    if fresh_budget {
        tx.prepare_cached("UPDATE deliveries SET retries = 0 WHERE id = ?1")?
            .execute(params![a.delivery_id])?;
    }
    if attempted > 0 {
        tx.prepare_cached(
            "INSERT INTO attempts (delivery_id, attempted_at, status, latency_ms, error, response) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            a.delivery_id,
            ms(a.attempted_at_ms),
            a.status,
            ms(a.latency_ms),
            a.error,
            a.response_excerpt
        ])?;
    }
    // A delivery that stays pending (or parked) leaves its event pending.
    if state != "pending" && state != "parked" {
        refresh_event_status(tx, &event_id)?;
    }
    Ok(Recorded::Written)
}

/// Settles up to [`BATCH_ROWS`] of the deliveries waiting for subscription
/// `subscription_id` against it as it is now, and says whether more may be
/// left. Re-enabled: what was parked is due now, with a fresh retry
/// budget, at the time it was parked (not the batch's "now"), so it stays
/// ahead of events published while later batches run. Deleted: what was parked or waits for a retry can
/// never be sent, so it is dead, with the reason, and its events finish
/// (and retention prunes them); a delivery in flight (leased, lease not run
/// out) is left to its attempt, which finds the subscription gone. Disabled
/// again meanwhile: parked is right, nothing to do.
///
/// In batches, each its own writer operation, so that a subscription off
/// for a day with a hundred thousand parked deliveries does not hold up
/// ingest while they are settled. A park recorded meanwhile is settled at
/// write time against the same state (see `record`), so nothing
/// slips between batches. The note in `subscription_settlements` (written
/// with the re-enable or the delete) goes with the last batch; prune
/// finishes what a crash left.
fn settle_batch(tx: &Connection, subscription_id: &str) -> Result<bool, StoreError> {
    let now = now();
    let destination = format!("{SUBSCRIBER_PREFIX}{subscription_id}");
    let active: Option<bool> = tx
        .prepare_cached("SELECT active FROM subscriptions WHERE id = ?1")?
        .query_row(params![subscription_id], |r| r.get(0))
        .optional()?;
    let settled = match active {
        Some(true) => tx
            .prepare_cached(&format!(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = min(next_attempt_at, ?2), retries = 0, \
                 lease_token = NULL, last_error = NULL \
                 WHERE id IN (SELECT id FROM deliveries WHERE destination = ?1 \
                   AND state = 'parked' ORDER BY id LIMIT {BATCH_ROWS})"
            ))?
            .execute(params![destination, now])?,
        None => {
            let mut events: Vec<String> = tx
                .prepare_cached(&format!(
                    "UPDATE deliveries SET state = 'dead', lease_token = NULL, \
                     next_attempt_at = ?2, last_error = ?3 \
                     WHERE id IN (SELECT id FROM deliveries WHERE destination = ?1 \
                       AND (state = 'parked' OR (state = 'pending' \
                         AND (lease_token IS NULL OR next_attempt_at <= ?2))) \
                       ORDER BY id LIMIT {BATCH_ROWS}) \
                     RETURNING event_id"
                ))?
                .query_map(params![destination, now, SUBSCRIPTION_DELETED], |r| {
                    r.get(0)
                })?
                .collect::<rusqlite::Result<_>>()?;
            let n = events.len();
            events.sort_unstable();
            events.dedup();
            for e in &events {
                refresh_event_status(tx, e)?;
            }
            n
        }
        Some(false) => 0,
    };
    let more = settled == BATCH_ROWS;
    if !more {
        tx.prepare_cached("DELETE FROM subscription_settlements WHERE subscription_id = ?1")?
            .execute(params![subscription_id])?;
    }
    Ok(more)
}

/// Notes that `subscription_id`'s waiting deliveries are to be settled, and
/// settles the first batch, in the caller's transaction (the re-enable's or
/// the delete's). Whether more may be left.
fn begin_settlement(tx: &Connection, subscription_id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO subscription_settlements (subscription_id) VALUES (?1)",
    )?
    .execute(params![subscription_id])?;
    settle_batch(tx, subscription_id)
}

/// A subscription as a park finds it when it is written.
enum SubscriptionNow {
    Active,
    Disabled,
    Deleted,
}

/// The subscription a delivery would be parked under, as it is now; `None`
/// when the delivery is not to a subscriber (or is gone).
fn parked_under(tx: &Connection, delivery_id: i64) -> Result<Option<SubscriptionNow>, StoreError> {
    let row: Option<(String, Option<bool>)> = tx
        .prepare_cached(
            "SELECT d.destination, s.active FROM deliveries d \
             LEFT JOIN subscriptions s ON s.id = substr(d.destination, ?2) \
             WHERE d.id = ?1",
        )?
        .query_row(
            params![delivery_id, SUBSCRIBER_PREFIX.len() as i64 + 1],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        Some((destination, active)) if destination.starts_with(SUBSCRIBER_PREFIX) => {
            Some(match active {
                Some(true) => SubscriptionNow::Active,
                Some(false) => SubscriptionNow::Disabled,
                None => SubscriptionNow::Deleted,
            })
        }
        _ => None,
    })
}

/// One batch of a replay: requeues up to [`BATCH_ROWS`] matching
/// deliveries with ids above `after`. Returns (requeued, last id seen).
fn replay_batch(
    tx: &Connection,
    target: &ReplayTarget,
    to: Option<&str>,
    after: i64,
) -> Result<(u64, Option<i64>), StoreError> {
    let now = now();
    let (where_sql, mut args) = match target {
        ReplayTarget::Event { id, destination } => {
            let mut sql = "d.event_id = ?".to_owned();
            let mut args = vec![rusqlite::types::Value::Text(id.clone())];
            if let Some(dest) = destination {
                sql.push_str(" AND d.destination = ?");
                args.push(rusqlite::types::Value::Text(dest.clone()));
            }
            (sql, args)
        }
        ReplayTarget::Matching(filter) => filter_sql(filter, Some("d")),
    };
    let movable = crate::store::movable_sql(to.is_some());
    // A delivery in flight (pending, leased, lease not run out) is left to
    // finish, and one parked stays parked for its subscription's re-enable
    // (the console's replay already left it).
    let ids: Vec<(i64, String)> = {
        let sql = format!(
            "SELECT d.id, d.event_id FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE {where_sql}{movable} AND d.id > ? \
             AND d.state <> 'parked' AND NOT (d.state = 'pending' AND d.lease_token IS NOT NULL AND d.next_attempt_at > ?) \
             ORDER BY d.id LIMIT {BATCH_ROWS}"
        );
        args.push(rusqlite::types::Value::Integer(after));
        args.push(rusqlite::types::Value::Integer(now));
        tx.prepare(&sql)?
            .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut events: Vec<&str> = Vec::with_capacity(ids.len());
    for (id, event_id) in &ids {
        tx.prepare_cached(
            "UPDATE deliveries SET state = 'pending', retries = 0, lease_token = NULL, \
             next_attempt_at = ?2, destination = coalesce(?3, destination) WHERE id = ?1",
        )?
        .execute(params![id, now, to])?;
        events.push(event_id);
    }
    events.sort_unstable();
    events.dedup();
    for e in events {
        refresh_event_status(tx, e)?;
    }
    let last = ids.last().map(|(id, _)| *id);
    Ok((ids.len() as u64, last))
}

/// One batch of a prune. Returns events deleted.
fn prune_batch(tx: &Connection, retention: Retention) -> Result<u64, StoreError> {
    let now = now();
    let delivered_before = now.saturating_sub(dur(retention.delivered));
    let dead_before = now.saturating_sub(dur(retention.dead));
    let events: Vec<(String, String, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, route, source_id FROM events \
             WHERE (status = 'delivered' AND received_at < ?1) \
                OR (status = 'dead' AND received_at < ?2) LIMIT ?3",
        )?
        .query_map(
            params![delivered_before, dead_before, BATCH_ROWS as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for (id, route, source_id) in &events {
        if let Some(source_id) = source_id {
            // The event's dedup key goes with it once its window has
            // passed; a key still in its window keeps refusing duplicates
            // (orphaned) until it ends. A key a newer event took is not
            // this event's any more.
            tx.prepare_cached(
                "DELETE FROM dedup WHERE source_id = ?1 AND route = ?2 AND event_id = ?3 \
                 AND expires_at <= ?4",
            )?
            .execute(params![source_id, route, id, now])?;
            tx.prepare_cached(
                "UPDATE dedup SET orphaned = 1 \
                 WHERE source_id = ?1 AND route = ?2 AND event_id = ?3",
            )?
            .execute(params![source_id, route, id])?;
        }
        // Children first, explicitly: the writer does not enforce foreign
        // keys, so nothing cascades (see `open_in`).
        for sql in [
            "DELETE FROM attempts WHERE delivery_id IN \
               (SELECT id FROM deliveries WHERE event_id = ?1)",
            "DELETE FROM deliveries WHERE event_id = ?1",
            "DELETE FROM messages WHERE event_id = ?1",
            "DELETE FROM event_requests WHERE event_id = ?1",
            "DELETE FROM events WHERE id = ?1",
        ] {
            tx.prepare_cached(sql)?.execute(params![id])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM dedup WHERE (source_id, route) IN \
           (SELECT source_id, route FROM dedup \
            WHERE orphaned IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
    )?
    .execute(params![now, BATCH_ROWS as i64])?;
    Ok(events.len() as u64)
}

fn get_event(tx: &Connection, id: &str) -> Result<Option<EventDetail>, StoreError> {
    let Some(row) = tx
        .prepare_cached(
            "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
             FROM events e WHERE e.id = ?1",
        )?
        .query_row(params![id], summary)
        .optional()?
    else {
        return Ok(None);
    };
    let summary = with_status(row)?;
    let mut message_rows: Vec<(i64, MessageView)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, idx, message_id, event_type, content_type, headers, body \
             FROM messages WHERE event_id = ?1 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![id])?;
        while let Some(r) = rows.next()? {
            let body: Vec<u8> = r.get(6)?;
            let headers: String = r.get(5)?;
            message_rows.push((
                r.get(0)?,
                MessageView {
                    index: r.get(1)?,
                    id: r.get(2)?,
                    event_type: r.get(3)?,
                    content_type: r.get(4)?,
                    headers: headers_from_json(&headers)?,
                    size: body.len(),
                    body: String::from_utf8(body).ok(),
                },
            ));
        }
    }
    let mut deliveries = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, message_id, destination, state, attempts, next_attempt_at, last_error \
             FROM deliveries WHERE event_id = ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![id])?;
        while let Some(r) = rows.next()? {
            let message_row: i64 = r.get(1)?;
            let state: String = r.get(3)?;
            let state = status_of(&state)?;
            let next: i64 = r.get(5)?;
            deliveries.push(DeliveryView {
                id: r.get(0)?,
                message_index: message_rows
                    .iter()
                    .find(|(row, _)| *row == message_row)
                    .map(|(_, m)| m.index)
                    .unwrap_or(0),
                destination: r.get(2)?,
                state,
                attempts_made: r.get(4)?,
                next_attempt_at: (state == EventStatus::Pending)
                    .then(|| rfc3339(next.max(0) as u64)),
                last_error: r.get(6)?,
                attempts: Vec::new(),
            });
        }
    }
    for d in &mut deliveries {
        let mut stmt = tx.prepare_cached(
            "SELECT attempted_at, status, latency_ms, error, response FROM attempts \
             WHERE delivery_id = ?1 ORDER BY id",
        )?;
        d.attempts = stmt
            .query_map(params![d.id], |r| {
                let at: i64 = r.get(0)?;
                let latency: i64 = r.get(2)?;
                Ok(AttemptView {
                    at: rfc3339(at.max(0) as u64),
                    status: r.get(1)?,
                    latency_ms: latency.max(0) as u64,
                    error: r.get(3)?,
                    response: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(Some(EventDetail {
        summary,
        messages: message_rows.into_iter().map(|(_, m)| m).collect(),
        deliveries,
    }))
}

fn list_events(
    tx: &Connection,
    filter: &EventFilter,
    limit: usize,
    cursor: Option<String>,
) -> Result<EventPage, StoreError> {
    let (mut where_sql, mut args) = filter_sql(filter, None);
    if let Some(c) = cursor {
        where_sql.push_str(" AND e.id < ?");
        args.push(rusqlite::types::Value::Text(c));
    }
    let sql = format!(
        "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
         FROM events e WHERE {where_sql} ORDER BY e.id DESC LIMIT {}",
        limit.saturating_add(1)
    );
    let rows: Vec<(EventSummary, String)> = tx
        .prepare(&sql)?
        .query_map(params_from_iter(args), summary)?
        .collect::<rusqlite::Result<_>>()?;
    let mut events = rows
        .into_iter()
        .map(with_status)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(EventPage { events, next })
}

fn patch_subscription(
    tx: &Connection,
    tenant: &str,
    id: &str,
    patch: &SubscriptionPatch,
) -> Result<(Option<Subscription>, bool), StoreError> {
    use rusqlite::types::Value;
    let mut sets: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut set = |sql: &'static str, v: Value| {
        sets.push(sql);
        args.push(v);
    };
    if let Some(v) = &patch.object_id {
        set("object_id = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &patch.object_type {
        set("object_type = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &patch.event_types {
        set("event_types = ?", Value::Text(json_text(v)?));
    }
    if let Some(v) = &patch.callback_url {
        set("callback_url = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &patch.callback_token {
        set(
            "callback_token = ?",
            v.clone().map_or(Value::Null, Value::Text),
        );
    }
    if let Some(v) = &patch.context {
        let text = v.as_ref().map(json_text).transpose()?;
        set("context = ?", text.map_or(Value::Null, Value::Text));
    }
    if let Some(v) = patch.validity_ms {
        set("validity = ?", Value::Integer(ms(v)));
    }
    if let Some(v) = &patch.secret {
        set("secret = ?", Value::Text(v.clone()));
    }
    for (sql, v) in super::subscription_columns::patch_sets(patch)? {
        set(sql, v);
    }
    match patch.active {
        // Re-enabling starts a clean slate: no failure streak, no reason.
        Some(true) => {
            sets.push("active = 1, failing_since = NULL, disabled_reason = NULL");
        }
        Some(false) => {
            set(
                "active = 0, disabled_reason = COALESCE(disabled_reason, ?)",
                Value::Text("disabled through the API".into()),
            );
        }
        None => {}
    }
    if sets.is_empty() {
        // Nothing to change: answer the row as it is.
        let row = tx
            .prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1 AND tenant = ?2"
            ))?
            .query_row(params![id, tenant], subscription_row)
            .optional()?;
        return Ok((row, false));
    }
    args.push(Value::Text(id.to_owned()));
    args.push(Value::Text(tenant.to_owned()));
    let sql = format!(
        "UPDATE subscriptions SET {} WHERE id = ? AND tenant = ? RETURNING {SUBSCRIPTION_COLUMNS}",
        sets.join(", ")
    );
    let updated = tx
        .prepare(&sql)?
        .query_row(params_from_iter(args), subscription_row)
        .optional()?;
    let more = if patch.active == Some(true) && updated.is_some() {
        // What was parked while it was off goes out now, oldest first
        // (claims take the earliest due, then the lowest id), with a
        // fresh retry budget: the first batch here, the rest after.
        begin_settlement(tx, id)?
    } else {
        false
    };
    Ok((updated, more))
}

fn health_update(
    tx: &Connection,
    id: &str,
    outcome: AttemptHealth,
    disable_after: Duration,
) -> Result<SubscriptionHealth, StoreError> {
    let now = now();
    if outcome == AttemptHealth::Success {
        tx.prepare_cached(
            "UPDATE subscriptions SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )?
        .execute(params![id])?;
        return Ok(SubscriptionHealth::Active);
    }
    let (force, reason) = match outcome {
        AttemptHealth::Gone => (true, "the callback answered 410 Gone".to_owned()),
        AttemptHealth::Exhausted => (
            true,
            "an event's retries ran out; re-enable with PUT /v1/webhook/{id}".to_owned(),
        ),
        _ => (
            false,
            format!(
                "failing without a success for {}",
                humantime::format_duration(disable_after)
            ),
        ),
    };
    // One conditional statement: whoever else updates the row at the same
    // time, a subscription is disabled once, and only while active.
    let disabled = tx
        .prepare_cached(
            "UPDATE subscriptions SET active = 0, disabled_reason = ?2, \
               failing_since = COALESCE(failing_since, ?3) \
             WHERE id = ?1 AND active = 1 \
               AND (?4 OR ?3 - COALESCE(failing_since, ?3) >= ?5)",
        )?
        .execute(params![id, reason, now, force, dur(disable_after)])?;
    if disabled > 0 {
        return Ok(SubscriptionHealth::Disabled);
    }
    tx.prepare_cached(
        "UPDATE subscriptions SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
    )?
    .execute(params![id, now])?;
    Ok(SubscriptionHealth::Active)
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
                    .prepare_cached(
                        "SELECT d.id, d.event_id, e.event_type, e.received_at \
                         FROM deliveries d JOIN events e ON e.id = d.event_id \
                         WHERE d.destination = ?1 AND d.state = 'parked' ORDER BY d.id LIMIT ?2",
                    )?
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
mod tests {
    use super::*;

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
                tx.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 * 2) \
                     INSERT INTO deliveries (id, event_id, message_id, destination, state, next_attempt_at) \
                     SELECT i, 'evt_' || i, i, CASE WHEN i <= ?1 THEN 'sub:wh_1' ELSE 'sub:wh_2' END, \
                            'parked', 0 FROM n",
                    params![per],
                )?;
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
        let left = |store: SqliteStore| async move {
            store
                .write_raw(|tx| {
                    Ok(tx.query_row(
                        "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'parked'), \
                                (SELECT COUNT(*) FROM subscription_settlements)",
                        [],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                    )?)
                })
                .await
                .unwrap()
        };
        // The first batch of each went with its change; the rest waits,
        // noted.
        assert_eq!(
            left(store.clone()).await,
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
        assert_eq!(left(store.clone()).await, (0, 0));
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
            }),
        };
        let Inserted::New { claimed, .. } = store.insert(ev, opts).await.unwrap() else {
            panic!("new");
        };
        for d in claimed {
            let recorded = store
                .record(AttemptRecord {
                    delivery_id: d.id,
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
                                tx.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                                    r.get(0)
                                })?;
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
        tokio::time::sleep(window.saturating_sub(started.elapsed()) + Duration::from_millis(50))
            .await;
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
}
