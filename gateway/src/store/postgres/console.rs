//! PostgreSQL answers for the console block of the
//! [`Store`](crate::store::Store) trait (see [`stats`](crate::store::stats)),
//! the same queries as `sqlite/console.rs` in PostgreSQL's dialect. Each is
//! a function of a client or a transaction, called by a thin trait method
//! in `mod.rs`.

use tokio_postgres::GenericClient;

use super::{Args, BATCH_ROWS, ms, unsigned};
use crate::store::stats::{
    Backlog, COUNT_CAP, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    StatsTally, StatusCounts, failure_reason,
};
use crate::store::{EventPage, EventStatus, EventSummary, StoreError, rfc3339};

/// `WHERE` clause (over `events e`) for `f`; the status is left out when
/// `with_status` is false (counts by status).
fn where_sql(f: &ConsoleFilter, with_status: bool, args: &mut Args) -> String {
    let mut clauses: Vec<String> = Vec::new();
    let base = &f.base;
    if let (true, Some(status)) = (with_status, base.status) {
        clauses.push(format!(
            "e.status = {}",
            args.add(status.as_str().to_owned())
        ));
    }
    if let Some(route) = &base.route {
        clauses.push(format!("e.route = {}", args.add(route.clone())));
    }
    if let Some(dest) = &base.destination {
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id AND x.destination = {})",
            args.add(dest.clone())
        ));
    }
    if let Some(since) = base.since_ms {
        clauses.push(format!("e.received_at >= {}", args.add(ms(since))));
    }
    if let Some(until) = base.until_ms {
        clauses.push(format!("e.received_at < {}", args.add(ms(until))));
    }
    if let Some(t) = &f.event_type {
        clauses.push(format!("e.event_type = {}", args.add(t.clone())));
    }
    if let Some(q) = f.search.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // Ids are ASCII and sort bytewise (COLLATE "C"), so every id
        // starting with `q` sorts in [q, q + DEL): a range on the key.
        let lo = args.add(q.to_owned());
        let hi = args.add(format!("{q}\u{7f}"));
        let exact = args.add(q.to_owned());
        clauses.push(format!(
            "e.id IN (SELECT id FROM events WHERE id >= {lo} AND id < {hi} \
             UNION SELECT id FROM events WHERE source_id = {exact} \
             UNION SELECT event_id FROM messages WHERE message_id = {exact})"
        ));
    }
    if let Some(max) = &f.max_id {
        clauses.push(format!("e.id <= {}", args.add(max.clone())));
    }
    if clauses.is_empty() {
        "TRUE".to_owned()
    } else {
        clauses.join(" AND ")
    }
}

/// Which deliveries of the matching events a bulk replay requeues: those to
/// the filtered destination, in the filtered state, not in flight, not
/// parked for a disabled subscription.
fn delivery_sql(f: &ConsoleFilter, args: &mut Args) -> String {
    let mut sql = "d.state <> 'parked' \
         AND NOT (d.state = 'pending' AND d.lease_token IS NOT NULL \
                  AND d.next_attempt_at > hookgate_now_ms())"
        .to_owned();
    if let Some(dest) = &f.base.destination {
        sql.push_str(&format!(" AND d.destination = {}", args.add(dest.clone())));
    }
    if let Some(status) = f.base.status {
        sql.push_str(&format!(
            " AND d.state = {}",
            args.add(status.as_str().to_owned())
        ));
    }
    sql
}

pub(super) async fn inbound(
    c: &impl GenericClient,
    event_id: &str,
) -> Result<Option<InboundView>, StoreError> {
    let row = c
        .query_opt(
            "SELECT method, path, headers FROM event_requests WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
    row.map(|r| {
        let headers: String = r.try_get(2)?;
        Ok(InboundView {
            method: r.try_get(0)?,
            path: r.try_get(1)?,
            headers: serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("request headers: {e}")))?,
        })
    })
    .transpose()
}

pub(super) async fn list(
    c: &impl GenericClient,
    filter: &ConsoleFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<EventPage, StoreError> {
    let mut args = Args::default();
    let mut where_clause = where_sql(filter, true, &mut args);
    if let Some(cursor) = cursor {
        where_clause.push_str(&format!(" AND e.id < {}", args.add(cursor.to_owned())));
    }
    let sql = format!(
        "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
         FROM events e WHERE {where_clause} ORDER BY e.id DESC LIMIT {}",
        limit + 1
    );
    let mut events = Vec::with_capacity(limit + 1);
    for r in c.query(&sql, &args.refs()).await? {
        let received: i64 = r.try_get(3)?;
        let status: String = r.try_get(4)?;
        events.push(EventSummary {
            id: r.try_get(0)?,
            route: r.try_get(1)?,
            status: EventStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
            source_id: r.try_get(2)?,
            event_type: r.try_get(5)?,
            received_at: rfc3339(unsigned(received)),
            received_at_ms: unsigned(received),
        });
    }
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(EventPage { events, next })
}

pub(super) async fn counts(
    c: &impl GenericClient,
    filter: &ConsoleFilter,
) -> Result<StatusCounts, StoreError> {
    let mut out = [0u64; 3];
    for (i, status) in [
        EventStatus::Pending,
        EventStatus::Delivered,
        EventStatus::Dead,
    ]
    .into_iter()
    .enumerate()
    {
        // Each status counted up to COUNT_CAP rows: bounded work whatever
        // the filter, and exact below the cap.
        let mut args = Args::default();
        let s = args.add(status.as_str().to_owned());
        let where_clause = where_sql(filter, false, &mut args);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events e WHERE e.status = {s} AND {where_clause} \
             LIMIT {COUNT_CAP}) AS capped"
        );
        out[i] = unsigned(c.query_one(&sql, &args.refs()).await?.try_get(0)?);
    }
    Ok(StatusCounts {
        pending: out[0],
        delivered: out[1],
        dead: out[2],
    })
}

/// With `moving` (a replay with `to`), a subscriber's deliveries are not
/// counted: they never move.
pub(super) async fn replay_set(
    c: &impl GenericClient,
    filter: &ConsoleFilter,
    moving: bool,
) -> Result<ReplaySet, StoreError> {
    let mut args = Args::default();
    let where_clause = where_sql(filter, true, &mut args);
    let events: i64 = c
        .query_one(
            &format!("SELECT COUNT(*) FROM events e WHERE {where_clause}"),
            &args.refs(),
        )
        .await?
        .try_get(0)?;
    let deliveries_clause = delivery_sql(filter, &mut args) + crate::store::movable_sql(moving);
    let deliveries: i64 = c
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE {where_clause} AND {deliveries_clause}"
            ),
            &args.refs(),
        )
        .await?
        .try_get(0)?;
    Ok(ReplaySet {
        events: unsigned(events),
        deliveries: unsigned(deliveries),
    })
}

/// One batch of a console bulk replay, in its own transaction: requeues up
/// to [`BATCH_ROWS`] deliveries the filter matches with ids above `after`.
/// The rows are locked as they are picked (`FOR UPDATE OF d SKIP LOCKED`),
/// so each is checked again as it is now: one another gateway claimed
/// since the count is in flight and left to finish, and one being changed
/// right now is skipped. Returns the requeued deliveries' events, how many
/// were requeued, and the last id taken. The events' statuses are left as
/// they were until the whole set is requeued (see the SQLite engine's
/// `replay_filtered`).
pub(super) async fn replay_batch_filtered(
    tx: &deadpool_postgres::Transaction<'_>,
    filter: &ConsoleFilter,
    after: i64,
    to: Option<&str>,
) -> Result<(Vec<String>, u64, Option<i64>), StoreError> {
    let mut args = Args::default();
    let where_clause = where_sql(filter, true, &mut args);
    let deliveries_clause =
        delivery_sql(filter, &mut args) + crate::store::movable_sql(to.is_some());
    let after = args.add(after);
    let to = args.add(to.map(str::to_owned));
    let rows = tx
        .query(
            &format!(
                "WITH picked AS (\
                   SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id \
                   WHERE {where_clause} AND {deliveries_clause} AND d.id > {after} \
                   ORDER BY d.id LIMIT {BATCH_ROWS} FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE deliveries d SET state = 'pending', retries = 0, lease_token = NULL, \
                   next_attempt_at = hookgate_now_ms(), destination = coalesce({to}::text, d.destination) \
                 FROM picked WHERE d.id = picked.id \
                 RETURNING d.id, d.event_id"
            ),
            &args.refs(),
        )
        .await?;
    let mut last = None;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        last = last.max(Some(r.try_get::<_, i64>(0)?));
        events.push(r.try_get::<_, String>(1)?);
    }
    events.sort_unstable();
    events.dedup();
    Ok((events, rows.len() as u64, last))
}

pub(super) async fn replay_delivery(
    tx: &deadpool_postgres::Transaction<'_>,
    event_id: &str,
    delivery_id: i64,
) -> Result<bool, StoreError> {
    // A delivery in flight right now is left to finish; a parked one waits
    // for its subscription.
    let event = tx
        .query_opt(
            "UPDATE deliveries SET state = 'pending', retries = 0, lease_token = NULL, \
               next_attempt_at = hookgate_now_ms() \
             WHERE id = $1 AND event_id = $2 AND state <> 'parked' \
             AND NOT (state = 'pending' AND lease_token IS NOT NULL \
                      AND next_attempt_at > hookgate_now_ms()) \
             RETURNING event_id",
            &[&delivery_id, &event_id],
        )
        .await?;
    let Some(row) = event else {
        return Ok(false);
    };
    super::refresh_statuses(tx, vec![row.try_get(0)?]).await?;
    Ok(true)
}

pub(super) async fn backlog(c: &impl GenericClient) -> Result<Vec<Backlog>, StoreError> {
    c.query(
        "SELECT d.destination, COUNT(*), MIN(e.received_at) \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.state = 'pending' GROUP BY d.destination ORDER BY d.destination",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Backlog {
            destination: r.try_get(0)?,
            pending: unsigned(r.try_get(1)?),
            oldest_pending_ms: r.try_get::<_, Option<i64>>(2)?.map(unsigned),
        })
    })
    .collect()
}

pub(super) async fn destination_stats(
    c: &impl GenericClient,
    since_ms: u64,
    now_ms: u64,
    buckets: u32,
) -> Result<Vec<DestinationStats>, StoreError> {
    let mut tally = StatsTally::new(since_ms, now_ms, buckets);
    let window = [ms(since_ms), ms(tally.width()), ms(now_ms)];
    for r in c
        .query(
            "SELECT d.destination, (a.attempted_at - $1) / $2 AS b, \
                    COUNT(*) FILTER (WHERE a.status BETWEEN 200 AND 299), COUNT(*), \
                    AVG(a.latency_ms)::float8, \
                    MAX(a.id) FILTER (WHERE a.status IS NULL OR a.status NOT BETWEEN 200 AND 299) \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at >= $1 AND a.attempted_at < $3 \
             GROUP BY d.destination, b",
            &[&window[0], &window[1], &window[2]],
        )
        .await?
    {
        tally.bucket(
            r.try_get(0)?,
            unsigned(r.try_get(1)?),
            unsigned(r.try_get(3)?),
            unsigned(r.try_get(2)?),
            r.try_get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            r.try_get(5)?,
        );
    }
    // Percentiles computed by the database, per destination
    // (`percentile_disc`, the nearest rank `stats::percentile` also takes).
    for r in c
        .query(
            "SELECT d.destination, \
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY a.latency_ms), \
                    percentile_disc(0.99) WITHIN GROUP (ORDER BY a.latency_ms) \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at >= $1 AND a.attempted_at < $2 GROUP BY d.destination",
            &[&window[0], &window[2]],
        )
        .await?
    {
        if let Some(stats) = tally.get_mut(r.try_get(0)?) {
            stats.p50_ms = r.try_get::<_, Option<i64>>(1)?.map(unsigned);
            stats.p99_ms = r.try_get::<_, Option<i64>>(2)?.map(unsigned);
        }
    }
    for (stats, id) in tally.with_latest_failure() {
        stats.last_error = c
            .query_opt(
                "SELECT attempted_at, status, error FROM attempts WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|r| -> Result<(u64, String), StoreError> {
                let at: i64 = r.try_get(0)?;
                let status: Option<i32> = r.try_get(1)?;
                let error: Option<String> = r.try_get(2)?;
                let status = status.and_then(|s| u16::try_from(s).ok());
                Ok((unsigned(at), failure_reason(error, status)))
            })
            .transpose()?;
    }
    for b in backlog(c).await? {
        tally.backlog(b);
    }
    Ok(tally.finish())
}

pub(super) async fn parked(
    c: &impl GenericClient,
    destinations: &[String],
) -> Result<Vec<(String, ParkedDeliveries)>, StoreError> {
    let mut out = Vec::with_capacity(destinations.len());
    for dest in destinations {
        let mut parked = ParkedDeliveries::default();
        for r in c
            .query(
                "SELECT state, COUNT(*) FROM deliveries WHERE destination = $1 \
                 AND state IN ('pending', 'parked', 'dead') GROUP BY state",
                &[dest],
            )
            .await?
        {
            let state: String = r.try_get(0)?;
            let n = unsigned(r.try_get(1)?);
            match state.as_str() {
                "pending" => parked.pending = n,
                "parked" => parked.parked = n,
                _ => parked.dead = n,
            }
        }
        out.push((dest.clone(), parked));
    }
    Ok(out)
}
