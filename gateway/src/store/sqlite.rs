//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, owned by
//! one thread that applies operations in batches.
//!
//! Group commit: the thread takes every operation waiting in its queue (up
//! to [`MAX_BATCH`]), applies them in one transaction (each in its own
//! savepoint, so one bad operation fails alone) and commits once: many
//! concurrent webhooks share one fsync. Replies are sent only after the
//! commit, so a caller that hears "inserted" knows the event is on disk.
//!
//! The same code runs the `memory` engine on an in-memory database.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};

use super::stats::{
    Backlog, BulkReplay, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    StatusCounts,
};
use super::{
    AttemptRecord, AttemptView, DeliveryView, DueDelivery, EventDetail, EventFilter, EventPage,
    EventStatus, EventSummary, Inserted, MessageView, NewEvent, NextState, ReplayTarget, Store,
    StoreError, Subscription, SubscriptionHealth, rfc3339,
};
use crate::plugin::Message;

/// Deliveries to a subscription have destination `sub:<subscription id>`.
pub const SUBSCRIBER_PREFIX: &str = "sub:";

/// Most operations applied in one transaction. Bounds the latency a commit
/// adds to the first operation of a batch.
const MAX_BATCH: usize = 512;

/// Operations waiting for the writer before callers are told to back off
/// (ingress answers 503 with Retry-After).
const QUEUE_CAPACITY: usize = 8192;

/// How long SQLite waits on a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    route       TEXT NOT NULL,
    source_id   TEXT,
    received_at INTEGER NOT NULL,
    status      TEXT NOT NULL,
    event_type  TEXT
);
CREATE INDEX IF NOT EXISTS events_source ON events(route, source_id, received_at)
    WHERE source_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status ON events(status, id);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);

CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    message_id   TEXT,
    event_type   TEXT,
    content_type TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_event ON messages(event_id);

CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    message_id      INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed         INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries(message_id);
CREATE INDEX IF NOT EXISTS deliveries_destination ON deliveries(destination, state);

CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    status       INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    response     TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    object_id       TEXT NOT NULL,
    object_type     TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    callback_url    TEXT NOT NULL,
    callback_token  TEXT,
    context         TEXT,
    validity        INTEGER NOT NULL,
    active          INTEGER NOT NULL,
    secret          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    failing_since   INTEGER,
    disabled_reason TEXT
);
CREATE INDEX IF NOT EXISTS subscriptions_object ON subscriptions(object_type, object_id);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions(tenant);
"#;

const SUBSCRIPTION_COLUMNS: &str = "id, tenant, object_id, object_type, event_types, callback_url, \
     callback_token, context, validity, active, secret, created_at, failing_since, disabled_reason";

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let event_types: String = r.get(4)?;
    let context: Option<String> = r.get(7)?;
    let validity: i64 = r.get(8)?;
    let created: i64 = r.get(11)?;
    let failing: Option<i64> = r.get(12)?;
    Ok(Subscription {
        id: r.get(0)?,
        tenant: r.get(1)?,
        object_id: r.get(2)?,
        object_type: r.get(3)?,
        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
        callback_url: r.get(5)?,
        callback_token: r.get(6)?,
        context: context.and_then(|c| serde_json::from_str(&c).ok()),
        validity_ms: validity.max(0) as u64,
        active: r.get::<_, i64>(9)? != 0,
        secret: r.get(10)?,
        created_at_ms: created.max(0) as u64,
        failing_since_ms: failing.map(|f| f.max(0) as u64),
        disabled_reason: r.get(13)?,
    })
}

/// A reply to send once the batch's fate is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// One operation for the writer thread.
type Op = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// The SQLite store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/hookgate.db`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let path = data_dir.join("hookgate.db");
        let conn = Connection::open(&path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        conn.execute_batch(
            // FULL: a commit is fsynced before its replies go out; group
            // commit is what keeps that affordable.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        Self::start(conn)
    }

    /// An in-memory store: same behaviour, no durability.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;")?;
        Self::start(conn)
    }

    fn start(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(super::sqlite_console::SCHEMA)?;
        // A claim is a lease; after a restart nothing is in flight, so every
        // claimed delivery is due again now (at-least-once, never lost).
        conn.execute(
            "UPDATE deliveries SET claimed = 0, next_attempt_at = ?1 \
             WHERE state = 'pending' AND claimed = 1",
            params![ms(crate::clock::now_ms())],
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        let (tx, rx) = mpsc::channel::<Op>(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || writer(&mut conn, rx))
            .map_err(|e| StoreError::Open {
                path: "writer thread".into(),
                message: e.to_string(),
            })?;
        Ok(SqliteStore { tx })
    }

    /// Queues `f` for the writer and waits for its committed result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let op: Op = Box::new(move |tx| {
            let result = f(tx);
            Box::new(move |committed: Result<(), String>| {
                let out = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
                };
                let _ = reply_tx.send(out);
            })
        });
        self.tx.try_send(op).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer loop: batch, apply, commit, reply.
fn writer(conn: &mut Connection, mut rx: mpsc::Receiver<Op>) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = (|| -> rusqlite::Result<()> {
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for op in batch.drain(..) {
                // A savepoint per operation: one that fails rolls back alone.
                let sp = tx.savepoint()?;
                let reply = op(&sp);
                sp.commit()?;
                replies.push(reply);
            }
            tx.commit()
        })();
        let committed = outcome.map_err(|e| {
            tracing::error!(
                "store commit failed, {} operation(s) lost: {e}",
                replies.len()
            );
            e.to_string()
        });
        for reply in replies.drain(..) {
            reply(committed.clone());
        }
        batch.clear();
    }
}

/// Milliseconds as SQLite's signed integer (saturating: "forever" stays
/// forever rather than wrapping to the past).
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn status_of(s: &str) -> Result<EventStatus, StoreError> {
    EventStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

/// Recomputes an event's status from its deliveries.
fn refresh_event_status(tx: &Connection, event_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE events SET status = CASE \
           WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND state = 'pending') THEN 'pending' \
           WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1 AND state = 'dead') THEN 'dead' \
           ELSE 'delivered' END \
         WHERE id = ?1",
    )?
    .execute(params![event_id])?;
    Ok(())
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
            received_at: rfc3339(received as u64),
            received_at_ms: received as u64,
        },
        status,
    ))
}

fn with_status((mut s, status): (EventSummary, String)) -> Result<EventSummary, StoreError> {
    s.status = status_of(&status)?;
    Ok(s)
}

fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("headers: {e}")))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert(&self, event: NewEvent, dedup_since_ms: u64) -> Result<Inserted, StoreError> {
        self.run(move |tx| {
            if let Some(source_id) = &event.source_id {
                let existing: Option<String> = tx
                    .prepare_cached(
                        "SELECT id FROM events WHERE route = ?1 AND source_id = ?2 \
                         AND received_at >= ?3 ORDER BY received_at LIMIT 1",
                    )?
                    .query_row(params![event.route, source_id, ms(dedup_since_ms)], |r| r.get(0))
                    .optional()?;
                if let Some(existing_id) = existing {
                    return Ok(Inserted::Duplicate { existing_id });
                }
            }
            let now = ms(crate::clock::now_ms());
            // Subscriptions matching each fan-out, resolved in this
            // transaction.
            let mut fanout_targets: Vec<Vec<String>> = Vec::with_capacity(event.fanout.len());
            for f in &event.fanout {
                let ids: Vec<String> = tx
                    .prepare_cached(
                        "SELECT id FROM subscriptions WHERE active = 1 AND validity > ?1 \
                         AND object_type = ?2 AND object_id = ?3 AND (?4 IS NULL OR tenant = ?4) \
                         AND EXISTS (SELECT 1 FROM json_each(event_types) WHERE value = ?5 OR value = '*') \
                         ORDER BY id",
                    )?
                    .query_map(
                        params![now, f.object_type, f.object_id, f.tenant, f.event_type],
                        |r| r.get(0),
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                fanout_targets.push(ids);
            }
            let deliveries: usize = event.messages.iter().map(|m| m.destinations.len()).sum::<usize>()
                + fanout_targets.iter().map(Vec::len).sum::<usize>();
            let status = if deliveries == 0 { "delivered" } else { "pending" };
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
                Self::insert_inbound(tx, &event.id, inbound)?;
            }
            let messages = event
                .messages
                .iter()
                .map(|m| (&m.message, m.destinations.clone()))
                .chain(
                    event
                        .fanout
                        .iter()
                        .zip(fanout_targets)
                        .filter(|(_, subs)| !subs.is_empty())
                        .map(|(f, subs)| {
                            (&f.envelope, subs.into_iter().map(|id| format!("{SUBSCRIBER_PREFIX}{id}")).collect())
                        }),
                );
            for (idx, (message, destinations)) in messages.enumerate() {
                let headers = serde_json::to_string(&message.headers)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                tx.prepare_cached(
                    "INSERT INTO messages (event_id, idx, message_id, event_type, content_type, headers, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    event.id,
                    idx as i64,
                    message.id,
                    message.event_type,
                    message.content_type,
                    headers,
                    &message.body[..]
                ])?;
                let message_row = tx.last_insert_rowid();
                for dest in &destinations {
                    tx.prepare_cached(
                        "INSERT INTO deliveries (event_id, message_id, destination, state, next_attempt_at) \
                         VALUES (?1, ?2, ?3, 'pending', ?4)",
                    )?
                    .execute(params![event.id, message_row, dest, now])?;
                }
            }
            Ok(Inserted::New { deliveries })
        })
        .await
    }

    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        lease_until_ms: u64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.run(move |tx| {
            let claimed: Vec<(i64, String, i64, String, u32, u32)> = tx
                .prepare_cached(
                    "UPDATE deliveries SET claimed = 1, next_attempt_at = ?1 \
                     WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' \
                                  AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3) \
                     RETURNING id, event_id, message_id, destination, attempts, retries",
                )?
                .query_map(
                    params![ms(lease_until_ms), ms(now_ms), limit as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(claimed.len());
            let mut cache: Vec<(i64, Message, String)> = Vec::new();
            for (id, event_id, message_row, destination, attempts, retries) in claimed {
                let (message, route) = match cache.iter().find(|(m, _, _)| *m == message_row) {
                    Some((_, m, r)) => (m.clone(), r.clone()),
                    None => {
                        let (message, route) = tx
                            .prepare_cached(
                                "SELECT m.message_id, m.event_type, m.content_type, m.headers, m.body, e.route \
                                 FROM messages m JOIN events e ON e.id = m.event_id WHERE m.id = ?1",
                            )?
                            .query_row(params![message_row], |r| {
                                let headers: String = r.get(3)?;
                                let body: Vec<u8> = r.get(4)?;
                                Ok((
                                    (r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, headers, body),
                                    r.get::<_, String>(5)?,
                                ))
                            })?;
                        let (mid, et, ct, headers, body) = message;
                        let message = Message {
                            id: mid,
                            event_type: et,
                            content_type: ct,
                            headers: headers_from_json(&headers)?,
                            body: Bytes::from(body),
                        };
                        cache.push((message_row, message.clone(), route.clone()));
                        (message, route)
                    }
                };
                out.push(DueDelivery {
                    id,
                    event_id,
                    route,
                    destination,
                    attempts,
                    retries,
                    message,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record(&self, a: AttemptRecord) -> Result<(), StoreError> {
        self.run(move |tx| {
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
            let (state, next_at, retry_inc, last_error) = match &a.next {
                NextState::Delivered => ("delivered", 0i64, 0i64, None),
                NextState::Retry { at_ms } => (
                    "pending",
                    ms(*at_ms),
                    1,
                    a.error.clone().or_else(|| a.status.map(|s| format!("HTTP {s}"))),
                ),
                NextState::Dead { reason } => ("dead", 0, 0, Some(reason.clone())),
            };
            let event_id: Option<String> = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = ?2, next_attempt_at = ?3, claimed = 0, \
                     attempts = attempts + 1, retries = retries + ?4, last_error = ?5 \
                     WHERE id = ?1 RETURNING event_id",
                )?
                .query_row(params![a.delivery_id, state, next_at, retry_inc, last_error], |r| r.get(0))
                .optional()?;
            if let Some(event_id) = event_id {
                refresh_event_status(tx, &event_id)?;
            }
            Ok(())
        })
        .await
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        self.run(|tx| {
            let next: Option<i64> = tx
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(next.map(|n| n.max(0) as u64))
        })
        .await
    }

    async fn list(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        self.run(move |tx| {
            let (mut where_sql, mut args) = filter_sql(&filter, None);
            if let Some(c) = cursor {
                where_sql.push_str(" AND e.id < ?");
                args.push(rusqlite::types::Value::Text(c));
            }
            let sql = format!(
                "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
                 FROM events e WHERE {where_sql} ORDER BY e.id DESC LIMIT {}",
                limit + 1
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
        })
        .await
    }

    async fn get(&self, id: String) -> Result<Option<EventDetail>, StoreError> {
        self.run(move |tx| {
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
                        next_attempt_at: (state == EventStatus::Pending).then(|| rfc3339(next.max(0) as u64)),
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
        })
        .await
    }

    async fn replay(&self, target: ReplayTarget, now_ms: u64) -> Result<u64, StoreError> {
        self.run(move |tx| {
            let (where_sql, mut args) = match &target {
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
            // A delivery in flight right now is left to finish.
            let sql = format!(
                "UPDATE deliveries SET state = 'pending', retries = 0, claimed = 0, next_attempt_at = ? \
                 WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id \
                              WHERE {where_sql} AND d.claimed = 0) \
                 RETURNING event_id"
            );
            args.insert(0, rusqlite::types::Value::Integer(ms(now_ms)));
            let mut events: Vec<String> = tx
                .prepare(&sql)?
                .query_map(params_from_iter(args), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let count = events.len() as u64;
            events.sort();
            events.dedup();
            for e in &events {
                refresh_event_status(tx, e)?;
            }
            Ok(count)
        })
        .await
    }

    async fn create_subscription(&self, s: Subscription) -> Result<(), StoreError> {
        self.write_subscription(s, true).await.map(|_| ())
    }

    async fn get_subscription(
        &self,
        tenant: Option<String>,
        id: String,
    ) -> Result<Option<Subscription>, StoreError> {
        self.run(move |tx| {
            Ok(tx
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
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
        self.run(move |tx| {
            Ok(tx
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant = ?1 \
                     AND (?2 IS NULL OR object_id = ?2) AND (?3 IS NULL OR object_type = ?3) ORDER BY id"
                ))?
                .query_map(params![tenant, object_id, object_type], subscription_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn update_subscription(&self, s: Subscription) -> Result<bool, StoreError> {
        self.write_subscription(s, false).await
    }

    async fn delete_subscription(&self, tenant: String, id: String) -> Result<bool, StoreError> {
        self.run(move |tx| {
            Ok(tx
                .prepare_cached("DELETE FROM subscriptions WHERE id = ?1 AND tenant = ?2")?
                .execute(params![id, tenant])?
                > 0)
        })
        .await
    }

    async fn subscription_outcome(
        &self,
        id: String,
        success: bool,
        gone: bool,
        now_ms: u64,
        disable_after_ms: u64,
    ) -> Result<SubscriptionHealth, StoreError> {
        self.run(move |tx| {
            if success {
                tx.prepare_cached("UPDATE subscriptions SET failing_since = NULL WHERE id = ?1")?
                    .execute(params![id])?;
                return Ok(SubscriptionHealth::Active);
            }
            let row: Option<(i64, Option<i64>)> = tx
                .prepare_cached("SELECT active, failing_since FROM subscriptions WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((active, failing_since)) = row else {
                return Ok(SubscriptionHealth::Active);
            };
            let since = failing_since.map_or(now_ms, |f| f.max(0) as u64);
            let reason = if gone {
                Some("the callback answered 410 Gone".to_owned())
            } else if now_ms.saturating_sub(since) >= disable_after_ms {
                Some(format!(
                    "failing without a success since {}",
                    rfc3339(since)
                ))
            } else {
                None
            };
            match reason {
                Some(reason) if active != 0 => {
                    tx.prepare_cached(
                        "UPDATE subscriptions SET active = 0, failing_since = ?2, disabled_reason = ?3 WHERE id = ?1",
                    )?
                    .execute(params![id, ms(since), reason])?;
                    Ok(SubscriptionHealth::Disabled)
                }
                _ => {
                    tx.prepare_cached("UPDATE subscriptions SET failing_since = ?2 WHERE id = ?1")?
                        .execute(params![id, ms(since)])?;
                    Ok(SubscriptionHealth::Active)
                }
            }
        })
        .await
    }

    // ---- Operator console: thin calls into sqlite_console.rs ----------

    async fn console_list(
        &self,
        filter: ConsoleFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        self.run(move |c| Self::console_list(c, &filter, limit, cursor.as_deref()))
            .await
    }

    async fn count_by_status(&self, filter: ConsoleFilter) -> Result<StatusCounts, StoreError> {
        self.run(move |c| Self::console_counts(c, &filter)).await
    }

    async fn count_replay_set(&self, filter: ConsoleFilter) -> Result<ReplaySet, StoreError> {
        self.run(move |c| Self::console_replay_set(c, &filter))
            .await
    }

    async fn replay_filtered(
        &self,
        filter: ConsoleFilter,
        expected: ReplaySet,
        now_ms: u64,
    ) -> Result<BulkReplay, StoreError> {
        self.run(move |c| Self::console_replay_filtered(c, &filter, expected, now_ms))
            .await
    }

    async fn replay_delivery(
        &self,
        event_id: String,
        delivery_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| Self::console_replay_delivery(c, &event_id, delivery_id, now_ms))
            .await
    }

    async fn backlog(&self) -> Result<Vec<Backlog>, StoreError> {
        self.run(Self::console_backlog).await
    }

    async fn destination_stats(
        &self,
        since_ms: u64,
        now_ms: u64,
        buckets: u32,
    ) -> Result<Vec<DestinationStats>, StoreError> {
        self.run(move |c| Self::console_destination_stats(c, since_ms, now_ms, buckets))
            .await
    }

    async fn parked_deliveries(
        &self,
        destinations: Vec<String>,
    ) -> Result<Vec<(String, ParkedDeliveries)>, StoreError> {
        self.run(move |c| Self::console_parked(c, &destinations))
            .await
    }

    async fn inbound(&self, event_id: String) -> Result<Option<InboundView>, StoreError> {
        self.run(move |c| Self::console_inbound(c, &event_id)).await
    }

    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.run(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM events WHERE status = 'delivered' AND received_at < ?1",
                )?
                .execute(params![ms(before_ms)])?;
            Ok(n as u64)
        })
        .await
    }
}

impl SqliteStore {
    async fn write_subscription(&self, s: Subscription, create: bool) -> Result<bool, StoreError> {
        self.run(move |tx| {
            let event_types = serde_json::to_string(&s.event_types)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let context = s
                .context
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let sql = if create {
                "INSERT INTO subscriptions (id, tenant, object_id, object_type, event_types, callback_url, \
                 callback_token, context, validity, active, secret, created_at, failing_since, disabled_reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            } else {
                "UPDATE subscriptions SET object_id = ?3, object_type = ?4, event_types = ?5, \
                 callback_url = ?6, callback_token = ?7, context = ?8, validity = ?9, active = ?10, \
                 secret = ?11, created_at = ?12, failing_since = ?13, disabled_reason = ?14 \
                 WHERE id = ?1 AND tenant = ?2"
            };
            let n = tx.prepare_cached(sql)?.execute(params![
                s.id,
                s.tenant,
                s.object_id,
                s.object_type,
                event_types,
                s.callback_url,
                s.callback_token,
                context,
                ms(s.validity_ms),
                s.active as i64,
                s.secret,
                ms(s.created_at_ms),
                s.failing_since_ms.map(ms),
                s.disabled_reason
            ])?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;

    fn event(id: &str, source: Option<&str>, dests: &[&str]) -> NewEvent {
        NewEvent {
            id: id.into(),
            route: "r".into(),
            source_id: source.map(Into::into),
            received_at_ms: 1_000,
            messages: vec![NewMessage {
                message: Message::json(Some("e"), &serde_json::json!({"a": 1})),
                destinations: dests.iter().map(|d| (*d).to_owned()).collect(),
            }],
            fanout: Vec::new(),
            inbound: None,
        }
    }

    #[tokio::test]
    async fn duplicate_source_id_within_the_window_is_not_stored_twice() {
        let s = SqliteStore::in_memory().unwrap();
        assert_eq!(
            s.insert(event("evt_1", Some("g1"), &["d"]), 0)
                .await
                .unwrap(),
            Inserted::New { deliveries: 1 }
        );
        assert_eq!(
            s.insert(event("evt_2", Some("g1"), &["d"]), 0)
                .await
                .unwrap(),
            Inserted::Duplicate {
                existing_id: "evt_1".into()
            }
        );
        // Outside the window (the first was received at 1000 ms), it is new.
        assert_eq!(
            s.insert(event("evt_3", Some("g1"), &["d"]), 2_000)
                .await
                .unwrap(),
            Inserted::New { deliveries: 1 }
        );
    }

    #[tokio::test]
    async fn claimed_deliveries_are_leased_and_status_follows_the_least_finished() {
        let s = SqliteStore::in_memory().unwrap();
        s.insert(event("evt_1", None, &["a", "b"]), 0)
            .await
            .unwrap();
        let now = crate::clock::now_ms();
        let due = s.claim_due(now, 10, now + 60_000).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(
            s.claim_due(now, 10, now + 60_000).await.unwrap().is_empty(),
            "leased"
        );
        let ok = |d: &DueDelivery, next| AttemptRecord {
            delivery_id: d.id,
            attempted_at_ms: now,
            status: Some(200),
            latency_ms: 1,
            error: None,
            response_excerpt: None,
            next,
        };
        s.record(ok(&due[0], NextState::Delivered)).await.unwrap();
        let e = s.get("evt_1".into()).await.unwrap().unwrap();
        assert_eq!(e.summary.status, EventStatus::Pending);
        s.record(ok(
            &due[1],
            NextState::Dead {
                reason: "gone".into(),
            },
        ))
        .await
        .unwrap();
        let e = s.get("evt_1".into()).await.unwrap().unwrap();
        assert_eq!(e.summary.status, EventStatus::Dead);
        assert_eq!(
            e.deliveries.iter().map(|d| d.attempts.len()).sum::<usize>(),
            2
        );

        let n = s
            .replay(
                ReplayTarget::Matching(EventFilter {
                    status: Some(EventStatus::Dead),
                    ..Default::default()
                }),
                now,
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        let e = s.get("evt_1".into()).await.unwrap().unwrap();
        assert_eq!(e.summary.status, EventStatus::Pending);
    }

    #[tokio::test]
    async fn pages_are_newest_first_with_a_cursor() {
        let s = SqliteStore::in_memory().unwrap();
        for i in 0..5 {
            s.insert(event(&format!("evt_{i}"), None, &[]), 0)
                .await
                .unwrap();
        }
        let p1 = s.list(EventFilter::default(), 2, None).await.unwrap();
        assert_eq!(
            p1.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_4", "evt_3"]
        );
        let p2 = s.list(EventFilter::default(), 2, p1.next).await.unwrap();
        assert_eq!(
            p2.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_2", "evt_1"]
        );
        let p3 = s.list(EventFilter::default(), 2, p2.next).await.unwrap();
        assert_eq!(p3.events.len(), 1);
        assert!(p3.next.is_none());
        assert_eq!(
            s.prune(u64::MAX).await.unwrap(),
            5,
            "no deliveries = delivered = prunable"
        );
    }
}
