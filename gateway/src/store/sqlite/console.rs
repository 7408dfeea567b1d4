//! SQLite answers for the console block of the [`Store`](crate::store::Store)
//! trait (see [`stats`](crate::store::stats)): each is a function of a
//! `&Connection`, called by a thin trait method in `mod.rs`: reads on the
//! read-only connections, replays on the writer.
//!
//! Queries stay index-friendly so that every console page renders in well
//! under 200 ms with 100,000 events stored: lists walk the primary key
//! newest first and stop at the page size, id searches are exact or prefix
//! lookups on an index, and time windows read `attempts` through its time
//! index. The table and indexes they need are a migration in `schema.rs`.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{BATCH_ROWS, SqliteStore, ms, now, refresh_event_status};
use crate::store::stats::{
    Backlog, COUNT_CAP, ConsoleFilter, DestinationStats, InboundView, ParkedDeliveries, ReplaySet,
    StatsTally, StatusCounts, failure_reason, percentile,
};
use crate::store::{EventPage, EventStatus, EventSummary, StoreError, rfc3339};

/// Migration 4: the table and indexes the console adds (the inbound
/// request of each event, id look-ups, filtered counts, attempts by time).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE event_requests (
    event_id TEXT PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    method   TEXT NOT NULL,
    path     TEXT NOT NULL,
    headers  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_source_id ON events(source_id) WHERE source_id IS NOT NULL;
CREATE INDEX messages_message_id ON messages(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_route_status ON events(route, status);
CREATE INDEX events_type_status ON events(event_type, status);
CREATE INDEX attempts_time_cover ON attempts(attempted_at, delivery_id, status, latency_ms);
"#;

/// Each destination's waiting deliveries and its oldest waiting event:
/// one walk of the pending deliveries (`deliveries_due`), not of the lanes,
/// which also hold the dead and parked ones.
pub(super) const BACKLOG: &str = "SELECT d.destination, COUNT(*), MIN(e.received_at) \
     FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.state = 'pending' GROUP BY d.destination ORDER BY d.destination";

/// A destination's undelivered deliveries by state: a range of
/// `deliveries_lane`.
pub(super) const PARKED_COUNTS: &str = "SELECT state, COUNT(*) FROM deliveries \
     WHERE destination = ?1 AND state IN ('pending', 'parked', 'dead') \
     AND state <> 'delivered' GROUP BY state";

/// `q` without a `.N` message suffix (`g1.2` → `g1`), or `q` itself.
pub(super) fn message_id_base(q: &str) -> &str {
    match q.rsplit_once('.') {
        Some((base, n))
            if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => q,
    }
}

fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

/// `WHERE` clause (over `events e`) and its arguments for `f`; the status
/// is left out when `with_status` is false (counts by status).
fn where_sql(f: &ConsoleFilter, with_status: bool) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let base = &f.base;
    if let (true, Some(status)) = (with_status, base.status) {
        clauses.push("e.status = ?".into());
        args.push(Value::Text(status.as_str().into()));
    }
    if let Some(route) = &base.route {
        clauses.push("e.route = ?".into());
        args.push(Value::Text(route.clone()));
    }
    if let Some(dest) = &base.destination {
        // `+`: look the event's deliveries up by event, never walk every
        // delivery of a busy destination.
        clauses.push(
            "EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id AND +x.destination = ?)"
                .into(),
        );
        args.push(Value::Text(dest.clone()));
    }
    // `+`: ids are time-ordered, so walking the primary key newest first
    // meets the range soon; sorting the whole range by id would not.
    if let Some(since) = base.since_ms {
        clauses.push("+e.received_at >= ?".into());
        args.push(Value::Integer(ms(since)));
    }
    if let Some(until) = base.until_ms {
        clauses.push("+e.received_at < ?".into());
        args.push(Value::Integer(ms(until)));
    }
    if let Some(t) = &f.event_type {
        clauses.push("e.event_type = ?".into());
        args.push(Value::Text(t.clone()));
    }
    if let Some(q) = f.search.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // Ids are ASCII, so every id starting with `q` sorts below
        // `q` + DEL: a range on the primary key, not a scan. Provider ids
        // are found through the dedup keys (their event's lifetime). A
        // message's id is the provider id or the event id, suffixed `.N`
        // when a webhook became several messages: found by that base. An
        // id a transform chose is found through the index of such ids
        // (`chosen_id`, schema 9).
        let base = message_id_base(q);
        clauses.push(
            "e.id IN (SELECT id FROM events WHERE id >= ? AND id < ? \
             UNION SELECT event_id FROM dedup WHERE source_id IN (?, ?) \
             UNION SELECT ? \
             UNION SELECT event_id FROM messages WHERE message_id = ? AND chosen_id IS NOT NULL)"
                .into(),
        );
        args.push(Value::Text(q.to_owned()));
        args.push(Value::Text(format!("{q}\u{7f}")));
        args.push(Value::Text(q.to_owned()));
        args.push(Value::Text(base.to_owned()));
        args.push(Value::Text(base.to_owned()));
        args.push(Value::Text(q.to_owned()));
    }
    if let Some(max) = &f.max_id {
        clauses.push("e.id <= ?".into());
        args.push(Value::Text(max.clone()));
    }
    let sql = if clauses.is_empty() {
        "1 = 1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    (sql, args)
}

/// Which deliveries of the matching events a bulk replay requeues: those to
/// the filtered destination, in the filtered state, not in flight (pending,
/// leased, lease not run out), not parked for a disabled subscription.
fn delivery_sql(f: &ConsoleFilter, now: i64, args: &mut Vec<Value>) -> String {
    let mut sql = "d.state != 'parked' \
         AND NOT (d.state = 'pending' AND d.lease_token IS NOT NULL AND d.next_attempt_at > ?)"
        .to_owned();
    args.push(Value::Integer(now));
    if let Some(dest) = &f.base.destination {
        sql.push_str(" AND d.destination = ?");
        args.push(Value::Text(dest.clone()));
    }
    if let Some(status) = f.base.status {
        sql.push_str(" AND d.state = ?");
        args.push(Value::Text(status.as_str().into()));
    }
    sql
}

impl SqliteStore {
    /// Stores the (already redacted) inbound request of a new event, in
    /// the insert's transaction.
    pub(super) fn insert_inbound(
        c: &Connection,
        event_id: &str,
        inbound: &InboundView,
    ) -> Result<(), StoreError> {
        let headers = serde_json::to_string(&inbound.headers)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        c.prepare_cached(
            "INSERT INTO event_requests (event_id, method, path, headers) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![event_id, inbound.method, inbound.path, headers])?;
        Ok(())
    }

    pub(super) fn console_inbound(
        c: &Connection,
        event_id: &str,
    ) -> Result<Option<InboundView>, StoreError> {
        let row: Option<(String, String, String)> = c
            .prepare_cached("SELECT method, path, headers FROM event_requests WHERE event_id = ?1")?
            .query_row(params![event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        row.map(|(method, path, headers)| {
            Ok(InboundView {
                method,
                path,
                headers: serde_json::from_str(&headers)
                    .map_err(|e| StoreError::Corrupt(format!("request headers: {e}")))?,
            })
        })
        .transpose()
    }

    pub(super) fn console_list(
        c: &Connection,
        filter: &ConsoleFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, StoreError> {
        let (mut where_clause, mut args) = where_sql(filter, true);
        if let Some(cursor) = cursor {
            where_clause.push_str(" AND e.id < ?");
            args.push(Value::Text(cursor.to_owned()));
        }
        let sql = format!(
            "SELECT e.id, e.route, e.source_id, e.received_at, e.status, e.event_type \
             FROM events e WHERE {where_clause} ORDER BY e.id DESC LIMIT {}",
            limit + 1
        );
        let mut events = Vec::with_capacity(limit + 1);
        let mut stmt = c.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let received: i64 = r.get(3)?;
            let status: String = r.get(4)?;
            events.push(EventSummary {
                id: r.get(0)?,
                route: r.get(1)?,
                status: EventStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
                source_id: r.get(2)?,
                event_type: r.get(5)?,
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

    pub(super) fn console_counts(
        c: &Connection,
        filter: &ConsoleFilter,
    ) -> Result<StatusCounts, StoreError> {
        let (where_clause, args) = where_sql(filter, false);
        // Each status counted up to COUNT_CAP rows: bounded work whatever
        // the filter, and exact below the cap.
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events e WHERE e.status = ? AND {where_clause} \
             LIMIT {COUNT_CAP})"
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let mut count = |status: EventStatus| -> Result<u64, StoreError> {
            let mut a = Vec::with_capacity(args.len() + 1);
            a.push(Value::Text(status.as_str().into()));
            a.extend(args.iter().cloned());
            Ok(unsigned(stmt.query_row(params_from_iter(a), |r| r.get(0))?))
        };
        Ok(StatusCounts {
            pending: count(EventStatus::Pending)?,
            delivered: count(EventStatus::Delivered)?,
            dead: count(EventStatus::Dead)?,
        })
    }

    /// With `moving` (a replay with `to`), a subscriber's deliveries are
    /// not counted: they never move.
    pub(super) fn console_replay_set(
        c: &Connection,
        filter: &ConsoleFilter,
        moving: bool,
    ) -> Result<ReplaySet, StoreError> {
        let now = now();
        let (where_clause, args) = where_sql(filter, true);
        let events: i64 = c
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM events e WHERE {where_clause}"
            ))?
            .query_row(params_from_iter(args.clone()), |r| r.get(0))?;
        let mut args = args;
        let deliveries_clause =
            delivery_sql(filter, now, &mut args) + crate::store::movable_sql(moving);
        let deliveries: i64 = c
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE {where_clause} AND {deliveries_clause}"
            ))?
            .query_row(params_from_iter(args), |r| r.get(0))?;
        Ok(ReplaySet {
            events: unsigned(events),
            deliveries: unsigned(deliveries),
        })
    }

    /// One batch of a console bulk replay: requeues up to [`BATCH_ROWS`]
    /// deliveries the filter matches with ids above `after`, each checked
    /// again (a delivery that went in flight since the count is left to
    /// finish). Returns the requeued deliveries' events, how many were
    /// requeued, and the last id. The events' statuses are left as they
    /// were: see [`Store::replay_filtered`](crate::store::Store::replay_filtered).
    /// Not `Store::replay`'s batch: its `EventFilter` has no event type, id
    /// search or page bound, so it would requeue another set than the one
    /// the operator confirmed.
    pub(super) fn console_replay_batch(
        c: &Connection,
        filter: &ConsoleFilter,
        after: i64,
        to: Option<&str>,
    ) -> Result<(Vec<String>, u64, Option<i64>), StoreError> {
        let now = now();
        let (where_clause, mut args) = where_sql(filter, true);
        let deliveries_clause =
            delivery_sql(filter, now, &mut args) + crate::store::movable_sql(to.is_some());
        args.push(Value::Integer(after));
        let picked: Vec<(i64, String)> = c
            .prepare(&format!(
                "SELECT d.id, d.event_id FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE {where_clause} AND {deliveries_clause} AND d.id > ? \
                 ORDER BY d.id LIMIT {BATCH_ROWS}"
            ))?
            .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut events = Vec::with_capacity(picked.len());
        for (id, event_id) in &picked {
            c.prepare_cached(
                "UPDATE deliveries SET state = 'pending', retries = 0, lease_token = NULL, \
                 next_attempt_at = ?2, destination = coalesce(?3, destination) WHERE id = ?1",
            )?
            .execute(params![id, now, to])?;
            events.push(event_id.clone());
        }
        events.sort_unstable();
        events.dedup();
        Ok((
            events,
            picked.len() as u64,
            picked.last().map(|(id, _)| *id),
        ))
    }

    /// Refreshes the statuses of `events` after a bulk replay.
    pub(super) fn console_refresh_statuses(
        c: &Connection,
        events: &[String],
    ) -> Result<(), StoreError> {
        for e in events {
            refresh_event_status(c, e)?;
        }
        Ok(())
    }

    pub(super) fn console_replay_delivery(
        c: &Connection,
        event_id: &str,
        delivery_id: i64,
    ) -> Result<bool, StoreError> {
        // A delivery in flight right now is left to finish; a parked one
        // waits for its subscription.
        let event: Option<String> = c
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', retries = 0, lease_token = NULL, next_attempt_at = ?1 \
                 WHERE id = ?2 AND event_id = ?3 AND state != 'parked' \
                 AND NOT (state = 'pending' AND lease_token IS NOT NULL AND next_attempt_at > ?1) \
                 RETURNING event_id",
            )?
            .query_row(params![now(), delivery_id, event_id], |r| r.get(0))
            .optional()?;
        if let Some(event) = &event {
            refresh_event_status(c, event)?;
        }
        Ok(event.is_some())
    }

    pub(super) fn console_backlog(c: &Connection) -> Result<Vec<Backlog>, StoreError> {
        Ok(c.prepare_cached(BACKLOG)?
            .query_map([], |r| {
                Ok(Backlog {
                    destination: r.get(0)?,
                    pending: unsigned(r.get(1)?),
                    oldest_pending_ms: r.get::<_, Option<i64>>(2)?.map(unsigned),
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub(super) fn console_destination_stats(
        c: &Connection,
        since_ms: u64,
        now_ms: u64,
        buckets: u32,
    ) -> Result<Vec<DestinationStats>, StoreError> {
        let mut tally = StatsTally::new(since_ms, now_ms, buckets);
        // One pass over the window through the attempts' time index.
        let mut stmt = c.prepare_cached(
            "SELECT d.destination, (a.attempted_at - ?1) / ?2 AS b, \
                    SUM(a.status BETWEEN 200 AND 299), COUNT(*), AVG(a.latency_ms), \
                    MAX(CASE WHEN a.status IS NULL OR a.status NOT BETWEEN 200 AND 299 THEN a.id END) \
             FROM attempts a CROSS JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at >= ?1 AND a.attempted_at < ?3 \
             GROUP BY d.destination, b",
        )?;
        let mut rows = stmt.query(params![ms(since_ms), ms(tally.width()), ms(now_ms)])?;
        while let Some(r) = rows.next()? {
            tally.bucket(
                &r.get::<_, String>(0)?,
                unsigned(r.get(1)?),
                unsigned(r.get(3)?),
                unsigned(r.get::<_, Option<i64>>(2)?.unwrap_or(0)),
                r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
                r.get(5)?,
            );
        }
        drop(rows);
        // Percentiles from a histogram of whole milliseconds: exact, and
        // one pass for every destination instead of a sort per quantile.
        let mut histograms: std::collections::HashMap<String, Vec<(u64, u64)>> = Default::default();
        let mut stmt = c.prepare_cached(
            "SELECT d.destination, a.latency_ms, COUNT(*) \
             FROM attempts a CROSS JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at >= ?1 AND a.attempted_at < ?2 \
             GROUP BY d.destination, a.latency_ms ORDER BY d.destination, a.latency_ms",
        )?;
        let mut rows = stmt.query(params![ms(since_ms), ms(now_ms)])?;
        while let Some(r) = rows.next()? {
            histograms
                .entry(r.get(0)?)
                .or_default()
                .push((unsigned(r.get(1)?), unsigned(r.get(2)?)));
        }
        drop(rows);
        for (dest, h) in &histograms {
            if let Some(stats) = tally.get_mut(dest) {
                stats.p50_ms = percentile(h, 0.50);
                stats.p99_ms = percentile(h, 0.99);
            }
        }
        let mut stmt =
            c.prepare_cached("SELECT attempted_at, status, error FROM attempts WHERE id = ?1")?;
        for (stats, id) in tally.with_latest_failure() {
            stats.last_error = stmt
                .query_row(params![id], |r| {
                    let at: i64 = r.get(0)?;
                    let status: Option<u16> = r.get(1)?;
                    let error: Option<String> = r.get(2)?;
                    Ok((unsigned(at), failure_reason(error, status)))
                })
                .optional()?;
        }
        for b in Self::console_backlog(c)? {
            tally.backlog(b);
        }
        Ok(tally.finish())
    }

    pub(super) fn console_parked(
        c: &Connection,
        destinations: &[String],
    ) -> Result<Vec<(String, ParkedDeliveries)>, StoreError> {
        let mut out = Vec::with_capacity(destinations.len());
        let mut stmt = c.prepare_cached(PARKED_COUNTS)?;
        for dest in destinations {
            let mut parked = ParkedDeliveries::default();
            let mut rows = stmt.query(params![dest])?;
            while let Some(r) = rows.next()? {
                let state: String = r.get(0)?;
                let n = unsigned(r.get(1)?);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search looks every kind of id up through an index: the console
    /// must not walk the messages (and their bodies) to find one.
    #[test]
    fn the_id_search_is_index_look_ups_only() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let filter = ConsoleFilter {
            search: Some("custom-77.1".into()),
            ..Default::default()
        };
        let (sql, args) = where_sql(&filter, true);
        let mut stmt = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE {sql} ORDER BY e.id DESC"
            ))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("messages_chosen_id"), "{plan}");
        for line in plan.lines() {
            assert!(
                !line.contains("SCAN messages") && !line.contains("SCAN dedup"),
                "{line} in\n{plan}"
            );
        }
    }
}
