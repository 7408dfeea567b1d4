//! The one thread that writes the SQLite file, with group commit.
//!
//! The thread takes every operation waiting in its queue (up to
//! [`MAX_BATCH`]), applies them in one transaction and commits once: many
//! concurrent webhooks and attempt records share one fsync. Replies are sent
//! only after the commit, so a caller that hears "inserted" knows the event
//! is on disk. Under load (the previous batch was not small) a batch's
//! transaction stays open [`COMMIT_DELAY`] for more before it commits, as
//! PostgreSQL's `commit_delay` does, its operations applied meanwhile; an
//! idle gateway commits at once.
//!
//! An operation that returns an error, or panics, fails alone and leaves no
//! partial writes; the thread goes on. Batches are first applied without
//! savepoints (a savepoint per operation costs two statements and a copy of
//! every page it touches, about a tenth of the gateway's CPU under load);
//! when an operation fails, the whole transaction is rolled back and the
//! batch is applied again with a savepoint around each operation, so the
//! failed one is rolled back alone. Operations are therefore closures that
//! can run twice (`FnMut`): a second run starts from the state the first run
//! saw, since that first run was rolled back.
//!
//! Two kinds of callers share the queue. Ingest is shed when too much of it
//! is waiting ([`StoreError::Overloaded`], answered 503 with Retry-After).
//! Everything else (attempt records, claims, lease renewals, admin writes)
//! is never shed: its callers are few and bounded (deliveries in flight),
//! and dropping an attempt record would only cause a duplicate delivery
//! once the lease ran out.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::observability::flood::{Flood, log_limited};
use crate::store::StoreError;

/// Most operations applied in one transaction. Bounds the latency a commit
/// adds to the first operation of a batch.
const MAX_BATCH: usize = 512;

/// How long a batch's transaction stays open for more operations under
/// load. Measured with `hookgate-bench --only delivery`, alternating runs:
/// 500 µs cut the gateway's CPU per request by about a tenth (fewer,
/// fuller commits) and answered -> delivered p99 with it; 1 ms left the
/// machine idle at times while the writer slept before applying.
/// Measured again once it applied first and slept out the rest: 1 ms
/// gave HTTP delivery (row 5) +6.5 % req/s and -7 % CPU per request but
/// ingest with no plugins (row 2) -15 % req/s, the closed loop there
/// waiting on the longer commit. Ending a 1 ms window as soon as the
/// runtime ran out of tasks (tokio's park hook) made the same trade, row
/// 5 +11 % and row 2 -11 % (ARCHITECTURE.md).
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(500);

/// A previous batch at least this large means concurrent load: the next
/// one waits [`COMMIT_DELAY`] for company.
const LOADED_BATCH: usize = 4;

/// Ingest operations waiting for the writer before new ones are shed.
const INGEST_QUEUE_CAPACITY: usize = 8192;

/// After a commit failed on a full disk, how often the writer tries to
/// give the WAL's space back (see [`DiskFull`]); the batches in between
/// fail at once, without touching the file.
const DISK_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// The writer's state after a commit failed because the disk is full.
///
/// The WAL is what fills the disk: it grows until the checkpointer copies
/// it into the database (at 64 MiB under load), and no commit can use
/// space it already holds until it is copied and written from its start
/// again. Space freed by the operator would go to the WAL again, taken by
/// the next commits, and the store would be full again with the copy
/// still undone (seen: 20 MiB freed, taken by 517 more webhooks within a
/// second, then every commit failing on). So until a checkpoint has
/// copied the WAL into the database and truncated it, nothing is written:
/// before each batch, at most every [`DISK_FULL_RETRY`], the writer tries
/// `wal_checkpoint(TRUNCATE)`, which needs room only for the database to
/// grow by the pages the WAL holds, and once it succeeds gives the WAL's
/// whole size back.
struct DiskFull {
    next_try: std::time::Instant,
}

impl DiskFull {
    fn new() -> Self {
        DiskFull {
            next_try: std::time::Instant::now(),
        }
    }

    /// Whether the WAL's space is back (the checkpoint succeeded, or
    /// failed for another reason than space, which the next commit will
    /// report if it matters). Tries at most every [`DISK_FULL_RETRY`].
    fn recovered(&mut self, conn: &Connection) -> bool {
        let now = std::time::Instant::now();
        if now < self.next_try {
            return false;
        }
        match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Err(e) if is_disk_full(&e) => {
                self.next_try = now + DISK_FULL_RETRY;
                false
            }
            Ok(busy) => {
                if busy != 0 {
                    // A reader (a backup, a long console query) kept the
                    // WAL from being truncated: write, and see.
                    tracing::debug!("the WAL could not be truncated after a full disk (busy)");
                }
                tracing::info!("the store can write again after a full disk");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint after a full disk failed");
                true
            }
        }
    }
}

/// Bounds the WAL while space is tight (`WalRequests::tight`), or lifts
/// the bounds. Tight: the writer's own automatic checkpoint comes at
/// [`TIGHT_WAL_BYTES`] of frames (a copy inside a commit, which the
/// checkpointer otherwise spares it: at tens of MB of WAL a second, the
/// checkpointer's passes 200 ms apart let the WAL grow 10 MB past its
/// mark), and the WAL file is cut back to that size whenever it starts
/// over. Otherwise: the backstop, and no cut.
fn cap_wal(conn: &Connection, tight: bool) -> rusqlite::Result<()> {
    let (pages, limit) = if tight {
        (TIGHT_WAL_BYTES / 4096, TIGHT_WAL_BYTES)
    } else {
        (i64::from(super::checkpointer::BACKSTOP_PAGES), -1)
    };
    conn.pragma_update(None, "wal_autocheckpoint", pages)?;
    conn.query_row(&format!("PRAGMA journal_size_limit = {limit}"), [], |_| {
        Ok(())
    })
}

/// SQLite's "database or disk is full".
fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// What the batches refused while the disk is full are told.
const DISK_FULL_MESSAGE: &str =
    "database or disk is full (nothing is written until the WAL's space is back)";

/// What the checkpointer asks of the writer before its next batch
/// (`checkpointer.rs`).
#[derive(Debug, Default)]
pub struct WalRequests {
    /// Checkpoint the commits made since the checkpointer's copy, so that
    /// the next batch writes the WAL from its start again.
    pub restart: AtomicBool,
    /// Space is tight on the store's file system: keep the WAL near
    /// [`TIGHT_WAL_BYTES`] (see `cap_wal`).
    pub tight: AtomicBool,
}

/// The WAL file's size after it starts over while space is tight.
pub const TIGHT_WAL_BYTES: i64 = 4 << 20;

/// One operation's body and reply, type-erased for the queue.
trait Operation: Send {
    /// Runs the body in the open transaction, keeping its result; says
    /// whether it succeeded. May be called again after a rollback.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Replaces the kept result with `error`: the operation reported
    /// success but its writes were undone under it.
    fn fail(&mut self, error: StoreError);
    /// Sends the kept result, or the commit's failure.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Typed<F, T> {
    body: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Operation for Typed<F, T>
where
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let result = (self.body)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn fail(&mut self, error: StoreError) {
        self.result = Some(Err(error));
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let out = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Internal("the operation did not run".into())),
            (Err(e), _) => Err(StoreError::Database(format!("commit failed: {e}"))),
        };
        let _ = self.reply.send(out);
    }
}

/// One operation for the writer.
struct Op {
    run: Box<dyn Operation>,
    ingest: bool,
}

/// Whether a caller may be shed under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A new webhook: shed with `Overloaded` when the queue is long.
    Ingest,
    /// Everything else: always queued.
    Always,
}

/// What the writer reports about itself, for `/healthz`.
#[derive(Debug, Default)]
struct WriterState {
    /// False once the thread has exited.
    alive: AtomicBool,
    /// The last commit failed with this error (cleared by a good commit).
    failing: Mutex<Option<String>>,
    /// Operations that panicked (and were rolled back).
    panics: AtomicU64,
    /// Batches committed: which operations shared a transaction (tests).
    commits: AtomicU64,
}

/// A handle to the writer thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    ingest_waiting: Arc<AtomicUsize>,
    state: Arc<WriterState>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op").field("ingest", &self.ingest).finish()
    }
}

impl Writer {
    /// Starts the writer thread on `conn`. The thread keeps `hold` (the
    /// data_dir lock) until it has finished its last commit.
    pub fn start(
        conn: Connection,
        requests: Arc<WalRequests>,
        hold: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Op>();
        let ingest_waiting = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(WriterState::default());
        state.alive.store(true, Ordering::Release);
        let (waiting, thread_state) = (ingest_waiting.clone(), state.clone());
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || {
                let mut conn = conn;
                run(&mut conn, rx, &requests, &waiting, &thread_state);
                thread_state.alive.store(false, Ordering::Release);
                drop(conn);
                drop(hold);
            })
            .map_err(|e| StoreError::Open {
                path: "writer thread".into(),
                message: e.to_string(),
            })?;
        Ok(Writer {
            tx,
            ingest_waiting,
            state,
        })
    }

    /// Queues `f` and waits for its committed result. `f` may run twice
    /// (the first run rolled back) when another operation of its batch
    /// fails: it must not consume what it captures.
    pub async fn run<T: Send + 'static>(
        &self,
        priority: Priority,
        f: impl FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let ingest = priority == Priority::Ingest;
        let op = Op {
            ingest,
            run: Box::new(Typed {
                body: f,
                result: None,
                reply: reply_tx,
            }),
        };
        if ingest {
            // Count first, so the writer never sees an op it must
            // uncount before it was counted.
            if self.ingest_waiting.fetch_add(1, Ordering::AcqRel) >= INGEST_QUEUE_CAPACITY {
                self.ingest_waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(StoreError::Overloaded);
            }
        }
        if self.tx.send(op).is_err() {
            if ingest {
                self.ingest_waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(StoreError::Closed);
        }
        // The sender is dropped without a reply only when the operation
        // panicked (it was rolled back) or the writer stopped.
        reply_rx.await.map_err(|_| {
            if self.state.alive.load(Ordering::Acquire) {
                StoreError::Internal("the operation failed unexpectedly and was rolled back".into())
            } else {
                StoreError::Closed
            }
        })?
    }

    /// `Err` with the reason when the writer cannot take writes.
    pub fn health(&self) -> Result<(), String> {
        if !self.state.alive.load(Ordering::Acquire) {
            return Err("the store's writer has stopped".into());
        }
        if let Some(e) = self
            .state
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(format!("the store's last commit failed: {e}"));
        }
        Ok(())
    }

    /// Operations that panicked so far.
    pub fn panics(&self) -> u64 {
        self.state.panics.load(Ordering::Relaxed)
    }
}

/// The writer loop: batch, apply, commit, reply.
fn run(
    conn: &mut Connection,
    rx: mpsc::Receiver<Op>,
    requests: &WalRequests,
    ingest_waiting: &AtomicUsize,
    state: &WriterState,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    // Size of the previous batch: a sign of concurrent load.
    let mut last = 0usize;
    let mut disk_full: Option<DiskFull> = None;
    // Whether the WAL is bounded for a tight disk (`cap_wal`).
    let mut capped = false;
    // Every batch fails alike while the store cannot commit (a full disk,
    // a broken file): one line per window, the rest at debug.
    static COMMIT_FAILED: Flood = Flood::new();
    while let Ok(first) = rx.recv() {
        let tight = requests.tight.load(Ordering::Acquire);
        if tight != capped {
            match cap_wal(conn, tight) {
                Ok(()) => capped = tight,
                Err(e) => tracing::debug!(error = %e, "cannot change the WAL's bounds"),
            }
        }
        if requests.restart.swap(false, Ordering::AcqRel) {
            // The checkpointer has copied most of a large WAL: copy what was
            // committed since (a few commits), so that the batch below
            // begins with every frame in the database file and SQLite
            // writes the WAL from its start again (checkpointer.rs).
            // Operations arriving meanwhile join the batch.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "the writer's WAL checkpoint failed");
            }
        }
        batch.push(first);
        take_waiting(&rx, &mut batch);
        taken_from_queue(ingest_waiting, &batch);
        if let Some(full) = &mut disk_full {
            if !full.recovered(conn) {
                log_limited!(
                    COMMIT_FAILED,
                    "",
                    error,
                    operations = batch.len(),
                    error = DISK_FULL_MESSAGE,
                    "store commit failed; its operations were not stored"
                );
                for op in batch.drain(..) {
                    op.run.finish(Err(DISK_FULL_MESSAGE.to_owned()));
                }
                last = 0;
                continue;
            }
            disk_full = None;
        }
        // Under load (the last batch was not small), the transaction stays
        // open for COMMIT_DELAY, as PostgreSQL's commit_delay: operations
        // that arrive meanwhile join it, so one commit serves more of them,
        // and its fsync and the index pages that every webhook dirties
        // (each b-tree's last leaf) are written once for all. The batch's
        // operations are applied first and the writer sleeps out what is
        // left of the window, rather than sleeping first and applying
        // everything after with every caller waiting: under a closed loop
        // the machine idled through the sleep. Never when idle: a lone
        // webhook commits at once.
        let window = (last >= LOADED_BATCH).then(|| Window {
            rx: &rx,
            ends: std::time::Instant::now() + COMMIT_DELAY,
            ingest_waiting,
        });
        let outcome = match apply_fast(conn, &mut batch, window) {
            Fast::Committed => Ok(()),
            Fast::Failed(e) => Err(e),
            Fast::OperationFailed => apply_isolated(conn, &mut batch, state),
        };
        last = batch.len();
        let committed = match outcome {
            Ok(()) => {
                *state.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                state.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if is_disk_full(&e) {
                    disk_full = Some(DiskFull::new());
                }
                log_limited!(COMMIT_FAILED, "", error, operations = batch.len(), error = %e, "store commit failed; its operations were not stored");
                *state.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Err(e.to_string())
            }
        };
        for op in batch.drain(..) {
            op.run.finish(committed.clone());
        }
    }
}

/// Moves the operations already waiting in `rx` into `batch`, up to
/// [`MAX_BATCH`], without blocking.
fn take_waiting(rx: &mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// `ops` left the queue for a batch: their ingest no longer counts
/// against the shedding limit ([`INGEST_QUEUE_CAPACITY`]).
fn taken_from_queue(ingest_waiting: &AtomicUsize, ops: &[Op]) {
    let ingest = ops.iter().filter(|op| op.ingest).count();
    ingest_waiting.fetch_sub(ingest, Ordering::AcqRel);
}

/// A batch's open window under load: until `ends`, operations arriving on
/// `rx` join the open transaction.
struct Window<'a> {
    rx: &'a mpsc::Receiver<Op>,
    ends: std::time::Instant,
    ingest_waiting: &'a AtomicUsize,
}

impl Window<'_> {
    /// Moves the operations that arrived into `batch` (no longer counted as
    /// waiting ingest); when none has, sleeps out the window first. False
    /// when the window is over or `batch` is full: the batch commits.
    ///
    /// Sleeping rather than blocking on the channel: a writer blocked on it
    /// is woken by every operation sent (a futex wake and a context switch
    /// each), which cost more CPU per webhook than the window saved.
    fn take_more(&self, batch: &mut Vec<Op>) -> bool {
        if batch.len() >= MAX_BATCH {
            return false;
        }
        let Some(left) = self.ends.checked_duration_since(std::time::Instant::now()) else {
            return false;
        };
        let from = batch.len();
        take_waiting(self.rx, batch);
        if batch.len() == from {
            #[expect(
                clippy::disallowed_methods,
                reason = "the writer is its own OS thread, not a runtime worker"
            )]
            std::thread::sleep(left);
            take_waiting(self.rx, batch);
        }
        taken_from_queue(self.ingest_waiting, &batch[from..]);
        true
    }
}

/// How the savepoint-free attempt at a batch ended.
enum Fast {
    /// Every operation succeeded and the batch is committed.
    Committed,
    /// An operation failed or panicked; the transaction was rolled back.
    OperationFailed,
    /// The transaction itself failed (begin or commit).
    Failed(rusqlite::Error),
}

/// Applies `batch` in one transaction without savepoints: the common case.
/// With a `window`, the operations that arrive before it ends are applied
/// in the same transaction as they come (added to `batch`).
fn apply_fast(conn: &mut Connection, batch: &mut Vec<Op>, window: Option<Window<'_>>) -> Fast {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Fast::Failed(e),
    };
    let mut applied = 0;
    loop {
        for op in &mut batch[applied..] {
            // A panic here is caught and the batch retried with savepoints,
            // where the panicking operation is isolated (and dropped).
            match std::panic::catch_unwind(AssertUnwindSafe(|| op.run.apply(&tx))) {
                // Succeeded, and its transaction is still open. Were it gone
                // (SQLite rolls back the whole transaction on some errors,
                // and an operation might swallow one), the operations after
                // it would each commit on their own while the batch's commit
                // fails: callers told "failed" about stored writes.
                Ok(true) if !tx.is_autocommit() => {}
                // `tx` rolls back on drop; the batch so far is applied
                // again, isolated, and commits without waiting for more.
                Ok(_) | Err(_) => return Fast::OperationFailed,
            }
        }
        applied = batch.len();
        if !window.as_ref().is_some_and(|w| w.take_more(batch)) {
            break;
        }
    }
    match tx.commit() {
        Ok(()) => Fast::Committed,
        Err(e) => Fast::Failed(e),
    }
}

/// Applies `batch` again in one transaction, one savepoint per operation,
/// after [`apply_fast`] saw one fail: each failure is rolled back alone.
///
/// Some errors (a full disk, an I/O error) make SQLite roll back the whole
/// transaction, not just the statement. The operations before the failed
/// one are then undone too, and the next `SAVEPOINT` would begin a new
/// transaction that its `RELEASE` commits on its own: writes committed
/// while their callers hear "failed" (a webhook answered 5xx but stored,
/// then stored again on the provider's retry). So when the transaction is
/// gone, the failed operation is set aside with its error and the others
/// run again in a new transaction; each pass sets at least one aside.
fn apply_isolated(
    conn: &mut Connection,
    batch: &mut Vec<Op>,
    state: &WriterState,
) -> rusqlite::Result<()> {
    let mut set_aside = Vec::new();
    loop {
        let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                batch.append(&mut set_aside);
                return Err(e);
            }
        };
        let mut kept = Vec::with_capacity(batch.len());
        let mut rolled_back = false;
        let mut ops = std::mem::take(batch).into_iter();
        // On an error of the transaction itself, every operation goes back
        // into `batch`, so that each caller hears that error (not a reply
        // dropped unsent).
        let give_back = |batch: &mut Vec<Op>, kept, op, ops, set_aside: &mut Vec<Op>| {
            batch.extend(kept);
            batch.extend(op);
            batch.extend(ops);
            batch.append(set_aside);
        };
        while let Some(mut op) = ops.next() {
            let sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    give_back(batch, kept, Some(op), ops, &mut set_aside);
                    return Err(e);
                }
            };
            // A panicking operation must not take the writer (and with it
            // every later webhook) down: its savepoint is rolled back and
            // its caller hears an internal error (its reply is dropped
            // unsent).
            let failed = match std::panic::catch_unwind(AssertUnwindSafe(|| op.run.apply(&sp))) {
                Ok(true) if !sp.is_autocommit() => {
                    if let Err(e) = sp.commit() {
                        give_back(batch, kept, Some(op), ops, &mut set_aside);
                        return Err(e);
                    }
                    kept.push(op);
                    continue;
                }
                Ok(true) => {
                    // It says it succeeded, but SQLite rolled back the
                    // transaction under it: its writes are gone.
                    drop(sp);
                    op.run.fail(StoreError::Database(
                        "the operation's transaction was rolled back under it".into(),
                    ));
                    Some(op)
                }
                Ok(false) => {
                    // Dropping the savepoint rolls it back: a failed
                    // operation leaves no partial writes.
                    drop(sp);
                    Some(op)
                }
                Err(panic) => {
                    drop(sp);
                    state.panics.fetch_add(1, Ordering::Relaxed);
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = what, "a store operation panicked; rolled back");
                    None
                }
            };
            if tx.is_autocommit() {
                tracing::warn!(
                    "a store operation's error rolled back its whole batch; running the rest again"
                );
                set_aside.extend(failed);
                kept.extend(ops);
                rolled_back = true;
                break;
            }
            kept.extend(failed);
        }
        *batch = kept;
        if rolled_back {
            // Nothing to roll back: SQLite did.
            drop(tx);
            continue;
        }
        let committed = tx.commit();
        batch.extend(set_aside);
        return committed;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Waits until `cond` holds, failing the test after `within`.
    async fn until(within: Duration, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(Instant::now() < deadline, "{what} within {within:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts a writer on a fresh in-memory database with table `t`, held
    /// inside an operation until the returned sender is used.
    async fn held_writer() -> (
        Writer,
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT NOT NULL)")
            .unwrap();
        let writer = Writer::start(conn, Arc::new(WalRequests::default()), Arc::new(())).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(Priority::Always, move |_| {
                        let _ = started_tx.send(());
                        let _ = go_rx.recv_timeout(Duration::from_secs(30));
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the writer takes the blocking operation");
        (writer, go_tx, blocker)
    }

    /// Runs an operation that, while it is applied, queues a second one
    /// (which fails when `second_fails`); the commit counts each saw (equal:
    /// they shared a transaction) and the second's result.
    async fn second_queued_while_applying(
        writer: &Writer,
        second_fails: bool,
    ) -> (u64, u64, Result<(), StoreError>) {
        let (b_reply, b_replied) = oneshot::channel();
        let seen_b = Arc::new(AtomicU64::new(u64::MAX));
        let b = Op {
            ingest: false,
            run: Box::new(Typed {
                body: {
                    let (state, seen_b) = (writer.state.clone(), seen_b.clone());
                    move |_: &Connection| {
                        seen_b.store(state.commits.load(Ordering::Relaxed), Ordering::Relaxed);
                        if second_fails {
                            return Err(StoreError::Internal("the second fails".into()));
                        }
                        Ok(())
                    }
                },
                result: None,
                reply: b_reply,
            }),
        };
        let (queue, state) = (writer.tx.clone(), writer.state.clone());
        let mut b = Some(b);
        let a = writer.run(Priority::Always, move |_| {
            if let Some(b) = b.take() {
                queue.send(b).expect("the writer is running");
            }
            Ok(state.commits.load(Ordering::Relaxed))
        });
        let seen_a = tokio::time::timeout(Duration::from_secs(10), a)
            .await
            .expect("the first is committed within 10 s")
            .unwrap();
        let b = tokio::time::timeout(Duration::from_secs(10), b_replied)
            .await
            .expect("the second is answered within 10 s")
            .unwrap();
        (seen_a, seen_b.load(Ordering::Relaxed), b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_load_an_operation_queued_while_a_batch_is_applied_joins_its_commit() {
        // Idle, a batch commits as soon as it is applied: an operation
        // queued meanwhile gets a commit of its own.
        let conn = Connection::open_in_memory().unwrap();
        let writer = Writer::start(conn, Arc::new(WalRequests::default()), Arc::new(())).unwrap();
        let (a, b, _) = second_queued_while_applying(&writer, false).await;
        assert_eq!(b, a + 1, "idle: the second is committed after the first");

        // Under load (the last batch held LOADED_BATCH operations), the
        // transaction stays open for COMMIT_DELAY after its operations are
        // applied, and one queued meanwhile joins it. A writer thread
        // preempted for the whole window would leave it to the next batch,
        // so a few tries; a writer that never keeps the window open fails
        // every one.
        let mut tries = Vec::new();
        for second_fails in [
            false, false, false, false, false, true, true, true, true, true,
        ] {
            if tries.iter().any(|(a, b, f)| a == b && *f == second_fails) {
                continue;
            }
            let (writer, go, blocker) = held_writer().await;
            let loaded: Vec<_> = (0..LOADED_BATCH)
                .map(|_| {
                    let writer = writer.clone();
                    tokio::spawn(async move { writer.run(Priority::Ingest, |_| Ok(())).await })
                })
                .collect();
            until(
                Duration::from_secs(10),
                "the loaded batch is queued",
                || writer.ingest_waiting.load(Ordering::Acquire) == LOADED_BATCH,
            )
            .await;
            go.send(()).unwrap();
            blocker.await.unwrap();
            for op in loaded {
                op.await.unwrap().unwrap();
            }
            // The first's result was checked Ok in the helper: a second
            // that fails in the window is rolled back alone.
            let (a, b, second) = second_queued_while_applying(&writer, second_fails).await;
            assert_eq!(second.is_err(), second_fails, "{second:?}");
            tries.push((a, b, second_fails));
        }
        for second_fails in [false, true] {
            assert!(
                tries.iter().any(|(a, b, f)| a == b && *f == second_fails),
                "under load the second (failing: {second_fails}) never joined the first's commit: {tries:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_whose_transaction_was_rolled_back_under_it_fails_alone() {
        // An operation that reports success after SQLite rolled back the
        // whole transaction (here it does so itself; a full disk or an I/O
        // error can): without a check, the operations after it run in
        // autocommit mode, each committed on its own, and then the batch's
        // commit fails, so their callers hear "failed" about stored writes.
        let (writer, go, blocker) = held_writer().await;
        let rogue = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(Priority::Ingest, |tx| {
                        tx.execute_batch("INSERT INTO t VALUES ('rogue'); ROLLBACK")?;
                        Ok(())
                    })
                    .await
            }
        });
        until(Duration::from_secs(10), "the first is queued", || {
            writer.ingest_waiting.load(Ordering::Acquire) == 1
        })
        .await;
        let innocent = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(Priority::Ingest, |tx| {
                        tx.execute("INSERT INTO t VALUES ('innocent')", [])?;
                        Ok(())
                    })
                    .await
            }
        });
        until(Duration::from_secs(10), "both are queued", || {
            writer.ingest_waiting.load(Ordering::Acquire) == 2
        })
        .await;
        go.send(()).unwrap();
        let (rogue, innocent) = tokio::time::timeout(Duration::from_secs(30), async {
            blocker.await.unwrap();
            (rogue.await.unwrap(), innocent.await.unwrap())
        })
        .await
        .expect("both answered within 30 s");
        assert!(
            matches!(rogue, Err(StoreError::Database(_))),
            "its writes are gone: it failed ({rogue:?})"
        );
        assert!(
            innocent.is_ok(),
            "the other operation is stored: {innocent:?}"
        );
        let rows: Vec<String> = writer
            .run(Priority::Always, |tx| {
                Ok(tx
                    .prepare("SELECT v FROM t ORDER BY v")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            ["innocent"],
            "what the callers were told is what is stored"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_past_the_queue_is_shed_at_once_and_everything_else_waits() {
        let (writer, go_tx, blocker) = held_writer().await;
        // A full queue of new webhooks...
        let queued: Vec<_> = (0..INGEST_QUEUE_CAPACITY)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.run(Priority::Ingest, move |_| Ok(i)).await })
            })
            .collect();
        until(Duration::from_secs(10), "the queue fills", || {
            writer.ingest_waiting.load(Ordering::Acquire) == INGEST_QUEUE_CAPACITY
        })
        .await;
        // ...sheds the next one at once, without waiting for the writer.
        let shed = tokio::time::timeout(
            Duration::from_secs(5),
            writer.run(Priority::Ingest, |_| Ok(())),
        )
        .await
        .expect("shed at once, not queued");
        assert!(matches!(shed, Err(StoreError::Overloaded)), "{shed:?}");
        // Everything else queues however long the queue is (a delivery's
        // outcome must not be lost to load).
        let other = tokio::spawn({
            let writer = writer.clone();
            async move { writer.run(Priority::Always, |_| Ok(7)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!other.is_finished(), "waits behind the held writer");
        go_tx.send(()).unwrap();
        let all = async {
            blocker.await.unwrap();
            for (i, q) in queued.into_iter().enumerate() {
                assert_eq!(q.await.unwrap().unwrap(), i);
            }
            assert_eq!(other.await.unwrap().unwrap(), 7);
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("the queue drains within 30 s");
        // Drained: new webhooks are taken again.
        assert_eq!(writer.ingest_waiting.load(Ordering::Acquire), 0);
        assert_eq!(
            writer.run(Priority::Ingest, |_| Ok(1)).await.unwrap(),
            1,
            "taken again once drained"
        );
    }
}
