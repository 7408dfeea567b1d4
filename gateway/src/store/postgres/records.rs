//! Attempts' outcomes, written in batches.
//!
//! Every delivered webhook ends in a record, and on PostgreSQL a record on
//! its own is a statement and a commit: the fixed cost of both (executor
//! start, a WAL flush, the round trip) is most of what the database spends
//! on it. So records that arrive while earlier ones are being written wait
//! for a [`WRITERS`] slot and go together, at most [`MAX_BATCH`] at a time,
//! in one call of `hookgate_record_many` (schema version 7): one statement,
//! one commit. A lone record goes at once, so an idle gateway adds no
//! delay; under load the batches grow by themselves.
//!
//! Each record in a batch is written exactly as it would be alone: under
//! its lease token, the attempt row only if the delivery changed, the
//! event's status refreshed when the delivery finished. A batch whose
//! statement fails is written again one record at a time on the same
//! connection, so a record the database refuses fails alone (the store
//! contract: a failed operation rolls back only itself), while a batch
//! that cannot get a connection fails whole, at once, instead of waiting
//! for the pool once per record.

use std::sync::{Arc, Mutex};

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, batch, checkout, db_err, dur, ms};
use crate::store::{AttemptRecord, NextState};
use crate::text::without_nul;

/// The most records one statement writes.
const MAX_BATCH: usize = 256;

/// Batches written at once, each on its own pool connection. More than one,
/// so that a batch waiting on a row lock (a re-enable settling the same
/// subscription's deliveries) does not hold up everyone's records.
const WRITERS: usize = 4;

/// Records that may wait for a batch; past this, recording waits.
const QUEUE: usize = WRITERS * MAX_BATCH * 4;

/// One record as the arguments of `hookgate_record_many`.
struct Row {
    id: i64,
    token: i64,
    state: &'static str,
    delay: i64,
    attempted: i32,
    retried: i32,
    last_error: Option<String>,
    at: i64,
    status: Option<i32>,
    latency: i64,
    error: Option<String>,
    response: Option<String>,
}

impl Row {
    fn of(a: AttemptRecord) -> Self {
        let (state, delay, attempted, retried, last_error) = next_state(&a);
        Row {
            id: a.delivery_id,
            token: a.lease.0,
            state,
            delay,
            attempted,
            retried,
            last_error: last_error.map(without_nul),
            at: ms(a.attempted_at_ms),
            status: a.status.map(i32::from),
            latency: ms(a.latency_ms),
            error: a.error.map(without_nul),
            response: a.response_excerpt.map(without_nul),
        }
    }
}

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// The queue of records waiting to be written. Cheap to clone; the writer
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Recorder {
    queue: mpsc::Sender<(Row, Reply)>,
}

impl Recorder {
    /// Starts the writer, which takes connections from `pool` and reports
    /// an unreachable database in `down` (see [`checkout`]).
    pub(super) fn spawn(pool: Pool, down: Arc<Mutex<Option<String>>>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(batch::run(rx, WRITERS, MAX_BATCH, move |batch| {
            let (pool, down) = (pool.clone(), Arc::clone(&down));
            async move { write_batch(&pool, &down, batch).await }
        }));
        Recorder { queue }
    }

    /// Writes `a`: whether its lease still held (then it is written) or
    /// not (nothing is). A full queue is waited on, not refused: an
    /// attempt's outcome is owed (the dispatcher bounds how many wait).
    pub(super) async fn record(&self, a: AttemptRecord) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((Row::of(a), reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Writes `batch` and answers each of its records.
async fn write_batch(pool: &Pool, down: &Mutex<Option<String>>, batch: Vec<(Row, Reply)>) {
    let conn = match checkout(pool, pool.timeouts(), down).await {
        Ok(conn) => conn,
        Err(e) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    // By delivery id: the order in which every writer locks deliveries.
    let mut batch = batch;
    batch.sort_by_key(|(row, _)| row.id);
    let (rows, replies): (Vec<Row>, Vec<Reply>) = batch.into_iter().unzip();
    match write(&conn, &rows).await {
        Ok(written) => {
            for (reply, w) in replies.into_iter().zip(written) {
                let _ = reply.send(Ok(w));
            }
        }
        Err(e) if rows.len() == 1 => {
            let _ = replies.into_iter().next().map(|r| r.send(Err(e)));
        }
        // One at a time: the one the database refuses fails alone.
        Err(_) => {
            for (row, reply) in rows.iter().zip(replies) {
                let one = write(&conn, std::slice::from_ref(row)).await.map(|w| w[0]);
                let _ = reply.send(one);
            }
        }
    }
}

/// One statement for `rows`: whether each was written.
async fn write(conn: &Object, rows: &[Row]) -> Result<Vec<bool>, StoreError> {
    fn col<T>(rows: &[Row], f: impl Fn(&Row) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    let stmt = conn
        .prepare_cached(
            "SELECT hookgate_record_many($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], \
             $5::integer[], $6::integer[], $7::text[], $8::bigint[], $9::integer[], \
             $10::bigint[], $11::text[], $12::text[])",
        )
        .await
        .map_err(db_err)?;
    let written: Vec<bool> = conn
        .query_one(
            &stmt,
            &[
                &col(rows, |r| r.id),
                &col(rows, |r| r.token),
                &col(rows, |r| r.state),
                &col(rows, |r| r.delay),
                &col(rows, |r| r.attempted),
                &col(rows, |r| r.retried),
                &rows
                    .iter()
                    .map(|r| r.last_error.as_deref())
                    .collect::<Vec<_>>(),
                &col(rows, |r| r.at),
                &col(rows, |r| r.status),
                &col(rows, |r| r.latency),
                &rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>(),
                &rows
                    .iter()
                    .map(|r| r.response.as_deref())
                    .collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)?;
    if written.len() != rows.len() {
        return Err(StoreError::Database(format!(
            "hookgate_record_many answered {} of {} records",
            written.len(),
            rows.len()
        )));
    }
    Ok(written)
}

/// The attempt's next state as (state, delay in ms, attempts added,
/// retries added, last error).
pub(super) fn next_state(a: &AttemptRecord) -> (&'static str, i64, i32, i32, Option<String>) {
    match &a.next {
        NextState::Delivered => ("delivered", 0, 1, 0, None),
        NextState::Retry { after } => (
            "pending",
            dur(*after),
            1,
            1,
            a.error
                .clone()
                .or_else(|| a.status.map(|s| format!("HTTP {s}"))),
        ),
        NextState::Postpone { after } => ("pending", dur(*after), 0, 0, a.error.clone()),
        NextState::Dead { reason } => ("dead", 0, 1, 0, Some(reason.clone())),
        NextState::Park { reason, attempted } => {
            ("parked", 0, i32::from(*attempted), 0, Some(reason.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dur;
    use super::*;

    #[test]
    fn a_row_carries_the_decision_and_storable_texts() {
        let a = AttemptRecord {
            delivery_id: 7,
            event_id: "evt_7".into(),
            lease: crate::store::LeaseToken(42),
            attempted_at_ms: 1_000,
            status: Some(503),
            latency_ms: 12,
            error: None,
            response_excerpt: Some("busy\0".into()),
            next: crate::store::NextState::Retry {
                after: std::time::Duration::from_secs(2),
            },
        };
        let r = Row::of(a);
        assert_eq!((r.id, r.token, r.state), (7, 42, "pending"));
        assert_eq!(
            (r.delay, r.attempted, r.retried),
            (dur(std::time::Duration::from_secs(2)), 1, 1)
        );
        assert_eq!(r.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(r.response.as_deref(), Some("busy\u{FFFD}"));
        assert_eq!((r.at, r.status, r.latency), (1_000, Some(503), 12));
    }
}
