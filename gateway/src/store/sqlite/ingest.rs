//! A new webhook in one writer operation: its dedup key, event, inbound
//! request, messages and deliveries (claimed at once when asked), with the
//! fan-outs to subscriptions resolved in the same transaction.

use std::sync::Arc;

use rusqlite::{Connection, params};

use super::console::message_id_base;
use super::{PARKED_REASON, SqliteStore, json_text, later, ms, now};
use crate::store::{
    DueDelivery, InsertOptions, Inserted, LeaseToken, NewEvent, StoreError, stored_messages,
};

/// Whether message id `id` of `event` is one the console's search cannot
/// find by its base (see `console::where_sql`): neither it nor its base
/// is the event's id or its provider's. Only such ids are indexed.
fn chosen_id(id: Option<&str>, event: &NewEvent) -> bool {
    id.is_some_and(|id| is_chosen(id, &event.id, event.source_id.as_deref()))
}

/// [`chosen_id`] for message id `id` of the event `event_id` from the
/// provider's `source_id`; schema 10 marks stored messages by this rule.
pub(super) fn is_chosen(id: &str, event_id: &str, source_id: Option<&str>) -> bool {
    let known = |x: &str| x == event_id || source_id == Some(x);
    !known(id) && !known(message_id_base(id))
}

/// The insert, inside the writer's savepoint.
pub(super) fn insert_event(
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
        let mut lookup = tx.prepare_cached(
            "SELECT id, active FROM subscriptions WHERE validity > ?1 \
             AND object_type = ?2 AND object_id = ?3 AND (?4 IS NULL OR tenant = ?4) \
             AND EXISTS (SELECT 1 FROM json_each(event_types) WHERE value = ?5 OR value = '*') \
             ORDER BY id",
        )?;
        let ids: Vec<(String, bool)> = lookup
            .query_map(
                params![now, f.object_type, f.object_id, f.tenant, f.event_type],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        #[cfg(test)]
        super::tests::FANOUT_REPREPARES.fetch_max(
            lookup.get_status(rusqlite::StatementStatus::RePrepare),
            std::sync::atomic::Ordering::Relaxed,
        );
        fanout_targets.push(ids);
    }
    let deliveries = event.deliveries(&fanout_targets);
    let status = NewEvent::status(deliveries);
    let event_type = event.event_type();
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
    let stored = stored_messages(
        messages
            .iter()
            .map(|m| (&m.message, m.destinations.iter().cloned())),
        fanout.iter().map(|f| &f.envelope),
        fanout_targets,
    );
    for (idx, (message, destinations, to_subscribers)) in stored.enumerate() {
        let headers = json_text(&message.headers)?;
        tx.prepare_cached(
            "INSERT INTO messages (event_id, idx, message_id, event_type, content_type, headers, body, chosen_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            event_id,
            idx as i64,
            message.id,
            message.event_type,
            message.content_type,
            headers,
            &message.body[..],
            chosen_id(message.id.as_deref(), event).then_some(1)
        ])?;
        let message_row = tx.last_insert_rowid();
        // Shared by this message's claimed deliveries; copied only if one is.
        let mut shared: Option<Arc<crate::plugin::Message>> = None;
        for (dest, active) in destinations {
            let claim = match (&opts.claim, lease_until) {
                (Some(c), Some(until)) if c.claims(&dest, active, to_subscribers) => Some(until),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::event;

    #[test]
    fn only_ids_the_search_cannot_find_by_their_base_are_marked_chosen() {
        let with_source = event("evt_1", Some("prov-1"), &[]);
        let without = event("evt_2", None, &[]);
        for (id, e, chosen) in [
            (None, &with_source, false),
            (Some("prov-1"), &with_source, false),
            (Some("prov-1.3"), &with_source, false),
            (Some("evt_1"), &with_source, false),
            (Some("evt_2.0"), &without, false),
            (Some("custom-77"), &with_source, true),
            (Some("custom.0"), &without, true),
            (Some("prov-1.x"), &with_source, true),
        ] {
            assert_eq!(chosen_id(id, e), chosen, "{id:?} of {}", e.id);
        }
    }
}
