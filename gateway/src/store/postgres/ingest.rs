//! New webhooks: one in its own transaction ([`insert_event`]), or many
//! in batches.
//!
//! A webhook stored on its own is a transaction of four statements and a
//! commit, and on PostgreSQL the fixed cost of each (executor start,
//! locks, the round trip, the WAL flush at commit) is most of what the
//! database spends on it; the rows themselves are cheap. So webhooks that
//! arrive while earlier ones are being stored wait for a [`WRITERS`] slot
//! and go together, at most [`MAX_BATCH`] at a time, in one transaction of
//! set-based statements (`unnest` of arrays): the dedup keys, the events,
//! their inbound requests, and the messages with their deliveries. A lone
//! webhook goes at once, so an idle gateway adds no delay; under load the
//! batches grow by themselves, as SQLite's group commit does.
//!
//! Each webhook is decided alone, as [`insert_event`] decides it:
//! a key taken (by an earlier webhook, another gateway, or a webhook
//! earlier in the same batch) makes it a duplicate and stores nothing of
//! it; the others are stored with their deliveries claimed as asked. A
//! batch whose transaction fails is stored again one webhook at a time
//! (each its own transaction), so a webhook the database refuses fails
//! alone. Fan-outs to subscriptions go in batches too: one statement reads
//! the subscriptions every webhook of the batch reaches, under a share
//! lock taken in id order before the keys, as [`insert_event`] reads one
//! webhook's.
//!
//! Overload is answered, not queued without end: a full queue, or a
//! webhook that no batch took (with a connection in hand) within
//! [`super::INGEST_WAIT`], is [`StoreError::Overloaded`] (503 with
//! `Retry-After`), and nothing of it is stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};

use super::{
    INGEST_WAIT, PARKED_REASON, StoreError, batch, checkout, db_err, dur, json_text, ms, notify,
};
use crate::plugin::Message;
use crate::store::{
    ClaimNew, DueDelivery, InsertOptions, Inserted, LeaseToken, NewEvent, stored_messages,
};

/// The most webhooks one transaction stores.
const MAX_BATCH: usize = 128;

/// Batches stored at once, each on its own pool connection.
const WRITERS: usize = 4;

/// Webhooks that may wait for a batch; past this the store is overloaded.
const QUEUE: usize = WRITERS * MAX_BATCH * 2;

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

/// A webhook waiting to be stored.
struct Pending {
    event: NewEvent,
    opts: InsertOptions,
    /// [`QUEUED`], then [`TAKEN`] by a batch that holds a connection or
    /// [`ABANDONED`] by the caller that waited [`INGEST_WAIT`]: whoever
    /// changes it first decides.
    state: Arc<AtomicU8>,
    reply: Reply,
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl Pending {
    /// Whether this batch may store it (the caller has not given up).
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The queue of webhooks waiting to be stored. Cheap to clone; the writer
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Inserter {
    queue: mpsc::Sender<Pending>,
}

impl Inserter {
    /// Starts the writer, which takes connections from `pool` and reports
    /// an unreachable database in `down` (see [`checkout`]).
    pub(super) fn spawn(pool: Pool, down: Arc<Mutex<Option<String>>>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(batch::run(rx, WRITERS, MAX_BATCH, move |batch| {
            let (pool, down) = (pool.clone(), Arc::clone(&down));
            async move { write_batch(&pool, &down, batch).await }
        }));
        Inserter { queue }
    }

    /// Stores `event` with the webhooks that arrive meanwhile.
    pub(super) async fn insert(
        &self,
        event: NewEvent,
        opts: InsertOptions,
    ) -> Result<Inserted, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let pending = Pending {
            event,
            opts,
            state: Arc::clone(&state),
            reply,
        };
        self.queue.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        // Shed if no batch has taken it by then (every writer busy, no
        // connection free); once taken, its outcome is waited for.
        if let Ok(answer) = tokio::time::timeout(INGEST_WAIT, &mut answer).await {
            return answer.map_err(|_| StoreError::Closed)?;
        }
        if state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(StoreError::Overloaded);
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Stores `batch` and answers each of its webhooks.
async fn write_batch(pool: &Pool, down: &Mutex<Option<String>>, batch: Vec<Pending>) {
    let timeouts = deadpool_postgres::Timeouts {
        wait: Some(INGEST_WAIT),
        ..pool.timeouts()
    };
    let mut conn = match checkout(pool, timeouts, down).await {
        Ok(conn) => conn,
        Err(e) => {
            for p in batch {
                if p.take() {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
            return;
        }
    };
    // Those whose callers gave up waiting were answered "overloaded":
    // nothing of them is stored.
    let batch: Vec<Pending> = batch.into_iter().filter(Pending::take).collect();
    // A key twice in one batch: the later ones are stored after it, alone
    // (and found duplicates, unless the first failed).
    let mut keys = HashSet::new();
    let (batch, later): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| {
        p.event
            .source_id
            .as_ref()
            .is_none_or(|s| keys.insert((p.event.route.clone(), s.clone())))
    });
    if batch.len() <= 1 {
        // Nothing to share a transaction with.
        let later = batch.into_iter().chain(later);
        alone(&mut conn, later).await;
        return;
    }
    let events: Vec<(&NewEvent, &InsertOptions)> =
        batch.iter().map(|p| (&p.event, &p.opts)).collect();
    match store_together(&mut conn, &events).await {
        Ok(outcomes) => {
            for (p, outcome) in batch.into_iter().zip(outcomes) {
                let _ = p.reply.send(Ok(outcome));
            }
        }
        // One at a time: the one the database refuses fails alone.
        Err(_) => alone(&mut conn, batch.into_iter()).await,
    }
    alone(&mut conn, later.into_iter()).await;
}

/// Stores each of `pending` in a transaction of its own.
async fn alone(conn: &mut Object, pending: impl Iterator<Item = Pending>) {
    for p in pending {
        let _ = p.reply.send(insert_alone(conn, p.event, p.opts).await);
    }
}

/// One webhook, in its own transaction ([`insert_event`]).
pub(super) async fn insert_alone(
    conn: &mut Object,
    event: NewEvent,
    opts: InsertOptions,
) -> Result<Inserted, StoreError> {
    let tx = conn.transaction().await.map_err(db_err)?;
    let (inserted, due) = insert_event(&tx, event, &opts).await?;
    if let Inserted::Duplicate { .. } = inserted {
        // The event and its messages went out with the dedup key.
        tx.rollback().await.map_err(db_err)?;
        return Ok(inserted);
    }
    if due {
        notify(&tx).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(inserted)
}

/// The columns of every row a batch writes, one vector per column.
#[derive(Default)]
struct Columns {
    // dedup: the keyed webhooks, by index into the batch
    keyed: Vec<usize>,
    key_routes: Vec<String>,
    key_sources: Vec<String>,
    key_events: Vec<String>,
    key_windows: Vec<i64>,
    // events
    ids: Vec<String>,
    routes: Vec<String>,
    sources: Vec<Option<String>>,
    received: Vec<i64>,
    statuses: Vec<&'static str>,
    types: Vec<Option<String>>,
    // inbound requests
    in_events: Vec<String>,
    in_methods: Vec<String>,
    in_paths: Vec<String>,
    in_headers: Vec<String>,
    // messages
    m_events: Vec<String>,
    m_idx: Vec<i32>,
    m_ids: Vec<Option<String>>,
    m_types: Vec<Option<String>>,
    m_content: Vec<String>,
    m_headers: Vec<String>,
    m_bodies: Vec<bytes::Bytes>,
    // deliveries
    d_events: Vec<String>,
    d_idx: Vec<i32>,
    d_dests: Vec<String>,
    d_actives: Vec<bool>,
    d_claims: Vec<bool>,
    d_leases: Vec<i64>,
}

/// Stores `events` in one transaction: what each one is.
async fn store_together(
    conn: &mut Object,
    events: &[(&NewEvent, &InsertOptions)],
) -> Result<Vec<Inserted>, StoreError> {
    let mut c = Columns::default();
    for (i, (e, opts)) in events.iter().enumerate() {
        if let Some(source) = &e.source_id {
            c.keyed.push(i);
            c.key_routes.push(e.route.clone());
            c.key_sources.push(source.clone());
            c.key_events.push(e.id.clone());
            c.key_windows.push(dur(opts.dedup_window));
        }
    }
    let tx = conn.transaction().await.map_err(db_err)?;
    // The subscriptions the webhooks' fan-outs reach, under a share lock as
    // a lone insert reads them (see [`insert_event`]), and like it before
    // the keys: every insert takes its locks in one order.
    let mut targets = fanout_targets(&tx, events).await?;
    // Then the keys, in one order for every batch (two batches taking
    // keys in opposite orders would deadlock). A key is ours if it was
    // free or its window has passed; a taken one makes its webhook a
    // duplicate of the event that holds it.
    let mut duplicates: HashMap<usize, String> = HashMap::new();
    if !c.keyed.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO dedup (route, source_id, event_id, expires_at) \
                 SELECT u.route, u.source_id, u.event_id, hookgate_now_ms() + u.win \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                   AS u(route, source_id, event_id, win) \
                 ORDER BY u.route COLLATE \"C\", u.source_id COLLATE \"C\" \
                 ON CONFLICT (route, source_id) DO UPDATE \
                   SET event_id = excluded.event_id, expires_at = excluded.expires_at \
                   WHERE dedup.expires_at <= hookgate_now_ms() \
                 RETURNING event_id",
            )
            .await
            .map_err(db_err)?;
        let ours: HashSet<String> = tx
            .query(
                &stmt,
                &[&c.key_routes, &c.key_sources, &c.key_events, &c.key_windows],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let taken: Vec<usize> = c
            .keyed
            .iter()
            .copied()
            .filter(|&i| !ours.contains(&events[i].0.id))
            .collect();
        if !taken.is_empty() {
            let routes: Vec<&str> = taken.iter().map(|&i| &*events[i].0.route).collect();
            let sources: Vec<&str> = taken
                .iter()
                .map(|&i| events[i].0.source_id.as_deref().unwrap_or_default())
                .collect();
            let holders: HashMap<(String, String), String> = tx
                .query(
                    "SELECT d.route, d.source_id, d.event_id FROM dedup d \
                     JOIN unnest($1::text[], $2::text[]) AS u(route, source_id) \
                       ON d.route = u.route AND d.source_id = u.source_id",
                    &[&routes, &sources],
                )
                .await
                .map_err(db_err)?
                .iter()
                .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(db_err)?;
            for i in taken {
                let e = &events[i].0;
                let key = (e.route.clone(), e.source_id.clone().unwrap_or_default());
                let existing_id = holders.get(&key).cloned().ok_or_else(|| {
                    StoreError::Internal(format!("dedup key of {} neither ours nor held", e.id))
                })?;
                duplicates.insert(i, existing_id);
            }
        }
    }

    let token = LeaseToken::random();
    let mut unclaimed_due = false;
    let mut messages: HashMap<(String, i32), Arc<Message>> = HashMap::new();
    let mut outcomes: Vec<Option<Inserted>> = Vec::with_capacity(events.len());
    for (i, &(e, opts)) in events.iter().enumerate() {
        if let Some(existing_id) = duplicates.remove(&i) {
            outcomes.push(Some(Inserted::Duplicate { existing_id }));
            continue;
        }
        outcomes.push(None);
        let reached = std::mem::take(&mut targets[i]);
        let deliveries = e.deliveries(&reached);
        c.ids.push(e.id.clone());
        c.routes.push(e.route.clone());
        c.sources.push(e.source_id.clone());
        c.received.push(ms(e.received_at_ms));
        c.statuses.push(NewEvent::status(deliveries));
        c.types.push(e.event_type());
        if let Some(inbound) = &e.inbound {
            c.in_events.push(e.id.clone());
            c.in_methods.push(inbound.method.clone());
            c.in_paths.push(inbound.path.clone());
            c.in_headers.push(json_text(&inbound.headers)?);
        }
        let lease = opts.claim.as_ref().map_or(0, |claim| dur(claim.lease));
        // Numbered as a lone insert numbers them.
        let stored = stored_messages(
            e.messages
                .iter()
                .map(|m| (&m.message, m.destinations.iter().cloned())),
            e.fanout.iter().map(|f| &f.envelope),
            reached,
        );
        for (idx, (message, destinations, to_subscribers)) in (0..).zip(stored) {
            c.m_events.push(e.id.clone());
            c.m_idx.push(idx);
            c.m_ids.push(message.id.clone());
            c.m_types.push(message.event_type.clone());
            c.m_content.push(message.content_type.clone());
            c.m_headers.push(json_text(&message.headers)?);
            c.m_bodies.push(message.body.clone());
            let mut any_claimed = false;
            for (dest, active) in destinations {
                let (claim, announce) =
                    ClaimNew::decide(opts.claim.as_ref(), &dest, active, to_subscribers);
                unclaimed_due |= announce;
                c.d_events.push(e.id.clone());
                c.d_idx.push(idx);
                c.d_dests.push(dest);
                c.d_actives.push(active);
                c.d_claims.push(claim);
                c.d_leases.push(lease);
                any_claimed |= claim;
            }
            // Kept for the dispatcher only if one of its deliveries is
            // claimed; copied then.
            if any_claimed {
                messages.insert((e.id.clone(), idx), Arc::new(message.clone()));
            }
        }
    }

    let mut claimed: HashMap<String, Vec<(i64, String, i32)>> = HashMap::new();
    if !c.ids.is_empty() {
        let events_stmt = tx
            .prepare_cached(
                "INSERT INTO events (id, route, source_id, received_at, status, event_type) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
                   $5::text[], $6::text[])",
            )
            .await
            .map_err(db_err)?;
        tx.execute(
            &events_stmt,
            &[
                &c.ids,
                &c.routes,
                &c.sources,
                &c.received,
                &c.statuses,
                &c.types,
            ],
        )
        .await
        .map_err(db_err)?;
        if !c.in_events.is_empty() {
            let inbound_stmt = tx
                .prepare_cached(
                    "INSERT INTO event_requests (event_id, method, path, headers) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
                )
                .await
                .map_err(db_err)?;
            tx.execute(
                &inbound_stmt,
                &[&c.in_events, &c.in_methods, &c.in_paths, &c.in_headers],
            )
            .await
            .map_err(db_err)?;
        }
        // The messages and their deliveries in one statement, the
        // deliveries in the order given (their ids follow it, as a lone
        // insert's do).
        let messages_stmt = tx
            .prepare_cached(
                "WITH m AS (\
                   INSERT INTO messages (event_id, idx, message_id, event_type, content_type, headers, body) \
                   SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::bytea[]) \
                   RETURNING id, event_id, idx), \
               d AS (\
                 INSERT INTO deliveries (event_id, message_id, destination, state, next_attempt_at, lease_token, last_error) \
                 SELECT u.ev, m.id, u.dest, CASE WHEN u.active THEN 'pending' ELSE 'parked' END, \
                        hookgate_now_ms() + CASE WHEN u.claim THEN u.lease ELSE 0 END, \
                        CASE WHEN u.claim THEN $8::bigint END, \
                        CASE WHEN u.active THEN NULL ELSE $14 END \
                 FROM unnest($9::text[], $10::integer[], $11::text[], $12::bool[], $13::bigint[], \
                   $15::bool[]) WITH ORDINALITY AS u(ev, idx, dest, claim, lease, active, n) \
                 JOIN m ON m.event_id = u.ev AND m.idx = u.idx \
                 ORDER BY u.n \
                 RETURNING id, event_id, message_id, destination, lease_token IS NOT NULL AS claimed) \
             SELECT d.id, d.event_id, d.destination, d.claimed, m.idx \
             FROM d JOIN m ON m.id = d.message_id",
            )
            .await
            .map_err(db_err)?;
        let bodies: Vec<&[u8]> = c.m_bodies.iter().map(|b| &b[..]).collect();
        let rows = tx
            .query(
                &messages_stmt,
                &[
                    &c.m_events,
                    &c.m_idx,
                    &c.m_ids,
                    &c.m_types,
                    &c.m_content,
                    &c.m_headers,
                    &bodies,
                    &token.0,
                    &c.d_events,
                    &c.d_idx,
                    &c.d_dests,
                    &c.d_claims,
                    &c.d_leases,
                    &PARKED_REASON,
                    &c.d_actives,
                ],
            )
            .await
            .map_err(db_err)?;
        if rows.len() != c.d_dests.len() {
            return Err(StoreError::Internal(format!(
                "{} of {} deliveries stored",
                rows.len(),
                c.d_dests.len()
            )));
        }
        for r in &rows {
            if r.try_get::<_, bool>(3).map_err(db_err)? {
                let event_id: String = r.try_get(1).map_err(db_err)?;
                claimed.entry(event_id).or_default().push((
                    r.try_get(0).map_err(db_err)?,
                    r.try_get(2).map_err(db_err)?,
                    r.try_get(4).map_err(db_err)?,
                ));
            }
        }
        if unclaimed_due {
            notify(&tx).await?;
        }
    }
    tx.commit().await.map_err(db_err)?;

    // What each new event is, in the batch's order.
    let mut new = c.ids.iter().zip(&c.routes);
    let mut per_event_deliveries: HashMap<&str, usize> = HashMap::new();
    for e in &c.d_events {
        *per_event_deliveries.entry(e).or_default() += 1;
    }
    let mut out = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        if let Some(outcome) = outcome {
            out.push(outcome);
            continue;
        }
        let (id, route) = new
            .next()
            .ok_or_else(|| StoreError::Internal("fewer events than outcomes".into()))?;
        let mut mine = claimed.remove(id).unwrap_or_default();
        mine.sort_unstable_by_key(|(delivery_id, _, _)| *delivery_id);
        let claimed = mine
            .into_iter()
            .map(|(delivery_id, destination, idx)| {
                let message = messages.get(&(id.clone(), idx)).ok_or_else(|| {
                    StoreError::Internal(format!("delivery {delivery_id} of no message"))
                })?;
                Ok(DueDelivery {
                    id: delivery_id,
                    lease: token,
                    event_id: id.clone(),
                    route: route.clone(),
                    destination,
                    attempts: 0,
                    retries: 0,
                    message: Arc::clone(message),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        out.push(Inserted::New {
            deliveries: per_event_deliveries.get(id.as_str()).copied().unwrap_or(0),
            claimed,
        });
    }
    Ok(out)
}

/// For each of `events`, for each of its fan-outs, the subscriptions it
/// reaches as (id, active), in id order: one statement for the batch,
/// which share-locks them in id order.
async fn fanout_targets(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[(&NewEvent, &InsertOptions)],
) -> Result<Vec<Vec<Vec<(String, bool)>>>, StoreError> {
    let mut targets: Vec<Vec<Vec<(String, bool)>>> = events
        .iter()
        .map(|(e, _)| vec![Vec::new(); e.fanout.len()])
        .collect();
    // Row n (from 1) of the arrays is fan-out `at[n - 1]`.
    let mut at: Vec<(usize, usize)> = Vec::new();
    let (mut types, mut objects, mut tenants, mut event_types) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (e, _)) in events.iter().enumerate() {
        for (j, f) in e.fanout.iter().enumerate() {
            at.push((i, j));
            types.push(f.object_type.as_str());
            objects.push(f.object_id.as_str());
            tenants.push(f.tenant.as_deref());
            event_types.push(f.event_type.as_str());
        }
    }
    if at.is_empty() {
        return Ok(targets);
    }
    let stmt = tx
        .prepare_cached(
            "SELECT u.n, s.id, s.active FROM subscriptions s \
             JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
               WITH ORDINALITY AS u(object_type, object_id, tenant, event_type, n) \
               ON s.object_type = u.object_type AND s.object_id = u.object_id \
               AND (u.tenant IS NULL OR s.tenant = u.tenant) \
               AND (u.event_type = ANY(s.event_types) OR '*' = ANY(s.event_types)) \
             WHERE s.validity > hookgate_now_ms() \
             ORDER BY s.id \
             FOR SHARE OF s",
        )
        .await?;
    for r in tx
        .query(&stmt, &[&types, &objects, &tenants, &event_types])
        .await?
    {
        let n: i64 = r.try_get(0)?;
        let &(i, j) = usize::try_from(n - 1)
            .ok()
            .and_then(|n| at.get(n))
            .ok_or_else(|| StoreError::Internal(format!("fan-out {n} of {}", at.len())))?;
        targets[i][j].push((r.try_get(1)?, r.try_get(2)?));
    }
    Ok(targets)
}

/// A query of a [`pipeline`], not yet sent.
pub(super) type Query<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// Runs `queries` on one connection as a pipeline: each is sent when the
/// one before it was (in order, so later rows may reference earlier ones),
/// without waiting for its answer. Answers in the same order.
pub(super) async fn pipeline<'a>(
    queries: Vec<Query<'a>>,
) -> Result<Vec<Vec<tokio_postgres::Row>>, StoreError> {
    let mut queries: Vec<_> = queries.into_iter().map(Some).collect();
    let mut answers: Vec<Option<Vec<tokio_postgres::Row>>> = queries.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        // Polled in order every time: a query's request goes out on its
        // first poll, so the requests leave in this order.
        for (q, a) in queries.iter_mut().zip(answers.iter_mut()) {
            if let Some(f) = q {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(rows)) => {
                        *a = Some(rows);
                        *q = None;
                    }
                    std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await
    .map_err(db_err)?;
    Ok(answers.into_iter().map(Option::unwrap_or_default).collect())
}

/// One message of a new event and its deliveries, as statement arguments.
pub(super) struct MessageRows {
    message: Message,
    headers: String,
    idx: i32,
    dests: Vec<String>,
    actives: Vec<bool>,
    claims: Vec<bool>,
}

/// The insert, in its transaction. Returns what to answer and whether
/// deliveries were created due and unclaimed (then everyone is told).
/// The dedup key, the event and its messages go out as one pipeline: one
/// round trip for the lot; when the key turns out taken, the transaction
/// is rolled back by the caller.
pub(super) async fn insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    event: NewEvent,
    opts: &InsertOptions,
) -> Result<(Inserted, bool), StoreError> {
    // Subscriptions matching each fan-out, resolved in this transaction
    // under a share lock: a re-enable or a delete of one of them waits for
    // this insert and then sees its deliveries (parked ones requeued or
    // dead-lettered), or commits first and is seen here.
    let mut fanout_targets: Vec<Vec<(String, bool)>> = Vec::with_capacity(event.fanout.len());
    if !event.fanout.is_empty() {
        let stmt = tx
            .prepare_cached(
                "SELECT id, active FROM subscriptions WHERE validity > hookgate_now_ms() \
                 AND object_type = $1 AND object_id = $2 AND ($3::text IS NULL OR tenant = $3) \
                 AND ($4 = ANY(event_types) OR '*' = ANY(event_types)) ORDER BY id \
                 FOR SHARE",
            )
            .await?;
        for f in &event.fanout {
            let rows = tx
                .query(
                    &stmt,
                    &[&f.object_type, &f.object_id, &f.tenant, &f.event_type],
                )
                .await?;
            fanout_targets.push(
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, StoreError>>()?,
            );
        }
    }
    let deliveries = event.deliveries(&fanout_targets);
    let status = NewEvent::status(deliveries);
    let event_type = event.event_type();
    let inbound_headers = event
        .inbound
        .as_ref()
        .map(|i| json_text(&i.headers))
        .transpose()?;

    let token = LeaseToken::random();
    let lease = opts.claim.as_ref().map_or(0, |c| dur(c.lease));
    let mut unclaimed_due = false;
    let NewEvent {
        id: event_id,
        route,
        source_id,
        received_at_ms,
        messages,
        fanout,
        inbound,
    } = event;
    let mut rows_of: Vec<MessageRows> = Vec::new();
    let stored = stored_messages(
        messages.into_iter().map(|m| (m.message, m.destinations)),
        fanout.into_iter().map(|f| f.envelope),
        fanout_targets,
    );
    for (idx, (message, destinations, to_subscribers)) in stored.enumerate() {
        let mut m = MessageRows {
            headers: json_text(&message.headers)?,
            message,
            idx: idx as i32,
            dests: Vec::with_capacity(destinations.len()),
            actives: Vec::with_capacity(destinations.len()),
            claims: Vec::with_capacity(destinations.len()),
        };
        for (dest, active) in destinations {
            let (claim, announce) =
                ClaimNew::decide(opts.claim.as_ref(), &dest, active, to_subscribers);
            unclaimed_due |= announce;
            m.dests.push(dest);
            m.actives.push(active);
            m.claims.push(claim);
        }
        rows_of.push(m);
    }

    // Insert-or-conflict on the unique key: the key is ours if it was free
    // or its window has passed. A concurrent insert of the same key waits
    // for ours to commit, then conflicts.
    let dedup_stmt = tx
        .prepare_cached(
            "INSERT INTO dedup (route, source_id, event_id, expires_at) \
             VALUES ($1, $2, $3, hookgate_now_ms() + $4) \
             ON CONFLICT (route, source_id) DO UPDATE \
               SET event_id = excluded.event_id, expires_at = excluded.expires_at \
               WHERE dedup.expires_at <= hookgate_now_ms() \
             RETURNING event_id",
        )
        .await?;
    let event_stmt = tx
        .prepare_cached(
            "INSERT INTO events (id, route, source_id, received_at, status, event_type) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let inbound_stmt = tx
        .prepare_cached(
            "INSERT INTO event_requests (event_id, method, path, headers) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    // A message and its deliveries in one statement.
    let message_stmt = tx
        .prepare_cached(
            "WITH m AS (\
               INSERT INTO messages (event_id, idx, message_id, event_type, content_type, headers, body) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id) \
             INSERT INTO deliveries (event_id, message_id, destination, state, next_attempt_at, lease_token, last_error) \
             SELECT $1, m.id, u.dest, CASE WHEN u.active THEN 'pending' ELSE 'parked' END, \
                    hookgate_now_ms() + CASE WHEN u.claim THEN $8::bigint ELSE 0 END, \
                    CASE WHEN u.claim THEN $9::bigint END, \
                    CASE WHEN u.active THEN NULL ELSE $10 END \
             FROM m, unnest($11::text[], $12::bool[], $13::bool[]) WITH ORDINALITY AS u(dest, active, claim, n) \
             ORDER BY u.n \
             RETURNING id, destination, lease_token IS NOT NULL",
        )
        .await?;
    let window = dur(opts.dedup_window);
    let received = ms(received_at_ms);
    let mut queries: Vec<Query<'_>> = Vec::new();
    // Each query owns its argument list; the values are borrowed.
    let (event_id_r, route_r, source_r) = (&event_id, &route, &source_id);
    let (status_r, type_r, received_r, window_r) = (&status, &event_type, &received, &window);
    let (lease_r, token_r) = (&lease, &token.0);
    let (dedup_r, event_r, inbound_r, message_r) =
        (&dedup_stmt, &event_stmt, &inbound_stmt, &message_stmt);
    if let Some(source) = source_r {
        queries.push(Box::pin(async move {
            tx.query(dedup_r, &[route_r, source, event_id_r, window_r])
                .await
        }));
    }
    queries.push(Box::pin(async move {
        tx.query(
            event_r,
            &[event_id_r, route_r, source_r, received_r, status_r, type_r],
        )
        .await
    }));
    if let (Some(inbound), Some(headers)) = (&inbound, &inbound_headers) {
        queries.push(Box::pin(async move {
            tx.query(
                inbound_r,
                &[event_id_r, &inbound.method, &inbound.path, headers],
            )
            .await
        }));
    }
    for m in &rows_of {
        queries.push(Box::pin(async move {
            let body: &[u8] = &m.message.body;
            tx.query(
                message_r,
                &[
                    event_id_r,
                    &m.idx,
                    &m.message.id,
                    &m.message.event_type,
                    &m.message.content_type,
                    &m.headers,
                    &body,
                    lease_r,
                    token_r,
                    &PARKED_REASON,
                    &m.dests,
                    &m.actives,
                    &m.claims,
                ],
            )
            .await
        }));
    }
    let mut answers = pipeline(queries).await?.into_iter();
    if let Some(source) = &source_id
        && answers.next().unwrap_or_default().is_empty()
    {
        let existing_id: String = tx
            .query_one(
                "SELECT event_id FROM dedup WHERE route = $1 AND source_id = $2",
                &[&route, source],
            )
            .await?
            .try_get(0)?;
        return Ok((Inserted::Duplicate { existing_id }, false));
    }
    let mut message_answers = answers.skip(1 + usize::from(inbound_headers.is_some()));
    let mut claimed = Vec::new();
    for m in rows_of {
        let rows = message_answers.next().unwrap_or_default();
        let message = Arc::new(m.message);
        let mut mine: Vec<(i64, String)> = Vec::new();
        for r in &rows {
            if r.try_get::<_, bool>(2)? {
                mine.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        mine.sort_unstable_by_key(|(id, _)| *id);
        for (id, destination) in mine {
            claimed.push(DueDelivery {
                id,
                lease: token,
                event_id: event_id.clone(),
                route: route.clone(),
                destination,
                attempts: 0,
                retries: 0,
                message: message.clone(),
            });
        }
    }
    Ok((
        Inserted::New {
            deliveries,
            claimed,
        },
        unclaimed_due,
    ))
}
