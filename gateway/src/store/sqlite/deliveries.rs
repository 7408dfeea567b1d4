//! The delivery queue: claims under a lease token, the outcome of an
//! attempt, and the event status that follows from its deliveries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::{SubscriptionNow, headers_from_json, json_text, later, ms, now, parked_under};
use crate::plugin::Message;
use crate::store::{
    AttemptRecord, DueDelivery, LeaseToken, NextState, Recorded, SUBSCRIPTION_DELETED, StoreError,
};

/// Recomputes an event's status from its deliveries.
pub(super) fn refresh_event_status(tx: &Connection, event_id: &str) -> rusqlite::Result<()> {
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

/// Sets the status of `event_id`, one of whose deliveries (`delivery_id`)
/// just ended as `state` (`delivered` or `dead`): [`refresh_event_status`]'s
/// rule, from one look at the event's other deliveries, and no write when
/// the status stays. Every attempt's record on the hot path runs this
/// rather than the two searches and the unconditional update (which
/// moved the status index's entry even to where it was) of the general
/// refresh: it was a seventh of the writer's time under load.
fn settle_event_status(
    tx: &Connection,
    event_id: &str,
    delivery_id: i64,
    state: &str,
) -> rusqlite::Result<()> {
    let mut status = if state == "dead" { "dead" } else { "delivered" };
    let mut others =
        tx.prepare_cached("SELECT state FROM deliveries WHERE event_id = ?1 AND id <> ?2")?;
    let mut rows = others.query(params![event_id, delivery_id])?;
    while let Some(row) = rows.next()? {
        match row.get_ref(0)?.as_bytes()? {
            b"pending" | b"parked" => {
                status = "pending";
                break;
            }
            b"dead" => status = "dead",
            _ => {}
        }
    }
    drop(rows);
    tx.prepare_cached("UPDATE events SET status = ?2 WHERE id = ?1 AND status <> ?2")?
        .execute(params![event_id, status])?;
    Ok(())
}

/// The stored message `message_row` and its event's route.
pub(super) fn load_message(
    tx: &Connection,
    message_row: i64,
) -> Result<(Message, String), StoreError> {
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

/// Due deliveries a claim with lanes to skip passes over, in due order,
/// before it looks destination by destination instead.
pub(super) const SCAN_PAST: usize = 1024;

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
/// The claim past a long backlog (see [`claim`]): the due deliveries of
/// each lane in turn, one index range per destination (`deliveries_lane`,
/// which holds no delivered row: schema 11), skipping `?4`'s lanes.
pub(super) const CLAIM_BY_LANE: &str = "UPDATE deliveries SET lease_token = ?1, next_attempt_at = ?2 \
     WHERE id IN ( \
       WITH RECURSIVE lanes(d) AS ( \
         SELECT (SELECT MIN(destination) FROM deliveries \
                 WHERE state <> 'delivered') \
         UNION ALL \
         SELECT (SELECT MIN(destination) FROM deliveries \
                 WHERE destination > lanes.d AND state <> 'delivered') \
         FROM lanes WHERE lanes.d IS NOT NULL) \
       SELECT c.id FROM lanes JOIN deliveries c ON c.id IN \
         (SELECT id FROM deliveries WHERE destination = lanes.d \
            AND state = 'pending' AND state <> 'delivered' \
            AND next_attempt_at <= ?3 \
          ORDER BY next_attempt_at, id LIMIT ?5 + 0) \
       WHERE lanes.d IS NOT NULL \
         AND lanes.d NOT IN (SELECT value FROM json_each(?4)) \
       ORDER BY c.next_attempt_at, c.id LIMIT ?5 + 0) \
     RETURNING id, event_id, message_id, destination, attempts, retries";

pub(super) fn claim(
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
                    tx.prepare_cached(CLAIM_BY_LANE)?,
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
pub(super) type ClaimedRow = (i64, String, i64, String, u32, u32);

/// Runs a claim's `UPDATE ... RETURNING` and collects its rows.
pub(super) fn claimed_rows(
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

pub(super) fn record(tx: &Connection, a: &AttemptRecord) -> Result<Recorded, StoreError> {
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
    // nothing, and then no attempt row is written either. The event is the
    // one the record carries, checked in the same `WHERE` (a record naming
    // another event is refused like a stale lease), so that it need not be
    // read back: no `RETURNING` (SQLite runs such a statement in its own
    // statement journal, a copy of every page it touches, with an
    // ephemeral table for the rows) and no second look-up.
    let updated = tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, lease_token = NULL, \
             attempts = attempts + ?5, retries = retries + ?6, last_error = ?7 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'pending' AND event_id = ?8",
        )?
        .execute(params![
            a.delivery_id,
            a.lease.0,
            state,
            next_at,
            attempted,
            retried,
            last_error,
            a.event_id
        ])?;
    if updated == 0 {
        return Ok(Recorded::LeaseLost);
    }
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
        settle_event_status(tx, &a.event_id, a.delivery_id, state)?;
    }
    Ok(Recorded::Written)
}
