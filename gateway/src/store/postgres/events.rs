//! Events as the admin API reads them (filters, summaries, details), and
//! bulk replay in batches.

use super::{Args, BATCH_ROWS, headers_from_json, ms, refresh_statuses, status_of, unsigned};
use crate::store::{
    AttemptView, DeliveryView, EventDetail, EventFilter, EventStatus, EventSummary, MessageView,
    ReplayTarget, StoreError, rfc3339,
};

/// `WHERE` clause (over `events e`, and `deliveries d` for replays) for an
/// admin API filter.
pub(super) fn filter_sql(
    filter: &EventFilter,
    delivery_alias: Option<&str>,
    args: &mut Args,
) -> String {
    let mut clauses = Vec::new();
    if let Some(status) = filter.status {
        let p = args.add(status.as_str().to_owned());
        match delivery_alias {
            Some(d) => clauses.push(format!("{d}.state = {p}")),
            None => clauses.push(format!("e.status = {p}")),
        }
    }
    if let Some(route) = &filter.route {
        clauses.push(format!("e.route = {}", args.add(route.clone())));
    }
    if let Some(dest) = &filter.destination {
        let p = args.add(dest.clone());
        match delivery_alias {
            Some(d) => clauses.push(format!("{d}.destination = {p}")),
            None => clauses.push(format!(
                "EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id AND x.destination = {p})"
            )),
        }
    }
    if let Some(since) = filter.since_ms {
        clauses.push(format!("e.received_at >= {}", args.add(ms(since))));
    }
    if let Some(until) = filter.until_ms {
        clauses.push(format!("e.received_at < {}", args.add(ms(until))));
    }
    if clauses.is_empty() {
        "TRUE".to_owned()
    } else {
        clauses.join(" AND ")
    }
}

pub(super) fn summary(r: &tokio_postgres::Row) -> Result<EventSummary, StoreError> {
    let received: i64 = r.try_get("received_at")?;
    let status: String = r.try_get("status")?;
    Ok(EventSummary {
        id: r.try_get("id")?,
        route: r.try_get("route")?,
        status: status_of(&status)?,
        source_id: r.try_get("source_id")?,
        event_type: r.try_get("event_type")?,
        received_at: rfc3339(unsigned(received)),
        received_at_ms: unsigned(received),
    })
}

/// An event with its messages, deliveries and attempts (`Store::get`), read
/// in `tx`'s one snapshot.
pub(super) async fn get_event(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<EventDetail>, StoreError> {
    let Some(row) = tx
        .query_opt(
            "SELECT id, route, source_id, received_at, status, event_type FROM events WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let summary = summary(&row)?;
    let mut message_rows: Vec<(i64, MessageView)> = Vec::new();
    for r in tx
        .query(
            "SELECT id, idx, message_id, event_type, content_type, headers, body \
             FROM messages WHERE event_id = $1 ORDER BY idx",
            &[&id],
        )
        .await?
    {
        let body: Vec<u8> = r.try_get(6)?;
        let headers: String = r.try_get(5)?;
        let idx: i32 = r.try_get(1)?;
        message_rows.push((
            r.try_get(0)?,
            MessageView {
                index: idx.max(0) as u32,
                id: r.try_get(2)?,
                event_type: r.try_get(3)?,
                content_type: r.try_get(4)?,
                headers: headers_from_json(&headers)?,
                size: body.len(),
                body: String::from_utf8(body).ok(),
            },
        ));
    }
    let mut deliveries = Vec::new();
    for r in tx
        .query(
            "SELECT id, message_id, destination, state, attempts, next_attempt_at, last_error \
             FROM deliveries WHERE event_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
    {
        let message_row: i64 = r.try_get(1)?;
        let state: String = r.try_get(3)?;
        let state = status_of(&state)?;
        let next: i64 = r.try_get(5)?;
        let attempts: i32 = r.try_get(4)?;
        deliveries.push(DeliveryView {
            id: r.try_get(0)?,
            message_index: message_rows
                .iter()
                .find(|(row, _)| *row == message_row)
                .map(|(_, m)| m.index)
                .unwrap_or(0),
            destination: r.try_get(2)?,
            state,
            attempts_made: attempts.max(0) as u32,
            next_attempt_at: (state == EventStatus::Pending).then(|| rfc3339(unsigned(next))),
            last_error: r.try_get(6)?,
            attempts: Vec::new(),
        });
    }
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    for r in tx
        .query(
            "SELECT delivery_id, attempted_at, status, latency_ms, error, response FROM attempts \
             WHERE delivery_id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await?
    {
        let delivery: i64 = r.try_get(0)?;
        let status: Option<i32> = r.try_get(2)?;
        let view = AttemptView {
            at: rfc3339(unsigned(r.try_get(1)?)),
            status: status.and_then(|s| u16::try_from(s).ok()),
            latency_ms: unsigned(r.try_get(3)?),
            error: r.try_get(4)?,
            response: r.try_get(5)?,
        };
        if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery) {
            d.attempts.push(view);
        }
    }
    Ok(Some(EventDetail {
        summary,
        messages: message_rows.into_iter().map(|(_, m)| m).collect(),
        deliveries,
    }))
}

/// One batch of a replay: requeues up to [`BATCH_ROWS`] matching
/// deliveries with ids above `after`. Returns (requeued, last id seen).
pub(super) async fn replay_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    target: &ReplayTarget,
    to: Option<&str>,
    after: i64,
) -> Result<(u64, Option<i64>), StoreError> {
    let mut args = Args::default();
    let where_sql = match target {
        ReplayTarget::Event { id, destination } => {
            let mut sql = format!("d.event_id = {}", args.add(id.clone()));
            if let Some(dest) = destination {
                sql.push_str(&format!(" AND d.destination = {}", args.add(dest.clone())));
            }
            sql
        }
        ReplayTarget::Matching(filter) => filter_sql(filter, Some("d"), &mut args),
    };
    let movable = crate::store::movable_sql(to.is_some());
    let destination = match to {
        Some(to) => args.add(to.to_owned()),
        None => "d.destination".to_owned(),
    };
    let after = args.add(after);
    // A delivery in flight (pending, leased, lease not run out) is left to
    // finish, and one parked stays parked for its subscription's re-enable
    // (the console's replay already left it); the lock skips rows another gateway is changing right now
    // (a claim, a record), and the condition is checked again on update.
    let sql = format!(
        "WITH picked AS (\
           SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id \
           WHERE {where_sql}{movable} AND d.id > {after} \
           AND d.state <> 'parked' AND NOT (d.state = 'pending' AND d.lease_token IS NOT NULL AND d.next_attempt_at > hookgate_now_ms()) \
           ORDER BY d.id LIMIT {BATCH_ROWS} FOR UPDATE OF d SKIP LOCKED) \
         UPDATE deliveries d SET state = 'pending', retries = 0, lease_token = NULL, \
           next_attempt_at = hookgate_now_ms(), destination = {destination} \
         FROM picked WHERE d.id = picked.id \
         RETURNING d.id, d.event_id"
    );
    let rows = tx.query(&sql, &args.refs()).await?;
    let mut last = None;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        last = last.max(Some(id));
        events.push(r.try_get::<_, String>(1)?);
    }
    refresh_statuses(tx, events).await?;
    Ok((rows.len() as u64, last))
}
