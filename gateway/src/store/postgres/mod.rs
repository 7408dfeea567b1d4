//! The shared engine: PostgreSQL, so several gateways serve one queue.
//!
//! Every gateway pointed at the same database (`store.url`) shares events,
//! deliveries, dedup keys, subscriptions and their health. What makes that
//! safe is the store contract ([`crate::store`]) kept by the database
//! itself:
//!
//! - claims take due rows with `FOR UPDATE SKIP LOCKED` in one statement,
//!   so two gateways never take the same delivery and never wait on each
//!   other's claims; each claim writes a random lease token that every later
//!   write checks;
//! - times the store decides come from the database's clock
//!   (`hookgate_now_ms()`), never a gateway's, so clock skew between
//!   machines cannot shorten a lease;
//! - a crashed gateway's leases simply run out and the others claim the
//!   deliveries again; start-up never touches claims (unlike SQLite, nothing
//!   says the previous owner of a claim is dead);
//! - dedup is `INSERT ... ON CONFLICT` on its primary key;
//! - pruning runs under a transaction-scoped advisory lock, one gateway at
//!   a time;
//! - writes that make work due for anyone `NOTIFY` ([`listen`]).
//!
//! Connections come from a `deadpool-postgres` pool (`store.pool_size`);
//! new webhooks ([`ingest`]) and attempts' outcomes ([`records`]) that
//! arrive together are written together, each still decided alone; the
//! schema is versioned ([`schema`]). TLS follows libpq's `sslmode` and
//! `sslrootcert` ([`tls`]).

mod batch;
mod console;
mod events;
mod ingest;
mod listen;
mod records;
mod schema;
mod subscriptions;
pub mod tls;

use std::str::FromStr as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::stats::{
    Backlog, BulkReplay, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    ReplayTally, StatusCounts,
};
use super::{
    AttemptHealth, AttemptRecord, DueDelivery, DueHook, EventDetail, EventFilter, EventPage,
    EventStatus, InsertOptions, Inserted, LeaseToken, NewEvent, ParkedDelivery, Recorded,
    ReplayTarget, Retention, SUBSCRIBER_PREFIX, Store, StoreError, Subscription,
    SubscriptionHealth, SubscriptionPatch, rfc3339, settle_in_batches, settled_later,
};
use crate::plugin::Message;
use events::{filter_sql, get_event, replay_batch, summary};
use subscriptions::{SUBSCRIPTION_COLUMNS, begin_settlement, settle_batch, subscription_row};

/// Rows a bulk replay or a prune changes per transaction, so that no
/// transaction holds many row locks for long.
const BATCH_ROWS: i64 = 500;

/// Due deliveries a claim with lanes to skip passes over, in due order,
/// before it looks destination by destination instead.
const SCAN_PAST: i64 = 1024;

/// A claim: the rows the CTEs `ctes` pick (the last one named `due`, with
/// `id` and `due_at`), leased with token `$1` for `$2` ms and returned
/// with their messages.
fn claim_sql(ctes: &str) -> String {
    format!(
        "WITH {ctes} \
         UPDATE deliveries d SET lease_token = $1, next_attempt_at = hookgate_now_ms() + $2 \
         FROM due, messages m, events e \
         WHERE d.id = due.id AND m.id = d.message_id AND e.id = d.event_id \
         RETURNING d.id, d.event_id, d.destination, d.attempts, d.retries, due.due_at, \
           m.id, m.message_id, m.event_type, m.content_type, m.headers, m.body, e.route"
    )
}

/// The oldest due deliveries, none to a destination in `$3`, at most `$4`.
static CLAIM_DUE: LazyLock<String> = LazyLock::new(|| {
    claim_sql(
        "due AS (\
           SELECT id, next_attempt_at AS due_at FROM deliveries \
           WHERE state = 'pending' AND next_attempt_at <= hookgate_now_ms() \
             AND NOT (destination = ANY($3::text[])) \
           ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)",
    )
});

/// [`CLAIM_DUE`] with lanes to skip: it looks at the first `$5` due rows
/// only (see [`SCAN_PAST`]).
static CLAIM_DUE_SKIPPING: LazyLock<String> = LazyLock::new(|| {
    claim_sql(
        "due AS (\
           SELECT id, next_attempt_at AS due_at FROM deliveries \
           WHERE id IN (SELECT id FROM deliveries \
               WHERE state = 'pending' AND next_attempt_at <= hookgate_now_ms() \
               ORDER BY next_attempt_at, id LIMIT $5) \
             AND state = 'pending' AND next_attempt_at <= hookgate_now_ms() \
             AND NOT (destination = ANY($3::text[])) \
           ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)",
    )
});

/// The oldest due deliveries, at most `$4`, taken destination by
/// destination (a recursive loose scan over `deliveries_lane`: one index
/// seek per destination), none to a destination in `$3`.
static CLAIM_BY_LANE: LazyLock<String> = LazyLock::new(|| {
    claim_sql(
        "RECURSIVE lanes AS (\
           (SELECT destination AS d FROM deliveries ORDER BY destination LIMIT 1) \
           UNION ALL \
           SELECT (SELECT destination FROM deliveries WHERE destination > lanes.d \
                   ORDER BY destination LIMIT 1) \
           FROM lanes WHERE lanes.d IS NOT NULL), \
         cand AS (\
           SELECT c.id FROM lanes CROSS JOIN LATERAL (\
             SELECT id, next_attempt_at FROM deliveries \
             WHERE destination = lanes.d AND state = 'pending' \
               AND next_attempt_at <= hookgate_now_ms() \
             ORDER BY next_attempt_at, id LIMIT $4) c \
           WHERE lanes.d IS NOT NULL AND NOT (lanes.d = ANY($3::text[])) \
           ORDER BY c.next_attempt_at, c.id LIMIT $4), \
         due AS (\
           SELECT id, next_attempt_at AS due_at FROM deliveries \
           WHERE id IN (SELECT id FROM cand) AND state = 'pending' \
             AND next_attempt_at <= hookgate_now_ms() \
           ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED)",
    )
});

/// Why a delivery created for a disabled subscription is parked.
const PARKED_REASON: &str = "parked: the subscription is disabled";

/// How long a statement may wait for a connection from the pool before the
/// store answers "overloaded".
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How long a new webhook may wait for a connection before it is shed
/// (503 with `Retry-After`). Far below [`POOL_WAIT`]: the provider is
/// waiting on the answer, and the shortest provider timeouts are about 3 s
/// (Slack, Zoom). Waiting longer would turn overload into the provider's
/// own time-out, then a retry into the same queue.
const INGEST_WAIT: Duration = Duration::from_secs(2);

/// How long opening a new connection may take: a database that does not
/// answer at all (a dropped route) is reported after this, not after the
/// operating system's connect timeout (minutes).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Connections kept for lease renewals, apart from [`PostgresStore::pool`].
/// Renewals are few (only attempts longer than a third of the lease) but
/// must not queue behind ingest: in the shared pool, a burst that held
/// every connection for longer than the lease left let leases run out and
/// another gateway send what this one was still sending.
const RENEW_POOL: usize = 2;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Lease renewals only ([`RENEW_POOL`] connections).
    renew_pool: Pool,
    hooks: listen::Hooks,
    /// New webhooks, stored in batches.
    inserter: ingest::Inserter,
    /// Attempts' outcomes, written in batches.
    recorder: records::Recorder,
    /// Why the database is unusable, when the last try to reach it failed.
    down: Arc<Mutex<Option<String>>>,
    /// Stops the listener when the last clone goes.
    _listener: Arc<DropGuard>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it holds the password.
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// Maps a PostgreSQL error into the store's own.
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(with_causes(&e)),
    }
}

/// `e` and its causes: tokio-postgres and deadpool say what failed
/// ("error performing TLS handshake") and leave why to the source chain
/// (the certificate's name, refused connection).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        db_err(e)
    }
}

fn open_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: "store.url (postgres)".into(),
        message: e.to_string(),
    }
}

/// Positional arguments of a statement built at run time.
#[derive(Default)]
struct Args(Vec<Box<dyn ToSql + Sync + Send>>);

impl Args {
    /// Adds `v` and answers its placeholder (`$n`).
    fn add(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Milliseconds as PostgreSQL's bigint (saturating: "forever" stays
/// forever rather than wrapping to the past).
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A duration in ms, saturating.
fn dur(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

pub(crate) fn status_of(s: &str) -> Result<EventStatus, StoreError> {
    EventStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("headers: {e}")))
}

impl PostgresStore {
    /// Connects to `url`, brings the schema up to date and starts listening
    /// for due work. Claims other gateways hold are left alone.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::open_in(url, pool_size, None).await
    }

    /// [`open`](Self::open) with every table in `schema` (created if
    /// needed) instead of the user's default: the tests' isolation.
    pub async fn open_in(
        url: &str,
        pool_size: usize,
        schema: Option<&str>,
    ) -> Result<Self, StoreError> {
        let (url, tls) = tls::split(url).map_err(open_err)?;
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(open_err)?;
        pg.ssl_mode(tls.ssl_mode());
        if let Some(weakness) = tls.weakness(pg.get_hosts()) {
            tracing::warn!("store.url: {weakness}");
        }
        let tls = tls::connector(&tls).map_err(open_err)?;
        if pg.get_application_name().is_none() {
            pg.application_name("hookgate");
        }
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(open_err(format!("bad schema name {schema:?}")));
            }
            let (client, conn) = pg
                .connect(tls.clone())
                .await
                .map_err(|e| open_err(with_causes(&e)))?;
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(open_err)?;
            drop(client);
            let _ = task.await;
            pg.options(format!("-c search_path={schema}"));
        }
        let build = |size: usize| {
            let manager = Manager::from_config(
                pg.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(CONNECT_WAIT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(open_err)
        };
        let pool = build(pool_size.max(1))?;
        let renew_pool = build(RENEW_POOL)?;
        let mut conn = pool.get().await.map_err(|e| open_err(with_causes(&e)))?;
        schema::migrate(&mut conn).await?;
        drop(conn);
        let hooks: listen::Hooks = Arc::default();
        let stop = CancellationToken::new();
        listen::spawn(pg, tls, hooks.clone(), stop.clone());
        let down = Arc::default();
        Ok(PostgresStore {
            inserter: ingest::Inserter::spawn(pool.clone(), Arc::clone(&down)),
            recorder: records::Recorder::spawn(pool.clone(), Arc::clone(&down)),
            pool,
            renew_pool,
            hooks,
            down,
            _listener: Arc::new(stop.drop_guard()),
        })
    }

    /// Settles the deliveries waiting for `subscription_id`, a batch per
    /// transaction, until none is left (see [`settle_batch`]); a failed
    /// batch is tried again after a pause ([`settle_in_batches`]).
    async fn settle(&self, subscription_id: &str) -> Result<(), StoreError> {
        settle_in_batches(|| async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let more = settle_batch(&tx, subscription_id).await?;
            tx.commit().await?;
            Ok(more)
        })
        .await
    }

    /// A connection from the pool.
    async fn conn(&self) -> Result<Object, StoreError> {
        self.conn_from(&self.pool).await
    }

    /// Runs a read of several statements in one read-only `REPEATABLE
    /// READ` transaction, so that all of them see one snapshot (as the
    /// SQLite engine's readers do): never an event "pending" beside the
    /// deliveries a commit between two statements made "delivered", nor
    /// counts that add up to no moment.
    async fn snapshot<T>(
        &self,
        read: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let out = read(&tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A connection from `pool`.
    async fn conn_from(&self, pool: &Pool) -> Result<Object, StoreError> {
        self.conn_within(pool, pool.timeouts()).await
    }

    /// A connection from `pool`, waiting at most `timeouts`. Only a wait
    /// for a free connection is overload; a connection that cannot be
    /// opened in time means the database is unreachable.
    async fn conn_within(
        &self,
        pool: &Pool,
        timeouts: deadpool_postgres::Timeouts,
    ) -> Result<Object, StoreError> {
        checkout(pool, timeouts, &self.down).await
    }

    /// Notes the outcome of a write for [`Store::health`].
    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match &r {
            Ok(_) => *down = None,
            Err(StoreError::Database(m)) if is_connection_error(m) => *down = Some(m.clone()),
            Err(_) => {}
        }
        r
    }
}

/// A connection from `pool`, waiting at most `timeouts`. Only a wait for a
/// free connection is overload; a connection that cannot be opened in time
/// means the database is unreachable, and `down` says so.
async fn checkout(
    pool: &Pool,
    timeouts: deadpool_postgres::Timeouts,
    down: &Mutex<Option<String>>,
) -> Result<Object, StoreError> {
    match pool.timeout_get(&timeouts).await {
        Ok(c) => Ok(c),
        Err(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
            Err(StoreError::Overloaded)
        }
        Err(e) => {
            let message = format!("cannot reach the database: {e}");
            *down.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
            Err(StoreError::Database(message))
        }
    }
}

fn is_connection_error(message: &str) -> bool {
    message.contains("cannot reach the database")
        || message.contains("connection closed")
        || message.contains("error connecting")
}

/// Tells every gateway, on commit, that deliveries are due.
async fn notify(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(listen::NOTIFY).await?;
    Ok(())
}

/// Recomputes the status of `events` (sorted, so that two transactions
/// lock them in the same order).
async fn refresh_statuses(
    tx: &deadpool_postgres::Transaction<'_>,
    mut events: Vec<String>,
) -> Result<(), StoreError> {
    events.sort_unstable();
    events.dedup();
    if events.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached("SELECT hookgate_refresh_status(e) FROM unnest($1::text[]) AS e")
        .await?;
    tx.execute(&stmt, &[&events]).await?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn insert(&self, event: NewEvent, opts: InsertOptions) -> Result<Inserted, StoreError> {
        // With the webhooks that arrive meanwhile (see ingest.rs).
        let r = self.inserter.insert(event, opts).await;
        self.note(r)
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let r = async {
            let conn = self.conn().await?;
            let token = LeaseToken::random();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            // One statement: pick due rows nobody is changing (SKIP LOCKED:
            // another gateway's claim in progress is passed over, never
            // waited on), lease them, and return them with their messages.
            // With lanes to skip, the scan in due order stops after
            // SCAN_PAST rows; past that, destination by destination (see
            // the SQLite engine's `claim`: a full lane's due backlog sits in
            // front of everyone else's).
            let scan_past = SCAN_PAST;
            let sql = if skip.is_empty() {
                &*CLAIM_DUE
            } else {
                &*CLAIM_DUE_SKIPPING
            };
            let stmt = conn.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 5] =
                [&token.0, &dur(lease), &skip, &limit, &scan_past];
            let mut rows = if skip.is_empty() {
                conn.query(&stmt, &params[..4]).await?
            } else {
                conn.query(&stmt, &params).await?
            };
            if !skip.is_empty() && (rows.len() as i64) < limit {
                // Did the scan stop at its cap? What it claimed is no
                // longer due.
                let left: i64 = conn
                    .query_one(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
                         WHERE state = 'pending' AND next_attempt_at <= hookgate_now_ms() \
                         LIMIT $1) t",
                        &[&scan_past],
                    )
                    .await?
                    .try_get(0)?;
                if left + rows.len() as i64 >= scan_past {
                    let rest = limit - rows.len() as i64;
                    let stmt = conn.prepare_cached(&CLAIM_BY_LANE).await?;
                    rows.extend(
                        conn.query(&stmt, &[&token.0, &dur(lease), &skip, &rest])
                            .await?,
                    );
                }
            }
            let mut out: Vec<(i64, DueDelivery)> = Vec::with_capacity(rows.len());
            let mut cache: Vec<(i64, Arc<Message>)> = Vec::new();
            for r in &rows {
                let message_row: i64 = r.try_get(6)?;
                let message = match cache.iter().find(|(m, _)| *m == message_row) {
                    Some((_, m)) => m.clone(),
                    None => {
                        let headers: String = r.try_get(10)?;
                        let body: Vec<u8> = r.try_get(11)?;
                        let m = Arc::new(Message {
                            id: r.try_get(7)?,
                            event_type: r.try_get(8)?,
                            content_type: r.try_get(9)?,
                            headers: headers_from_json(&headers)?,
                            body: Bytes::from(body),
                        });
                        cache.push((message_row, m.clone()));
                        m
                    }
                };
                let attempts: i32 = r.try_get(3)?;
                let retries: i32 = r.try_get(4)?;
                out.push((
                    r.try_get(5)?,
                    DueDelivery {
                        id: r.try_get(0)?,
                        lease: token,
                        event_id: r.try_get(1)?,
                        route: r.try_get(12)?,
                        destination: r.try_get(2)?,
                        attempts: attempts.max(0) as u32,
                        retries: retries.max(0) as u32,
                        message,
                    },
                ));
            }
            // Oldest due first, as they were picked.
            out.sort_unstable_by_key(|(due_at, d)| (*due_at, d.id));
            Ok(out.into_iter().map(|(_, d)| d).collect())
        }
        .await;
        self.note(r)
    }

    async fn renew(&self, id: i64, token: LeaseToken, lease: Duration) -> Result<bool, StoreError> {
        let r = async {
            let conn = self.conn_from(&self.renew_pool).await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = hookgate_now_ms() + $3 \
                     WHERE id = $1 AND lease_token = $2 AND state = 'pending'",
                )
                .await?;
            Ok(conn.execute(&stmt, &[&id, &token.0, &dur(lease)]).await? > 0)
        }
        .await;
        self.note(r)
    }

    async fn release(&self, id: i64, token: LeaseToken) -> Result<bool, StoreError> {
        let r = async {
            let conn = self.conn().await?;
            // One statement: the notification goes out (on its commit)
            // only if the delivery was released.
            let stmt = conn
                .prepare_cached(concat!(
                    "WITH r AS (\
                       UPDATE deliveries SET next_attempt_at = hookgate_now_ms(), lease_token = NULL \
                       WHERE id = $1 AND lease_token = $2 AND state = 'pending' RETURNING id) \
                     SELECT pg_notify(",
                    listen::channel_sql!(),
                    ", '') FROM r"
                ))
                .await?;
            Ok(!conn.query(&stmt, &[&id, &token.0]).await?.is_empty())
        }
        .await;
        self.note(r)
    }

    async fn record(&self, a: AttemptRecord) -> Result<Recorded, StoreError> {
        // With the records that arrive meanwhile, in one statement (see
        // records.rs).
        let r = self.recorder.record(a).await.map(|written| {
            if written {
                Recorded::Written
            } else {
                Recorded::LeaseLost
            }
        });
        self.note(r)
    }

    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT MIN(next_attempt_at) - hookgate_now_ms() FROM deliveries WHERE state = 'pending'",
            )
            .await?;
        let wait: Option<i64> = conn.query_one(&stmt, &[]).await?.try_get(0)?;
        Ok(wait.map(|w| Duration::from_millis(unsigned(w))))
    }

    async fn list(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        let conn = self.conn().await?;
        let mut args = Args::default();
        let mut where_sql = filter_sql(&filter, None, &mut args);
        if let Some(c) = cursor {
            where_sql.push_str(&format!(" AND e.id < {}", args.add(c)));
        }
        let sql = format!(
            "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
             FROM events e WHERE {where_sql} ORDER BY e.id DESC LIMIT {}",
            limit.saturating_add(1)
        );
        let rows = conn.query(&sql, &args.refs()).await?;
        let mut events = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    async fn get(&self, id: String) -> Result<Option<EventDetail>, StoreError> {
        self.snapshot(async |tx| get_event(tx, &id).await).await
    }

    async fn replay(&self, target: ReplayTarget, to: Option<String>) -> Result<u64, StoreError> {
        let mut total = 0;
        let mut after = i64::MIN;
        // Each batch is its own transaction, so a replay of a million dead
        // letters never holds many locks for long.
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let (n, last) = replay_batch(&tx, &target, to.as_deref(), after).await?;
            if n > 0 {
                notify(&tx).await?;
            }
            tx.commit().await?;
            total += n;
            // Until a batch takes nothing: one that skipped rows being
            // changed right now may take fewer than a full batch.
            match last {
                Some(last) => after = last,
                None => return Ok(total),
            }
        }
    }

    async fn hasten(&self, destinations: Vec<String>) -> Result<u64, StoreError> {
        let mut total = 0;
        // Batches of their own transactions, as replay's; rows being
        // changed right now (an attempt's record) are skipped, not waited
        // for: they are not waiting.
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let n = tx
                .execute(
                    &format!(
                        "UPDATE deliveries SET next_attempt_at = hookgate_now_ms() WHERE id IN \
                         (SELECT id FROM deliveries WHERE destination = ANY($1) \
                          AND state = 'pending' AND next_attempt_at > hookgate_now_ms() \
                          AND lease_token IS NULL LIMIT {BATCH_ROWS} FOR UPDATE SKIP LOCKED)"
                    ),
                    &[&destinations],
                )
                .await?;
            if n > 0 {
                notify(&tx).await?;
            }
            tx.commit().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        // Settlements a crash (or a failed batch) left unfinished, whoever
        // began them.
        let unfinished: Vec<String> = self
            .conn()
            .await?
            .query("SELECT subscription_id FROM subscription_settlements", &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        for sub in unfinished {
            self.settle(&sub).await?;
        }
        // Slots of receivers no gateway has paced for a day (a URL removed
        // from the config or rotated): nothing waits on them.
        self.conn()
            .await?
            .execute(
                "DELETE FROM pacing WHERE next_at < hookgate_now_ms() - 86400000",
                &[],
            )
            .await?;
        let mut total = 0;
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            // One gateway prunes at a time; the others find the lock taken
            // and leave it to that one. Per schema, so that separate
            // installations in one database do not exclude each other.
            let locked: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || ':hookgate-prune'))",
                    &[],
                )
                .await?
                .try_get(0)?;
            if !locked {
                return Ok(total);
            }
            let picked: Vec<String> = tx
                .query(
                    "SELECT id FROM events \
                     WHERE (status = 'delivered' AND received_at < hookgate_now_ms() - $1) \
                        OR (status = 'dead' AND received_at < hookgate_now_ms() - $2) LIMIT $3",
                    &[&dur(retention.delivered), &dur(retention.dead), &BATCH_ROWS],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            // Deliveries before their events, the order every other writer
            // takes them in (a record or a replay changes a delivery, then
            // refreshes its event's status). Deleting the events first (as
            // the foreign keys' cascade did before schema 8) locked them
            // before their deliveries, and a replay of dead letters near the
            // end of their retention then deadlocked with prune: PostgreSQL
            // aborted one of them.
            tx.execute(
                "SELECT 1 FROM deliveries WHERE event_id = ANY($1) ORDER BY id FOR UPDATE",
                &[&picked],
            )
            .await?;
            // The conditions are checked again on the events themselves: one
            // a replay made pending again since the pick is kept. Their rows
            // go with them (there are no foreign keys to cascade: schema
            // version 8), children first.
            let pruned: Vec<String> = tx
                .query(
                    "DELETE FROM events WHERE id = ANY($3) \
                     AND ((status = 'delivered' AND received_at < hookgate_now_ms() - $1) \
                          OR (status = 'dead' AND received_at < hookgate_now_ms() - $2)) \
                     RETURNING id",
                    &[&dur(retention.delivered), &dur(retention.dead), &picked],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let n = pruned.len() as u64;
            if !pruned.is_empty() {
                tx.execute(
                    "DELETE FROM attempts WHERE delivery_id IN \
                       (SELECT id FROM deliveries WHERE event_id = ANY($1))",
                    &[&pruned],
                )
                .await?;
                for table in ["deliveries", "messages", "event_requests"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE event_id = ANY($1)"),
                        &[&pruned],
                    )
                    .await?;
                }
            }
            let keys = tx
                .execute(
                    "DELETE FROM dedup WHERE (route, source_id) IN \
                       (SELECT route, source_id FROM dedup WHERE expires_at <= hookgate_now_ms() LIMIT $1) \
                     AND expires_at <= hookgate_now_ms()",
                    &[&BATCH_ROWS],
                )
                .await?;
            tx.commit().await?;
            total += n;
            // Until both are done: keys expire (after the dedup window, a
            // day) long before their events are pruned (a week), so a run
            // that stopped with the events would remove one batch of keys
            // and leave the rest to pile up.
            if (picked.len() as i64) < BATCH_ROWS && (keys as i64) < BATCH_ROWS {
                return Ok(total);
            }
        }
    }

    async fn create_subscription(&self, s: Subscription) -> Result<Subscription, StoreError> {
        let conn = self.conn().await?;
        let headers = if s.headers.is_empty() {
            None
        } else {
            Some(json_text(&s.headers)?)
        };
        let properties = s.properties.as_ref().map(json_text).transpose()?;
        let context = s.context.as_ref().map(json_text).transpose()?;
        let created: i64 = conn
            .query_one(
                "INSERT INTO subscriptions (id, tenant, object_id, object_type, event_types, \
                 callback_url, callback_token, context, validity, active, secret, created_at, \
                 failing_since, disabled_reason, headers, properties, signature_scheme, \
                 previous_secret, previous_secret_expires) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, hookgate_now_ms(), $12, $13, \
                 $14, $15, $16, $17, $18) RETURNING created_at",
                &[
                    &s.id,
                    &s.tenant,
                    &s.object_id,
                    &s.object_type,
                    &s.event_types,
                    &s.callback_url,
                    &s.callback_token,
                    &context,
                    &ms(s.validity_ms),
                    &s.active,
                    &s.secret,
                    &s.failing_since_ms.map(ms),
                    &s.disabled_reason,
                    &headers,
                    &properties,
                    &s.signature_scheme.as_str(),
                    &s.previous_secret,
                    &s.previous_secret_expires_ms.map(ms),
                ],
            )
            .await?
            .try_get(0)?;
        Ok(Subscription {
            created_at_ms: unsigned(created),
            ..s
        })
    }

    async fn get_subscription(
        &self,
        tenant: Option<String>,
        id: String,
    ) -> Result<Option<Subscription>, StoreError> {
        let conn = self.conn().await?;
        conn.query_opt(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
            ),
            &[&id, &tenant],
        )
        .await?
        .as_ref()
        .map(subscription_row)
        .transpose()
    }

    async fn list_subscriptions(
        &self,
        tenant: String,
        object_id: Option<String>,
        object_type: Option<String>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let conn = self.conn().await?;
        conn.query(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant = $1 \
                 AND ($2::text IS NULL OR object_id = $2) AND ($3::text IS NULL OR object_type = $3) \
                 ORDER BY id"
            ),
            &[&tenant, &object_id, &object_type],
        )
        .await?
        .iter()
        .map(subscription_row)
        .collect()
    }

    async fn update_subscription(
        &self,
        tenant: String,
        id: String,
        patch: SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut args = Args::default();
        let mut sets: Vec<String> = Vec::new();
        if let Some(v) = &patch.object_id {
            sets.push(format!("object_id = {}", args.add(v.clone())));
        }
        if let Some(v) = &patch.object_type {
            sets.push(format!("object_type = {}", args.add(v.clone())));
        }
        if let Some(v) = &patch.event_types {
            sets.push(format!("event_types = {}", args.add(v.clone())));
        }
        if let Some(v) = &patch.callback_url {
            sets.push(format!("callback_url = {}", args.add(v.clone())));
        }
        if let Some(v) = &patch.callback_token {
            sets.push(format!("callback_token = {}", args.add(v.clone())));
        }
        if let Some(v) = &patch.context {
            let text = v.as_ref().map(json_text).transpose()?;
            sets.push(format!("context = {}", args.add(text)));
        }
        if let Some(v) = patch.validity_ms {
            sets.push(format!("validity = {}", args.add(ms(v))));
        }
        if let Some(v) = &patch.secret {
            sets.push(format!("secret = {}", args.add(v.clone())));
        }
        if let Some(h) = &patch.headers {
            let v = if h.is_empty() {
                None
            } else {
                Some(json_text(h)?)
            };
            sets.push(format!("headers = {}", args.add(v)));
        }
        if let Some(p) = &patch.properties {
            let v = p.as_ref().map(json_text).transpose()?;
            sets.push(format!("properties = {}", args.add(v)));
        }
        if let Some(scheme) = patch.signature_scheme {
            sets.push(format!(
                "signature_scheme = {}",
                args.add(scheme.as_str().to_owned())
            ));
        }
        if let Some(r) = &patch.rotation {
            // Every right side sees the row as it was: the current secret
            // moves to previous_secret in the same statement.
            sets.push(format!(
                "previous_secret = secret, secret = {}",
                args.add(r.secret.clone())
            ));
            sets.push(format!(
                "previous_secret_expires = {}",
                args.add(ms(r.previous_expires_ms))
            ));
        }
        match patch.active {
            // Re-enabling starts a clean slate: no failure streak, no reason.
            Some(true) => {
                sets.push("active = TRUE, failing_since = NULL, disabled_reason = NULL".into());
            }
            Some(false) => sets.push(format!(
                "active = FALSE, disabled_reason = COALESCE(disabled_reason, {})",
                args.add("disabled through the API".to_owned())
            )),
            None => {}
        }
        if sets.is_empty() {
            return self.get_subscription(Some(tenant), id).await;
        }
        let r = async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let id_p = args.add(id.clone());
            let tenant_p = args.add(tenant);
            let sql = format!(
                "UPDATE subscriptions SET {} WHERE id = {id_p} AND tenant = {tenant_p} \
                 RETURNING {SUBSCRIPTION_COLUMNS}",
                sets.join(", ")
            );
            let updated = tx
                .query_opt(&sql, &args.refs())
                .await?
                .as_ref()
                .map(subscription_row)
                .transpose()?;
            // What was parked while it was off goes out now, oldest first,
            // with a fresh retry budget, from whichever gateway claims it
            // first: the first batch in this transaction, the rest after.
            let more = if patch.active == Some(true) && updated.is_some() {
                begin_settlement(&tx, &id).await?
            } else {
                false
            };
            tx.commit().await?;
            if more {
                settled_later(&id, self.settle(&id).await);
            }
            Ok(updated)
        }
        .await;
        self.note(r)
    }

    async fn delete_subscription(&self, tenant: String, id: String) -> Result<bool, StoreError> {
        let r = async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let deleted = tx
                .execute(
                    "DELETE FROM subscriptions WHERE id = $1 AND tenant = $2",
                    &[&id, &tenant],
                )
                .await?
                > 0;
            // What waits for it can never be sent: dead now, the first
            // batch in this transaction, the rest after.
            let more = deleted && begin_settlement(&tx, &id).await?;
            tx.commit().await?;
            if more {
                settled_later(&id, self.settle(&id).await);
            }
            Ok(deleted)
        }
        .await;
        self.note(r)
    }

    async fn subscription_outcome(
        &self,
        id: String,
        outcome: AttemptHealth,
        disable_after: Duration,
    ) -> Result<SubscriptionHealth, StoreError> {
        let conn = self.conn().await?;
        if outcome == AttemptHealth::Success {
            let stmt = conn
                .prepare_cached(
                    "UPDATE subscriptions SET failing_since = NULL \
                     WHERE id = $1 AND failing_since IS NOT NULL",
                )
                .await?;
            conn.execute(&stmt, &[&id]).await?;
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
        // One conditional statement: whichever gateway's attempts fail at
        // the same time, a subscription is disabled once, and only while
        // active; the streak is measured on the database's clock.
        let disabled = conn
            .execute(
                "UPDATE subscriptions SET active = FALSE, disabled_reason = $2, \
                   failing_since = COALESCE(failing_since, hookgate_now_ms()) \
                 WHERE id = $1 AND active \
                   AND ($3 OR hookgate_now_ms() - COALESCE(failing_since, hookgate_now_ms()) >= $4)",
                &[&id, &reason, &force, &dur(disable_after)],
            )
            .await?;
        if disabled > 0 {
            return Ok(SubscriptionHealth::Disabled);
        }
        conn.execute(
            "UPDATE subscriptions SET failing_since = hookgate_now_ms() \
             WHERE id = $1 AND failing_since IS NULL",
            &[&id],
        )
        .await?;
        Ok(SubscriptionHealth::Active)
    }

    async fn parked(
        &self,
        subscription_id: String,
        limit: usize,
    ) -> Result<Vec<ParkedDelivery>, StoreError> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT d.id, d.event_id, e.event_type, e.received_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.destination = $1 AND d.state = 'parked' ORDER BY d.id LIMIT $2",
            &[
                &format!("{SUBSCRIBER_PREFIX}{subscription_id}"),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ParkedDelivery {
                delivery_id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                event_type: r.try_get(2)?,
                received_at: rfc3339(unsigned(r.try_get(3)?)),
            })
        })
        .collect()
    }

    fn health(&self) -> Result<(), String> {
        match &*self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn on_due(&self, wake: DueHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wake);
    }

    // ---- Operator console: in console.rs ---------------------------------

    async fn console_list(
        &self,
        filter: ConsoleFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError> {
        console::list(&**self.conn().await?, &filter, limit, cursor.as_deref()).await
    }

    async fn count_by_status(&self, filter: ConsoleFilter) -> Result<StatusCounts, StoreError> {
        self.snapshot(async |tx| console::counts(tx, &filter).await)
            .await
    }

    async fn count_replay_set(
        &self,
        filter: ConsoleFilter,
        moving: bool,
    ) -> Result<ReplaySet, StoreError> {
        self.snapshot(async |tx| console::replay_set(tx, &filter, moving).await)
            .await
    }

    async fn replay_filtered(
        &self,
        filter: ConsoleFilter,
        expected: ReplaySet,
        to: Option<String>,
    ) -> Result<BulkReplay, StoreError> {
        // The confirmed set is counted again, then requeued in batches,
        // each its own transaction, so a replay of many never holds many
        // row locks for long.
        let set = self
            .snapshot(async |tx| console::replay_set(tx, &filter, to.is_some()).await)
            .await?;
        if set != expected {
            return Ok(BulkReplay::Changed(set));
        }
        let mut tally = ReplayTally::default();
        let mut after = i64::MIN;
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let (batch, requeued, last) =
                console::replay_batch_filtered(&tx, &filter, after, to.as_deref()).await?;
            if requeued > 0 {
                notify(&tx).await?;
            }
            tx.commit().await?;
            // Until a batch takes nothing: one that skipped rows being
            // changed right now may take fewer than a full batch.
            let Some(last) = last else {
                break;
            };
            after = last;
            tally.add(batch, requeued);
        }
        // The statuses after the last batch, not in each: a status filter
        // would otherwise lose the rest of an event whose deliveries span
        // two batches (see the SQLite engine).
        for chunk in tally.events_in_chunks(BATCH_ROWS as usize) {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            refresh_statuses(&tx, chunk).await?;
            tx.commit().await?;
        }
        Ok(tally.replayed())
    }

    async fn replay_delivery(
        &self,
        event_id: String,
        delivery_id: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let done = console::replay_delivery(&tx, &event_id, delivery_id).await?;
        if done {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn backlog(&self) -> Result<Vec<Backlog>, StoreError> {
        console::backlog(&**self.conn().await?).await
    }

    async fn destination_stats(
        &self,
        since_ms: u64,
        now_ms: u64,
        buckets: u32,
    ) -> Result<Vec<DestinationStats>, StoreError> {
        self.snapshot(async |tx| console::destination_stats(tx, since_ms, now_ms, buckets).await)
            .await
    }

    async fn parked_deliveries(
        &self,
        destinations: Vec<String>,
    ) -> Result<Vec<(String, ParkedDeliveries)>, StoreError> {
        self.snapshot(async |tx| console::parked(tx, &destinations).await)
            .await
    }

    async fn inbound(&self, event_id: String) -> Result<Option<InboundView>, StoreError> {
        console::inbound(&**self.conn().await?, &event_id).await
    }

    async fn reserve_slot(
        &self,
        key: String,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Option<Result<Duration, Duration>>, StoreError> {
        let conn = self.conn().await?;
        // One statement: the conflict's row lock orders gateways that
        // reserve at once, and the second sees the first's slot. The
        // clock is read once per statement (`hookgate_now_ms`).
        let taken = conn
            .query_opt(
                "INSERT INTO pacing AS p (key, next_at) VALUES ($1, hookgate_now_ms() + $2) \
                 ON CONFLICT (key) DO UPDATE \
                   SET next_at = greatest(p.next_at, hookgate_now_ms()) + $2 \
                   WHERE greatest(p.next_at, hookgate_now_ms()) <= hookgate_now_ms() + $3 \
                 RETURNING next_at - $2 - hookgate_now_ms()",
                &[&key, &dur(interval), &dur(max_wait)],
            )
            .await?;
        let ms = |v: i64| Duration::from_millis(unsigned(v));
        if let Some(row) = taken {
            return Ok(Some(Ok(ms(row.try_get(0)?))));
        }
        // Too far: when the slots already taken have passed.
        let after: Option<i64> = conn
            .query_opt(
                "SELECT next_at - hookgate_now_ms() FROM pacing WHERE key = $1",
                &[&key],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(Some(Err(ms(after.unwrap_or(0)))))
    }
}

#[cfg(test)]
mod tests;
