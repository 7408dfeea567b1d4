//! Subscriptions as rows: their columns and decoding, and the settlement
//! of the deliveries parked for one after a re-enable or a delete.

use super::{BATCH_ROWS, notify, refresh_statuses, unsigned};
use crate::store::{
    SUBSCRIBER_PREFIX, SUBSCRIPTION_DELETED, SignatureScheme, StoreError, Subscription,
};

pub(super) const SUBSCRIPTION_COLUMNS: &str = "id, tenant, object_id, object_type, event_types, callback_url, \
     callback_token, context, validity, active, secret, created_at, failing_since, disabled_reason, \
     headers, properties, signature_scheme, previous_secret, previous_secret_expires";

/// Decodes the JSON text of a subscription's `column`; a value that does
/// not decode is [`StoreError::Corrupt`] (as in the SQLite engine), not
/// read as a default.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("subscriptions.{column}: {e}")))
}

pub(super) fn subscription_row(r: &tokio_postgres::Row) -> Result<Subscription, StoreError> {
    let context: Option<String> = r.try_get(7)?;
    let failing: Option<i64> = r.try_get(12)?;
    let headers: Option<String> = r.try_get(14)?;
    let properties: Option<String> = r.try_get(15)?;
    let scheme: Option<String> = r.try_get(16)?;
    let expires: Option<i64> = r.try_get(18)?;
    Ok(Subscription {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        object_id: r.try_get(2)?,
        object_type: r.try_get(3)?,
        event_types: r.try_get(4)?,
        callback_url: r.try_get(5)?,
        callback_token: r.try_get(6)?,
        context: context.map(|c| json_column("context", &c)).transpose()?,
        validity_ms: unsigned(r.try_get(8)?),
        active: r.try_get(9)?,
        secret: r.try_get(10)?,
        created_at_ms: unsigned(r.try_get(11)?),
        failing_since_ms: failing.map(unsigned),
        disabled_reason: r.try_get(13)?,
        headers: headers
            .map(|h| json_column("headers", &h))
            .transpose()?
            .unwrap_or_default(),
        properties: properties
            .map(|p| json_column("properties", &p))
            .transpose()?,
        signature_scheme: match scheme.as_deref() {
            None => SignatureScheme::default(),
            Some(name) => SignatureScheme::parse(name).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "subscriptions.signature_scheme: unknown scheme {name:?}"
                ))
            })?,
        },
        previous_secret: r.try_get(17)?,
        previous_secret_expires_ms: expires.map(unsigned),
    })
}

/// Settles up to [`BATCH_ROWS`] of the deliveries waiting for subscription
/// `subscription_id` against it as it is now, and says whether more may be
/// left (the SQLite engine's `settle_batch` says what each state means).
/// The subscription's row is read `FOR SHARE` and the deliveries' rows are
/// locked after it, the order every writer of both takes; a park recorded
/// meanwhile settles against the same row at write time, so nothing slips
/// between batches. The conditions are repeated on the changed rows, so a
/// row claimed meanwhile is checked again as it is now. The note in
/// `subscription_settlements` goes with the last batch; prune finishes
/// what a crash left.
pub(super) async fn settle_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    subscription_id: &str,
) -> Result<bool, StoreError> {
    let destination = format!("{SUBSCRIBER_PREFIX}{subscription_id}");
    let active: Option<bool> = tx
        .query_opt(
            "SELECT active FROM subscriptions WHERE id = $1 FOR SHARE",
            &[&subscription_id],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let settled = match active {
        Some(true) => {
            let n = tx
                .execute(
                    "UPDATE deliveries SET state = 'pending', next_attempt_at = LEAST(next_attempt_at, hookgate_now_ms()), \
                     retries = 0, lease_token = NULL, last_error = NULL \
                     WHERE id IN (SELECT id FROM deliveries WHERE destination = $1 \
                       AND state = 'parked' ORDER BY id LIMIT $2 FOR UPDATE) \
                     AND state = 'parked'",
                    &[&destination, &BATCH_ROWS],
                )
                .await?;
            if n > 0 {
                notify(tx).await?;
            }
            n
        }
        None => {
            let rows = tx
                .query(
                    "UPDATE deliveries SET state = 'dead', lease_token = NULL, \
                     next_attempt_at = hookgate_now_ms(), last_error = $3 \
                     WHERE id IN (SELECT id FROM deliveries WHERE destination = $1 \
                       AND (state = 'parked' OR (state = 'pending' \
                         AND (lease_token IS NULL OR next_attempt_at <= hookgate_now_ms()))) \
                       ORDER BY id LIMIT $2 FOR UPDATE) \
                     AND (state = 'parked' OR (state = 'pending' \
                       AND (lease_token IS NULL OR next_attempt_at <= hookgate_now_ms()))) \
                     RETURNING event_id",
                    &[&destination, &BATCH_ROWS, &SUBSCRIPTION_DELETED],
                )
                .await?;
            let events = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<String>, _>>()?;
            refresh_statuses(tx, events).await?;
            rows.len() as u64
        }
        Some(false) => 0,
    };
    let more = settled as i64 == BATCH_ROWS;
    if !more {
        tx.execute(
            "DELETE FROM subscription_settlements WHERE subscription_id = $1",
            &[&subscription_id],
        )
        .await?;
    }
    Ok(more)
}

/// Notes that `subscription_id`'s waiting deliveries are to be settled and
/// settles the first batch, in the caller's transaction (the re-enable's or
/// the delete's). Whether more may be left.
pub(super) async fn begin_settlement(
    tx: &deadpool_postgres::Transaction<'_>,
    subscription_id: &str,
) -> Result<bool, StoreError> {
    tx.execute(
        "INSERT INTO subscription_settlements (subscription_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&subscription_id],
    )
    .await?;
    settle_batch(tx, subscription_id).await
}
