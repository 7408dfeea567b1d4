//! Subscriptions as rows: their columns, patches and health updates (each
//! one conditional statement), and the settlement of the deliveries parked
//! for one after a re-enable or a delete.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::{BATCH_ROWS, dur, json_text, ms, now, refresh_event_status};
use crate::store::{
    AttemptHealth, SUBSCRIBER_PREFIX, SUBSCRIPTION_DELETED, StoreError, Subscription,
    SubscriptionHealth, SubscriptionPatch,
};

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
    values.extend(crate::store::subscription_columns::values(s)?);
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
        event_types: crate::store::subscription_columns::json_column(
            4,
            "event_types",
            &event_types,
        )?,
        callback_url: r.get(5)?,
        callback_token: r.get(6)?,
        context: context
            .map(|c| crate::store::subscription_columns::json_column(7, "context", &c))
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
    crate::store::subscription_columns::read(r, 14, &mut s)?;
    Ok(s)
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
/// A batch of [`settle_batch`]: a re-enabled subscription's parked
/// deliveries made due (`enabled`), or a deleted one's undelivered
/// deliveries given up. Both find them through `deliveries_lane`.
pub(super) fn settle_sql(enabled: bool) -> String {
    if enabled {
        format!(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = min(next_attempt_at, ?2), retries = 0, \
             lease_token = NULL, last_error = NULL \
             WHERE id IN (SELECT id FROM deliveries WHERE destination = ?1 \
               AND state = 'parked' AND state <> 'delivered' ORDER BY id LIMIT {BATCH_ROWS})"
        )
    } else {
        format!(
            "UPDATE deliveries SET state = 'dead', lease_token = NULL, \
             next_attempt_at = ?2, last_error = ?3 \
             WHERE id IN (SELECT id FROM deliveries WHERE destination = ?1 \
               AND state <> 'delivered' AND (state = 'parked' OR (state = 'pending' \
                 AND (lease_token IS NULL OR next_attempt_at <= ?2))) \
               ORDER BY id LIMIT {BATCH_ROWS}) \
             RETURNING event_id"
        )
    }
}

pub(super) fn settle_batch(tx: &Connection, subscription_id: &str) -> Result<bool, StoreError> {
    let now = now();
    let destination = format!("{SUBSCRIBER_PREFIX}{subscription_id}");
    let active: Option<bool> = tx
        .prepare_cached("SELECT active FROM subscriptions WHERE id = ?1")?
        .query_row(params![subscription_id], |r| r.get(0))
        .optional()?;
    let settled = match active {
        Some(true) => tx
            .prepare_cached(&settle_sql(true))?
            .execute(params![destination, now])?,
        None => {
            let mut events: Vec<String> = tx
                .prepare_cached(&settle_sql(false))?
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
pub(super) fn begin_settlement(tx: &Connection, subscription_id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO subscription_settlements (subscription_id) VALUES (?1)",
    )?
    .execute(params![subscription_id])?;
    settle_batch(tx, subscription_id)
}

/// A subscription as a park finds it when it is written.
pub(super) enum SubscriptionNow {
    Active,
    Disabled,
    Deleted,
}

/// The subscription a delivery would be parked under, as it is now; `None`
/// when the delivery is not to a subscriber (or is gone).
pub(super) fn parked_under(
    tx: &Connection,
    delivery_id: i64,
) -> Result<Option<SubscriptionNow>, StoreError> {
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

pub(super) fn patch_subscription(
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
    for (sql, v) in crate::store::subscription_columns::patch_sets(patch)? {
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

pub(super) fn health_update(
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
