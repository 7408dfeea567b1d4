//! Events as the admin API reads them (lists and details), and the bulk
//! work that walks them in batches: replay and prune.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{BATCH_ROWS, dur, headers_from_json, ms, now, refresh_event_status, status_of};
use crate::store::{
    AttemptView, DeliveryView, EventDetail, EventFilter, EventPage, EventStatus, EventSummary,
    MessageView, ReplayTarget, Retention, StoreError, rfc3339,
};

pub(super) fn filter_sql(
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

pub(super) fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<(EventSummary, String)> {
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

pub(super) fn with_status(
    (mut s, status): (EventSummary, String),
) -> Result<EventSummary, StoreError> {
    s.status = status_of(&status)?;
    Ok(s)
}

/// One batch of a replay: requeues up to [`BATCH_ROWS`] matching
/// deliveries with ids above `after`. Returns (requeued, last id seen).
pub(super) fn replay_batch(
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
pub(super) fn prune_batch(tx: &Connection, retention: Retention) -> Result<u64, StoreError> {
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

pub(super) fn get_event(tx: &Connection, id: &str) -> Result<Option<EventDetail>, StoreError> {
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

pub(super) fn list_events(
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
