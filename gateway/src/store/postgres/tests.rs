//! The conformance suite and the shared-engine cases against a real
//! PostgreSQL, named by [`URL_VAR`]. Each test gets a schema of its own
//! (dropped afterwards), so tests run in parallel on one database.
//!
//! Without the variable these tests cannot run: they say so once, on the
//! terminal, and pass; under `CI=true` they fail instead (CI starts a
//! database: see `.ci/run`).

use std::io::Write as _;
use std::sync::{Arc, Once};

use super::{BATCH_ROWS, PostgresStore};
use crate::store::conformance;
use crate::store::{Store, StoreError};

/// The environment variable naming the test database.
pub const URL_VAR: &str = "HOOKGATE_TEST_POSTGRES_URL";

/// The test database's URL, or `None` (said once) when there is none.
pub fn test_url() -> Option<String> {
    static SAID: Once = Once::new();
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL tests: set {URL_VAR} (see .ci/run)"
            );
            SAID.call_once(|| {
                // Straight to the terminal: the test harness captures
                // `eprintln!` of passing tests, and this must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nNOTE: the PostgreSQL store tests did not run. To run them, point {URL_VAR} \
                     at a database they may create schemas in, e.g.\n  \
                     {URL_VAR}=postgres://postgres@127.0.0.1:5432/hookgate_test cargo test --workspace\n"
                );
            });
            None
        }
    }
}

/// Drops its test schema.
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime: do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A plain connection to the test database, beside the stores: what
/// another gateway's transaction (or a crash's leftovers) looks like.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A store on a fresh schema with a pool of `size` connections.
async fn pooled(size: usize) -> Option<(Arc<PostgresStore>, SchemaGuard)> {
    let url = test_url()?;
    let guard = SchemaGuard {
        url,
        schema: schema(),
    };
    let store = PostgresStore::open_in(&guard.url, size, Some(&guard.schema))
        .await
        .unwrap();
    Some((Arc::new(store), guard))
}

/// A connection that holds `events` locked (in an open transaction), so
/// that every insert waits; `ROLLBACK` on it lets them go.
async fn lock_events(guard: &SchemaGuard) -> tokio_postgres::Client {
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL search_path = {}; LOCK TABLE events IN EXCLUSIVE MODE",
            guard.schema
        ))
        .await
        .unwrap();
    client
}

/// A fresh schema name.
fn schema() -> String {
    format!("hgtest_{}", uuid::Uuid::new_v4().simple())
}

async fn open(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
    PostgresStore::open_in(url, 8, Some(schema)).await
}

/// A store on a fresh schema, from inside a (multi-thread) tokio test.
fn make() -> Option<(PostgresStore, SchemaGuard)> {
    let url = test_url()?;
    let schema = schema();
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(open(&url, &schema))
    })
    .unwrap();
    Some((store, SchemaGuard { url, schema }))
}

conformance::suite!(make);

/// Two stores (two gateways) on one fresh schema.
async fn two() -> Option<(Arc<dyn Store>, Arc<dyn Store>, SchemaGuard)> {
    let url = test_url()?;
    let schema = schema();
    let a = open(&url, &schema).await.unwrap();
    let b = open(&url, &schema).await.unwrap();
    Some((Arc::new(a), Arc::new(b), SchemaGuard { url, schema }))
}

macro_rules! shared {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((a, b, _guard)) = two().await else { return };
                conformance::$case(a, b).await;
            }
        )*
    };
}

shared!(
    a_crashed_gateways_leases_run_out_and_another_reclaims,
    dedup_holds_across_gateways,
    concurrent_claims_never_overlap,
    an_event_finished_by_two_gateways_at_once_is_finished,
    subscription_state_is_shared,
    due_work_wakes_the_other_gateway,
    deliveries_left_to_a_held_destination_wake_no_gateway,
    a_replay_through_one_gateway_is_sent_by_the_other,
);

/// A paced receiver's slots are one schedule for every gateway: slots
/// reserved at once from two stores are all `interval` apart, one that
/// would be too far is refused with when to ask again and takes nothing,
/// and another receiver has a schedule of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_reserve_a_paced_receivers_slots_from_one_schedule() {
    use std::time::Duration;
    let Some((a, b, _guard)) = two().await else {
        return;
    };
    const INTERVAL: Duration = Duration::from_secs(10);
    const MAX_WAIT: Duration = Duration::from_secs(75);
    let reserve = |store: &Arc<dyn Store>, key: &str| {
        let (store, key) = (store.clone(), key.to_owned());
        tokio::spawn(async move {
            store
                .reserve_slot(key, INTERVAL, MAX_WAIT)
                .await
                .unwrap()
                .expect("PostgreSQL paces for every gateway")
        })
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| reserve(if i % 2 == 0 { &a } else { &b }, "teams:k"))
        .collect();
    let mut waits = Vec::new();
    for t in tasks {
        waits.push(t.await.unwrap().expect("within the longest wait"));
    }
    waits.sort();
    // The statements ran close together (each reads the clock when it
    // starts, maybe before one it waited for; 4 s leaves room for a busy
    // machine, well under an interval): slot n is about n intervals from
    // when it was asked for.
    for (n, w) in waits.iter().enumerate() {
        let slot = INTERVAL * n as u32;
        assert!(
            w.abs_diff(slot) < Duration::from_secs(4),
            "slot {n} at {w:?}: {waits:?}"
        );
    }
    let far = reserve(&b, "teams:k").await.unwrap();
    match far {
        Err(after) => assert!(
            after > Duration::from_secs(76) && after <= Duration::from_secs(80),
            "{after:?}"
        ),
        Ok(w) => panic!("a slot {w:?} away was taken"),
    }
    let other = reserve(&a, "teams:other").await.unwrap();
    assert_eq!(other, Ok(Duration::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_store_leaves_other_gateways_claims_alone() {
    let Some(url) = test_url() else { return };
    let schema = schema();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let a: Arc<dyn Store> = Arc::new(open(&url, &schema).await.unwrap());
    conformance::opening_a_store_leaves_other_gateways_claims_alone(a, || async {
        Arc::new(open(&url, &schema).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

/// While one gateway prunes (holds the prune lock), another's prune does
/// nothing; afterwards it prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_prunes_at_a_time() {
    let Some((a, _b, guard)) = two().await else {
        return;
    };
    conformance::insert_one(&*a, "evt_1", None, &[]).await;
    let keep_nothing = crate::store::Retention {
        delivered: std::time::Duration::ZERO,
        dead: std::time::Duration::ZERO,
    };
    // Another gateway's prune in progress: its transaction holds the lock.
    let mut client = raw(&guard.url).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {}; \
         SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':hookgate-prune'))",
        guard.schema
    ))
    .await
    .unwrap();
    // `received_at` is in the past by now (equal ms would not be "before").
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(a.prune(keep_nothing).await.unwrap(), 0, "left to the other");
    tx.rollback().await.unwrap();
    assert_eq!(a.prune(keep_nothing).await.unwrap(), 1);
}

/// A database migrated by a newer hookgate is refused, and opening twice
/// (two gateways starting) migrates once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_migrating_again_is_a_no_op() {
    let Some((_a, _b, guard)) = two().await else {
        return;
    };
    let client = raw(&guard.url).await;
    let versions: i64 = client
        .query_one(
            &format!("SELECT COUNT(*) FROM {}.hookgate_schema", guard.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(super::schema::VERSION));
    client
        .batch_execute(&format!(
            "INSERT INTO {}.hookgate_schema (version) VALUES ({})",
            guard.schema,
            super::schema::VERSION + 1
        ))
        .await
        .unwrap();
    let err = open(&guard.url, &guard.schema)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer"), "{err}");
}

/// An insert that waited on a lock (here a subscription's row, held as a
/// re-enable or a delete holds it) times its claims' leases from after the
/// wait: another gateway's poller finds nothing to take. Timed from the
/// transaction's start, the 1 s lease had run out before the commit and
/// both gateways sent the delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_waited_on_a_lock_times_its_leases_from_after_the_wait() {
    use crate::plugin::Message;
    use crate::store::{ClaimNew, Fanout, InsertOptions, Inserted};
    use std::time::Duration;

    let Some((a, b, guard)) = two().await else {
        return;
    };
    a.create_subscription(conformance::subscription("wh_a", "t1", "g1", &["*"]))
        .await
        .unwrap();
    let mut client = raw(&guard.url).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {}; SELECT id FROM subscriptions WHERE id = 'wh_a' FOR UPDATE",
        guard.schema
    ))
    .await
    .unwrap();
    let mut e = conformance::event("evt_1", None, &[]);
    e.fanout.push(Fanout {
        tenant: Some("t1".into()),
        object_type: "Group".into(),
        object_id: "g1".into(),
        event_type: "Created".into(),
        envelope: Message::json(Some("Created"), &serde_json::json!({"x": 1})),
    });
    let opts = InsertOptions {
        dedup_window: Duration::from_secs(3600),
        claim: Some(ClaimNew {
            lease: Duration::from_secs(1),
            destinations: Vec::new(),
            subscribers: true,
            full: Vec::new(),
            held: Vec::new(),
        }),
    };
    let insert = tokio::spawn(async move { b.insert(e, opts).await });
    // Longer than the lease: the insert waits on the row meanwhile.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!insert.is_finished(), "the insert waits for the row lock");
    tx.rollback().await.unwrap();
    let inserted = tokio::time::timeout(Duration::from_secs(10), insert)
        .await
        .expect("the insert finishes once the lock is gone")
        .unwrap()
        .unwrap();
    let Inserted::New { claimed, .. } = inserted else {
        panic!("new: {inserted:?}")
    };
    assert_eq!(claimed.len(), 1, "claimed in the insert");
    let taken = a
        .claim_due(10, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    assert!(
        taken.is_empty(),
        "the other gateway took a delivery claimed a moment ago: {taken:?}"
    );
}

/// Prune removes every expired dedup key, not one batch of them per run
/// while no event is old enough to go: keys expire after the dedup window
/// (a day), events after their retention (a week).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_every_expired_dedup_key() {
    use crate::store::InsertOptions;
    use std::time::Duration;

    let Some((a, _b, guard)) = two().await else {
        return;
    };
    const N: usize = 1_200;
    for i in 0..N {
        // Pending (a destination nobody attempts): never pruned.
        let e = conformance::event(&format!("evt_{i:05}"), Some(&format!("src_{i}")), &["d"]);
        let opts = InsertOptions {
            dedup_window: Duration::from_millis(1),
            claim: None,
        };
        a.insert(e, opts).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        a.prune(conformance::KEEP_AN_HOUR).await.unwrap(),
        0,
        "no event is pruned"
    );
    let client = raw(&guard.url).await;
    let keys: i64 = client
        .query_one(&format!("SELECT COUNT(*) FROM {}.dedup", guard.schema), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0, "every expired key is gone");
}

/// A lease renewal does not queue behind ingest: with every connection of
/// the pool held by inserts waiting on a lock, a renewal still answers at
/// once. In the shared pool it waited 30 s and then failed, long enough for
/// the lease to run out and another gateway to send the delivery again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_does_not_wait_for_a_pool_that_ingest_holds() {
    use std::time::Duration;

    let Some((store, guard)) = pooled(2).await else {
        return;
    };
    conformance::insert_one(&*store, "evt_0", None, &["d"]).await;
    let held = store
        .claim_due(1, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    let locker = lock_events(&guard).await;
    // Two inserts wait on the lock, each holding one of the two
    // connections.
    let inserts: Vec<_> = (1..=2)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                conformance::insert_one(&*store, &format!("evt_{i}"), None, &["d"]).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(inserts.iter().all(|t| !t.is_finished()), "the inserts wait");
    let renewed = tokio::time::timeout(
        Duration::from_secs(5),
        store.renew(held[0].id, held[0].lease, Duration::from_secs(60)),
    )
    .await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    for t in inserts {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("the inserts finish once the lock is gone")
            .unwrap();
    }
    assert!(
        matches!(renewed, Ok(Ok(true))),
        "the renewal waited for ingest's pool: {renewed:?}"
    );
}

/// A new webhook waits at most `INGEST_WAIT` for a connection, then is shed
/// as overload (503 with `Retry-After`), instead of holding the provider's
/// request for the pool's 30 s.
#[tokio::test]
async fn a_new_webhook_is_shed_when_no_connection_frees_up() {
    use std::time::{Duration, Instant};

    let Some((store, guard)) = pooled(1).await else {
        return;
    };
    let locker = lock_events(&guard).await;
    // The pool's one connection waits on the lock.
    let first = {
        let store = store.clone();
        tokio::spawn(async move { conformance::insert_one(&*store, "evt_1", None, &["d"]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished(), "the first insert waits on the lock");
    let started = Instant::now();
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        store.insert(
            conformance::event("evt_2", None, &["d"]),
            conformance::opts(),
        ),
    )
    .await;
    let waited = started.elapsed();
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first insert finishes once the lock is gone")
        .unwrap();
    assert!(
        matches!(second, Ok(Err(StoreError::Overloaded))),
        "{second:?} after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "shed after {waited:?}");
}

/// What a crash right after a re-enable's (or a delete's) first batch
/// leaves, made by hand: the flag flipped (or the row gone), the note
/// written, the parked deliveries not yet settled. Any gateway's prune
/// finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_finishes_a_settlement_a_crash_left() {
    use crate::store::conformance::publish;
    use crate::store::{EventStatus, InsertOptions};
    use std::time::Duration;

    let Some((a, b, guard)) = two().await else {
        return;
    };
    conformance::disabled_subscriptions(&*a, &["wh_1", "wh_2"]).await;
    let opts = InsertOptions {
        dedup_window: Duration::ZERO,
        claim: None,
    };
    a.insert(publish("evt_1", "A"), opts).await.unwrap();
    assert_eq!(a.parked("wh_1".into(), 10).await.unwrap().len(), 1);
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!(
            "SET search_path = {}; \
             UPDATE subscriptions SET active = true WHERE id = 'wh_1'; \
             DELETE FROM subscriptions WHERE id = 'wh_2'; \
             INSERT INTO subscription_settlements VALUES ('wh_1'), ('wh_2');",
            guard.schema
        ))
        .await
        .unwrap();
    // The other gateway's prune: the note is the database's, not the
    // process's.
    b.prune(conformance::KEEP_AN_HOUR).await.unwrap();
    assert!(a.parked("wh_1".into(), 10).await.unwrap().is_empty());
    assert!(a.parked("wh_2".into(), 10).await.unwrap().is_empty());
    let due = a
        .claim_due(10, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].destination, "sub:wh_1");
    let dead = crate::store::conformance::delivery_to(&*a, "evt_1", "sub:wh_2").await;
    assert_eq!(dead.state, EventStatus::Dead);
    let notes: i64 = client
        .query_one("SELECT COUNT(*) FROM subscription_settlements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 0);
}

/// Parks `per` deliveries for each of `subscriptions` (ids `1..=per` for
/// the first, the next `per` for the second, …), all of one stored event
/// and message, and leaves `client`'s search path on the test's schema.
async fn park_deliveries(
    client: &tokio_postgres::Client,
    schema: &str,
    subscriptions: &[&str],
    per: i64,
) {
    let mut sql = format!(
        "SET search_path = {schema}; \
         INSERT INTO events (id, route, received_at, status) VALUES ('evt_1', 'r', 0, 'pending'); \
         INSERT INTO messages (id, event_id, idx, content_type, headers, body) \
             VALUES (1, 'evt_1', 0, 'application/json', '[]', '\\x7b7d');"
    );
    for (k, sub) in (0..).zip(subscriptions) {
        let (first, last) = (k * per + 1, (k + 1) * per);
        sql.push_str(&format!(
            " INSERT INTO deliveries (id, event_id, message_id, destination, state, next_attempt_at) \
                 SELECT i, 'evt_1', 1, 'sub:{sub}', 'parked', 0 FROM generate_series({first}, {last}) AS i;"
        ));
    }
    client.batch_execute(&sql).await.unwrap();
}

/// A re-enable and a delete whose settling fails after their change
/// committed report success (the change stands); prune finishes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_later_settling_fails_is_reported_done_and_prune_finishes_it() {
    let Some((store, guard)) = pooled(4).await else {
        return;
    };
    conformance::disabled_subscriptions(&*store, &["wh_1", "wh_2"]).await;
    // More parked deliveries than a batch for each, and a fault on every
    // one past the first batch of each subscription.
    let per = BATCH_ROWS + 40;
    let client = raw(&guard.url).await;
    park_deliveries(&client, &guard.schema, &["wh_1", "wh_2"], per).await;
    client
        .batch_execute(&format!(
            "CREATE FUNCTION settle_fault() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'test fault'; END $$; \
             CREATE TRIGGER settle_fault BEFORE UPDATE OF state ON deliveries FOR EACH ROW \
                 WHEN (OLD.id % {per} > {BATCH_ROWS} OR OLD.id % {per} = 0) \
                 EXECUTE FUNCTION settle_fault();",
        ))
        .await
        .unwrap();
    let enabled = conformance::set_active(&*store, "wh_1", true).await;
    assert!(enabled.active);
    assert!(
        store
            .delete_subscription("t".into(), "wh_2".into())
            .await
            .expect("the delete committed: it is reported done")
    );
    let left = || async {
        let r = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'parked'), \
                        (SELECT COUNT(*) FROM subscription_settlements)",
                &[],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    assert_eq!(left().await, (2 * (per - BATCH_ROWS), 2));
    client
        .batch_execute("DROP TRIGGER settle_fault ON deliveries")
        .await
        .unwrap();
    store.prune(conformance::KEEP_AN_HOUR).await.unwrap();
    assert_eq!(left().await, (0, 0));
    let states: Vec<(String, String, i64)> = client
        .query(
            "SELECT destination, state, COUNT(*) FROM deliveries \
             GROUP BY destination, state ORDER BY destination",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        states,
        [
            ("sub:wh_1".to_owned(), "pending".to_owned(), per),
            ("sub:wh_2".to_owned(), "dead".to_owned(), per)
        ]
    );
}

/// A settlement batch that fails once (a dropped connection, a lock held
/// a moment) is tried again within the re-enable: everything parked is
/// pending when the call returns, with no note left for prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_batch_that_fails_once_is_tried_again_within_the_change() {
    let Some((store, guard)) = pooled(4).await else {
        return;
    };
    conformance::disabled_subscriptions(&*store, &["wh_1"]).await;
    // More parked deliveries than a batch, and a fault the first time a
    // row past the first batch is settled: a sequence, because it is not
    // rolled back with the failed transaction.
    let per = BATCH_ROWS + 40;
    let client = raw(&guard.url).await;
    park_deliveries(&client, &guard.schema, &["wh_1"], per).await;
    client
        .batch_execute(&format!(
            "CREATE SEQUENCE settle_faults; \
             CREATE FUNCTION settle_fault() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN \
                     IF nextval('settle_faults') = 1 THEN RAISE EXCEPTION 'test fault'; END IF; \
                     RETURN NEW; \
                 END $$; \
             CREATE TRIGGER settle_fault BEFORE UPDATE OF state ON deliveries FOR EACH ROW \
                 WHEN (OLD.id > {BATCH_ROWS}) EXECUTE FUNCTION settle_fault();"
        ))
        .await
        .unwrap();
    let enabled = conformance::set_active(&*store, "wh_1", true).await;
    assert!(enabled.active);
    let r = client
        .query_one(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM subscription_settlements), \
                    (SELECT last_value FROM settle_faults)",
            &[],
        )
        .await
        .unwrap();
    let (pending, notes, faults) = (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2));
    assert!(
        faults > 1,
        "the fault fired and the batch ran again ({faults})"
    );
    assert_eq!((pending, notes), (per, 0), "settled within the re-enable");
}

/// A subscription column that does not decode is `Corrupt`, naming the
/// column, not read as a default (as in the SQLite engine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_stored_undecodable_is_reported_corrupt_not_read_with_defaults() {
    use crate::store::conformance::subscription;

    let Some((store, guard)) = pooled(2).await else {
        return;
    };
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!("SET search_path = {}", guard.schema))
        .await
        .unwrap();
    for (column, bad) in [
        ("context", "{"),
        ("headers", "not json"),
        ("properties", "[1,"),
        ("signature_scheme", "rot13"),
    ] {
        let id = format!("wh_{column}");
        store
            .create_subscription(subscription(&id, "t", "g", &["*"]))
            .await
            .unwrap();
        client
            .execute(
                &format!("UPDATE subscriptions SET {column} = $1 WHERE id = $2"),
                &[&bad, &id],
            )
            .await
            .unwrap();
        crate::store::conformance::assert_reported_corrupt(&*store, &id, column).await;
    }
}

/// Two gateways starting at once on an empty schema: the advisory lock
/// makes one migrate and the other wait and find nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_starting_at_once_migrate_once() {
    let Some(url) = test_url() else { return };
    let schema = schema();
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    // The schema itself first: `CREATE SCHEMA IF NOT EXISTS` can race in
    // the tests' own set-up, which production (one schema, made once)
    // does not have.
    let client = raw(&url).await;
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let (a, b) = tokio::join!(open(&url, &schema), open(&url, &schema));
    let (a, b) = (a.unwrap(), b.unwrap());
    let versions: Vec<i32> = client
        .query(
            &format!(
                "SELECT version FROM {}.hookgate_schema ORDER BY version",
                guard.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=super::schema::VERSION).collect::<Vec<_>>());
    conformance::insert_one(&a, "evt_1", None, &["d"]).await;
    assert!(b.get("evt_1".into()).await.unwrap().is_some());
}

/// Prune and a replay of dead letters near the end of their retention do
/// not deadlock: prune locks an event's deliveries before the event, as a
/// replay (or a record) does. Before, its `DELETE` locked the event first,
/// the replay held a delivery and wanted the event, and PostgreSQL aborted
/// one of them after `deadlock_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_and_a_replay_take_locks_in_the_same_order() {
    use crate::store::conformance::event;
    use crate::store::{AttemptRecord, InsertOptions, NextState, Retention};
    use std::time::Duration;

    let Some((a, b, guard)) = two().await else {
        return;
    };
    let opts = InsertOptions {
        dedup_window: Duration::ZERO,
        claim: None,
    };
    a.insert(event("evt_1", None, &["d"]), opts).await.unwrap();
    let due = a
        .claim_due(1, Duration::from_secs(60), Vec::new())
        .await
        .unwrap();
    a.record(AttemptRecord {
        delivery_id: due[0].id,
        event_id: due[0].event_id.clone(),
        lease: due[0].lease,
        attempted_at_ms: crate::clock::now_ms(),
        status: Some(500),
        latency_ms: 1,
        error: None,
        response_excerpt: None,
        next: NextState::Dead { reason: "x".into() },
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A replay's first half, by hand: the delivery locked and requeued.
    let mut client = raw(&guard.url).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {}; \
         UPDATE deliveries SET state = 'pending', lease_token = NULL WHERE id = {}",
        guard.schema, due[0].id
    ))
    .await
    .unwrap();
    // Prune (the other gateway's) meanwhile: it waits for the delivery.
    let keep_nothing = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    let prune = tokio::spawn(async move { b.prune(keep_nothing).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replay's second half: the event's status. With prune holding the
    // event this waited on it, in a cycle.
    let refreshed = tokio::time::timeout(
        Duration::from_secs(10),
        tx.batch_execute("UPDATE events SET status = 'pending' WHERE id = 'evt_1'"),
    )
    .await
    .expect("the replay is not stuck");
    assert!(refreshed.is_ok(), "the replay was aborted: {refreshed:?}");
    tx.commit().await.unwrap();
    let pruned = tokio::time::timeout(Duration::from_secs(10), prune)
        .await
        .expect("prune finishes")
        .unwrap();
    assert_eq!(pruned.unwrap(), 0, "the replayed event is kept");
    assert!(a.get("evt_1".into()).await.unwrap().is_some());
}

/// The environment variable naming the CA certificate of the test
/// database's TLS certificate, which names `localhost` only (see
/// `.ci/run`). Required under `CI=true`, like [`URL_VAR`].
pub const CA_VAR: &str = "HOOKGATE_TEST_POSTGRES_CA";

/// `sslmode` and `sslrootcert` mean what libpq makes them mean: encrypted
/// unless `disable`; the chain checked with `verify-ca`, the host name too
/// with `verify-full`; a certificate from another CA, or for another
/// name, refused by the modes that check it; `sslcert` and `sslkey` log
/// in a role that needs a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_sslrootcert_and_client_certificates_mean_what_they_mean_in_libpq() {
    let Some(url) = test_url() else { return };
    let ca = match std::env::var(CA_VAR) {
        Ok(ca) if !ca.is_empty() => ca,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL TLS test: set {CA_VAR} (see .ci/run)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: the PostgreSQL TLS test did not run: {CA_VAR} names no CA certificate\n"
            );
            return;
        }
    };
    let pg: tokio_postgres::Config = url.parse().unwrap();
    let (port, user, db) = (
        pg.get_ports()[0],
        pg.get_user().unwrap().to_owned(),
        pg.get_dbname().unwrap().to_owned(),
    );
    let ca_file = ca.clone();
    let ca = percent_encoding::utf8_percent_encode(&ca, percent_encoding::NON_ALPHANUMERIC);
    let at = |host: &str, query: &str| format!("postgres://{user}@{host}:{port}/{db}?{query}");
    let cases: &[(String, Result<bool, &str>)] = &[
        (
            at(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Ok(true),
        ),
        (
            at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            Ok(true),
        ),
        (at("127.0.0.1", "sslmode=require"), Ok(true)),
        // prefer: the server offers TLS, so it is used.
        (at("127.0.0.1", ""), Ok(true)),
        (at("127.0.0.1", "sslmode=disable"), Ok(false)),
        (
            at(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Err("not valid for name"),
        ),
        // The built-in roots do not include the test CA.
        (at("localhost", "sslmode=verify-full"), Err("UnknownIssuer")),
        (at("localhost", "sslrootcert=system"), Err("UnknownIssuer")),
    ];
    check_tls_cases(cases).await;

    // The role hookgate_cert logs in over TLS with its certificate only
    // (client.crt and client.key beside ca.crt; see .ci/run).
    let dir = std::path::Path::new(&ca_file).parent().unwrap();
    let file = |name: &str| {
        let path = dir.join(name).to_string_lossy().into_owned();
        percent_encoding::utf8_percent_encode(&path, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let as_cert = |query: &str| {
        format!(
            "postgres://hookgate_cert@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}{query}"
        )
    };
    let with_cert = as_cert(&format!(
        "&sslcert={}&sslkey={}",
        file("client.crt"),
        file("client.key")
    ));
    let guard = SchemaGuard {
        url: test_url().unwrap(),
        schema: schema(),
    };
    let store = PostgresStore::open_in(&with_cert, 1, Some(&guard.schema))
        .await
        .unwrap();
    let row = store
        .conn()
        .await
        .unwrap()
        .query_one(
            "SELECT current_user::text, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hookgate_cert");
    assert_eq!(row.get::<_, String>(1), "/CN=hookgate_cert");
    check_tls_cases(&[(
        as_cert(""),
        Err("connection requires a valid client certificate"),
    )])
    .await;
}

/// Opens a store at each URL: `Ok(encrypted)` when it must open (and
/// whether its connection is encrypted), `Err(says)` when it must fail
/// saying so.
async fn check_tls_cases(cases: &[(String, Result<bool, &str>)]) {
    for (url, expected) in cases {
        let guard = SchemaGuard {
            url: test_url().unwrap(),
            schema: schema(),
        };
        let opened = PostgresStore::open_in(url, 1, Some(&guard.schema)).await;
        match (opened, expected) {
            (Ok(store), Ok(encrypted)) => {
                let conn = store.conn().await.unwrap();
                let ssl: bool = conn
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(ssl, *encrypted, "{url}");
            }
            (Err(e), Err(says)) => {
                let e = e.to_string();
                assert!(e.contains(says), "{url}: {e}");
            }
            (Ok(_), Err(says)) => panic!("{url}: connected; expected {says:?}"),
            (Err(e), Ok(_)) => panic!("{url}: {e}"),
        }
    }
}

/// Records that arrive while others are being written go together in one
/// transaction, and a record the database refuses in such a batch fails
/// alone: the batch is written again one record at a time, the others are
/// written, and the refused one writes nothing and keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_written_in_batches_and_a_refused_one_fails_alone() {
    use crate::store::{AttemptRecord, NextState, Recorded};
    let Some((store, guard)) = pooled(8).await else {
        return;
    };
    const N: usize = 40;
    for i in 0..N {
        conformance::insert_one(&*store, &format!("evt_{i:02}"), None, &["a"]).await;
    }
    let due = store
        .claim_due(N, std::time::Duration::from_secs(600), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), N);
    // Which transaction wrote each attempt; a refusal for one response.
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!(
            "SET search_path = {}; \
             CREATE TABLE attempt_txns (delivery_id bigint, txid bigint); \
             CREATE FUNCTION attempt_txn() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN \
                     IF NEW.response = 'refuse me' THEN RAISE EXCEPTION 'test refusal'; END IF; \
                     INSERT INTO attempt_txns VALUES (NEW.delivery_id, txid_current()); \
                     RETURN NEW; \
                 END $$; \
             CREATE TRIGGER attempt_txn BEFORE INSERT ON attempts FOR EACH ROW \
                 EXECUTE FUNCTION attempt_txn();",
            guard.schema
        ))
        .await
        .unwrap();
    let record = |d: &crate::store::DueDelivery, response: &str| AttemptRecord {
        response_excerpt: Some(response.into()),
        ..conformance::attempt(d, 200, NextState::Delivered)
    };
    // Records `records` while every writer waits on a lock, so that what
    // comes meanwhile queues; the outcomes in order.
    let while_locked = async |records: Vec<AttemptRecord>| {
        let locker = raw(&guard.url).await;
        locker
            .batch_execute(&format!(
                "BEGIN; SET LOCAL search_path = {}; LOCK TABLE deliveries IN EXCLUSIVE MODE",
                guard.schema
            ))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for a in records {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move { store.record(a).await }));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        locker.batch_execute("ROLLBACK").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .await
        .expect("every record is answered")
    };

    let batched = N - 10;
    let outcomes = while_locked(due[..batched].iter().map(|d| record(d, "ok")).collect()).await;
    assert!(
        outcomes
            .into_iter()
            .all(|r| r.unwrap() == Recorded::Written)
    );
    let r = client
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT txid) FROM attempt_txns",
            &[],
        )
        .await
        .unwrap();
    let (attempts, txns) = (r.get::<_, i64>(0), r.get::<_, i64>(1));
    assert_eq!(attempts, batched as i64);
    assert!(
        txns < attempts / 2,
        "{attempts} attempts written in {txns} transactions: batched"
    );

    // Nine more and, among them, one the database refuses.
    let refused = &due[N - 5];
    let outcomes = while_locked(
        due[batched..]
            .iter()
            .map(|d| {
                record(
                    d,
                    if d.id == refused.id {
                        "refuse me"
                    } else {
                        "ok"
                    },
                )
            })
            .collect(),
    )
    .await;
    for (d, r) in due[batched..].iter().zip(outcomes) {
        if d.id == refused.id {
            match r {
                Err(StoreError::Database(why)) => assert!(why.contains("test refusal"), "{why}"),
                other => panic!("the refused record fails: {other:?}"),
            }
        } else {
            assert_eq!(r.unwrap(), Recorded::Written, "{}", d.event_id);
        }
    }
    let e = store.get(refused.event_id.clone()).await.unwrap().unwrap();
    assert_eq!(e.summary.status, crate::store::EventStatus::Pending);
    assert!(
        e.deliveries[0].attempts.is_empty(),
        "the refused one wrote nothing"
    );
    assert!(
        store
            .renew(
                refused.id,
                refused.lease,
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap(),
        "and keeps its lease"
    );
}

/// Inserts `events` with `opts` while every writer waits on a lock, so
/// that what comes meanwhile queues and goes in batches; the outcomes in
/// order.
async fn insert_while_locked(
    store: &Arc<PostgresStore>,
    guard: &SchemaGuard,
    events: Vec<crate::store::NewEvent>,
    opts: crate::store::InsertOptions,
) -> Vec<Result<crate::store::Inserted, StoreError>> {
    use std::time::Duration;
    let locker = lock_events(guard).await;
    let mut tasks = Vec::new();
    for e in events {
        let (store, opts) = (Arc::clone(store), opts.clone());
        tasks.push(tokio::spawn(async move { store.insert(e, opts).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
    .await
    .expect("every insert is answered")
}

/// Webhooks that arrive while others are being stored go together in one
/// transaction, and each is decided as it would be alone: new with its
/// deliveries claimed as asked (each claimed delivery carrying its own
/// message), a duplicate of a stored key or of a webhook earlier in the
/// same batch, its inbound request kept. One the database refuses fails
/// alone: the batch is stored again one webhook at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_stored_in_batches_each_decided_alone() {
    use crate::plugin::Message;
    use crate::store::{ClaimNew, InsertOptions, Inserted, NewMessage};
    use std::time::Duration;

    let Some((store, guard)) = pooled(8).await else {
        return;
    };
    conformance::insert_one(&*store, "evt_stored", Some("key_stored"), &["a"]).await;
    let opts = InsertOptions {
        dedup_window: Duration::from_secs(3600),
        claim: Some(ClaimNew {
            lease: Duration::from_secs(600),
            destinations: vec!["a".into()],
            subscribers: false,
            full: Vec::new(),
            held: Vec::new(),
        }),
    };
    // evt_00..evt_29: two messages each, the first to a (claimed) and b,
    // the second to a; every fifth keyed like the stored one, evt_07 and
    // evt_08 sharing a key.
    let event = |i: usize| {
        let mut e = conformance::event(&format!("evt_{i:02}"), None, &["a", "b"]);
        e.source_id = Some(match i {
            _ if i.is_multiple_of(5) => "key_stored".into(),
            7 | 8 => "key_shared".into(),
            _ => format!("key_{i}"),
        });
        e.messages.push(NewMessage {
            message: Message::json(Some("second"), &serde_json::json!({"n": i})),
            destinations: vec!["a".into()],
        });
        e.inbound = Some(crate::store::stats::InboundView {
            method: "POST".into(),
            path: format!("/hooks/r?i={i}"),
            headers: vec![("x-n".into(), i.to_string())],
        });
        e
    };
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!(
            "SET search_path = {}; \
             CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'test refusal'; END $$; \
             CREATE TRIGGER refuse_event BEFORE INSERT ON events FOR EACH ROW \
                 WHEN (NEW.id = 'evt_refused') EXECUTE FUNCTION refuse_event();",
            guard.schema
        ))
        .await
        .unwrap();

    let while_locked =
        async |events| insert_while_locked(&store, &guard, events, opts.clone()).await;

    let outcomes = while_locked((0..30).map(event).collect()).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let id = format!("evt_{i:02}");
        match (i, outcome.unwrap()) {
            (_, Inserted::Duplicate { existing_id }) if i.is_multiple_of(5) => {
                assert_eq!(existing_id, "evt_stored", "{id}")
            }
            (8, Inserted::Duplicate { existing_id }) => assert_eq!(existing_id, "evt_07"),
            (
                _,
                Inserted::New {
                    deliveries,
                    claimed,
                },
            ) if !i.is_multiple_of(5) && i != 8 => {
                assert_eq!(deliveries, 3, "{id}");
                assert_eq!(claimed.len(), 2, "{id}: both deliveries to a");
                assert!(claimed[0].id < claimed[1].id);
                assert_eq!(claimed[0].message.event_type.as_deref(), Some("e"));
                assert_eq!(claimed[1].message.event_type.as_deref(), Some("second"));
                for d in &claimed {
                    assert_eq!((&*d.event_id, &*d.destination, &*d.route), (&*id, "a", "r"));
                }
                let detail = store.get(id.clone()).await.unwrap().unwrap();
                assert_eq!(detail.messages.len(), 2, "{id}");
                let inbound = store.inbound(id.clone()).await.unwrap().unwrap();
                assert_eq!(inbound.path, format!("/hooks/r?i={i}"));
            }
            (_, other) => panic!("{id}: {other:?}"),
        }
    }
    let r = client
        .query_one(
            "SELECT COUNT(*), COUNT(DISTINCT xmin::text) FROM events WHERE id LIKE 'evt\\___'",
            &[],
        )
        .await
        .unwrap();
    let (stored, txns) = (r.get::<_, i64>(0), r.get::<_, i64>(1));
    assert_eq!(
        stored, 23,
        "30 less 6 duplicates of the stored key and 1 of evt_07"
    );
    assert!(
        txns < stored / 2,
        "{stored} events stored in {txns} transactions: batched"
    );
    // The unclaimed deliveries (to b, and evt_stored's) are due to anyone.
    let due = store
        .claim_due(100, Duration::from_secs(600), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 24);
    assert_eq!(due.iter().filter(|d| d.destination == "b").count(), 23);

    // One the database refuses, among others.
    let mut refused = conformance::event("evt_refused", Some("key_refused"), &["a"]);
    refused.inbound = None;
    let mut events: Vec<_> = (30..40).map(event).collect();
    events.insert(5, refused);
    let outcomes = while_locked(events).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if i == 5 {
            match outcome {
                Err(StoreError::Database(why)) => assert!(why.contains("test refusal"), "{why}"),
                other => panic!("the refused one fails: {other:?}"),
            }
        } else {
            assert!(matches!(
                outcome,
                Ok(Inserted::New { .. }) | Ok(Inserted::Duplicate { .. })
            ));
        }
    }
    assert!(store.get("evt_refused".into()).await.unwrap().is_none());
    // Its key was rolled back with it: the provider's retry is stored.
    conformance::insert_one(&*store, "evt_retry", Some("key_refused"), &["a"]).await;
}

/// Webhooks that fan out to subscriptions go in batches too, and each
/// reaches what it would reach alone: its tenant's matching, unexpired
/// subscriptions, a disabled one's delivery parked, the subscriber lanes
/// named full left due, the others claimed with the envelope as their
/// message; numbered after the named messages; an event that reaches
/// nothing is finished. A duplicate in the batch reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_are_stored_in_batches_each_reaching_its_subscriptions() {
    use crate::plugin::Message;
    use crate::store::{ClaimNew, EventStatus, Fanout, InsertOptions, Inserted, Subscription};
    use std::time::Duration;

    let Some((store, guard)) = pooled(8).await else {
        return;
    };
    let subscription = conformance::subscription;
    for s in [
        subscription("wh_a", "t1", "g1", &["*"]),
        subscription("wh_full", "t1", "g1", &["Created"]),
        subscription("wh_off", "t1", "g1", &["*"]),
        subscription("wh_other_type", "t1", "g1", &["Deleted"]),
        subscription("wh_other_tenant", "t2", "g1", &["*"]),
        subscription("wh_other_object", "t1", "g2", &["*"]),
        Subscription {
            validity_ms: 1,
            ..subscription("wh_expired", "t1", "g1", &["*"])
        },
    ] {
        store.create_subscription(s).await.unwrap();
    }
    store
        .update_subscription(
            "t1".into(),
            "wh_off".into(),
            crate::store::SubscriptionPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let opts = InsertOptions {
        dedup_window: Duration::from_secs(3600),
        claim: Some(ClaimNew {
            lease: Duration::from_secs(600),
            destinations: vec!["a".into()],
            subscribers: true,
            full: vec!["sub:wh_full".into()],
            held: Vec::new(),
        }),
    };
    // evt_00..evt_19: a named message to a on the even ones, then a
    // publish of Created to (t1, g1); evt_07 repeats evt_06's key;
    // evt_13 publishes to g3, which nobody subscribes to.
    let event = |i: usize| {
        let id = format!("evt_{i:02}");
        let dests: &[&str] = if i.is_multiple_of(2) { &["a"] } else { &[] };
        let mut e = conformance::event(&id, None, dests);
        e.source_id = Some(if i == 7 {
            "key_6".into()
        } else {
            format!("key_{i}")
        });
        if i % 2 == 1 {
            e.messages.clear();
        }
        e.fanout.push(Fanout {
            tenant: Some("t1".into()),
            object_type: "Group".into(),
            object_id: if i == 13 { "g3" } else { "g1" }.into(),
            event_type: "Created".into(),
            envelope: Message::json(Some("Created"), &serde_json::json!({"n": i})),
        });
        e
    };
    let outcomes = insert_while_locked(&store, &guard, (0..20).map(event).collect(), opts).await;
    let mut stored = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let id = format!("evt_{i:02}");
        let named = usize::from(i.is_multiple_of(2));
        match (i, outcome.unwrap()) {
            (7, Inserted::Duplicate { existing_id }) => assert_eq!(existing_id, "evt_06"),
            (
                13,
                Inserted::New {
                    deliveries,
                    claimed,
                },
            ) => {
                assert_eq!((deliveries, claimed.len()), (0, 0), "{id}");
                let detail = store.get(id.clone()).await.unwrap().unwrap();
                assert_eq!(detail.summary.status, EventStatus::Delivered, "{id}");
                assert_eq!(detail.summary.event_type.as_deref(), Some("Created"));
                stored += 1;
            }
            (
                _,
                Inserted::New {
                    deliveries,
                    claimed,
                },
            ) if i != 7 => {
                assert_eq!(
                    deliveries,
                    named + 3,
                    "{id}: wh_a, wh_full and wh_off (parked)"
                );
                let dests: Vec<&str> = claimed.iter().map(|d| &*d.destination).collect();
                let expected: &[&str] = if named == 1 {
                    &["a", "sub:wh_a"]
                } else {
                    &["sub:wh_a"]
                };
                assert_eq!(dests, expected, "{id}: the full lane is left due");
                let envelope = claimed.last().unwrap();
                assert_eq!(envelope.message.event_type.as_deref(), Some("Created"));
                assert_eq!(
                    envelope.message.body,
                    Message::json(None, &serde_json::json!({"n": i})).body
                );
                for d in &claimed {
                    assert_eq!(d.event_id, id);
                }
                let detail = store.get(id.clone()).await.unwrap().unwrap();
                let mut indexes: Vec<(u32, &str)> = detail
                    .deliveries
                    .iter()
                    .map(|d| (d.message_index, &*d.destination))
                    .collect();
                indexes.sort_unstable();
                let mut expected = vec![
                    (named as u32, "sub:wh_a"),
                    (named as u32, "sub:wh_full"),
                    (named as u32, "sub:wh_off"),
                ];
                if named == 1 {
                    expected.insert(0, (0, "a"));
                }
                assert_eq!(indexes, expected, "{id}: published after its named message");
                stored += 1;
            }
            (_, other) => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(stored, 19);
    let client = raw(&guard.url).await;
    let txns: i64 = client
        .query_one(
            &format!(
                "SELECT COUNT(DISTINCT xmin::text) FROM {}.events WHERE id LIKE 'evt\\___'",
                guard.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        txns < 10,
        "19 events stored in {txns} transactions: batched"
    );
    // The full lane's deliveries are due to a poll; the disabled one's
    // wait parked.
    let due = store
        .claim_due(100, Duration::from_secs(600), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 18, "one per event that reached wh_full");
    assert!(due.iter().all(|d| d.destination == "sub:wh_full"));
    assert_eq!(store.parked("wh_off".into(), 100).await.unwrap().len(), 18);
}

/// A batch holds the subscriptions its fan-outs reach under a share lock
/// until it commits: a re-enable issued meanwhile waits for it, then
/// requeues what the batch stored parked. Read without the lock, the
/// re-enable would commit first and the batch's parked deliveries would
/// wait for an enable that has already happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_enable_waits_for_a_batch_of_fan_outs_and_requeues_what_it_parked() {
    use std::time::Duration;

    let Some((store, guard)) = pooled(8).await else {
        return;
    };
    let mut s = conformance::subscription("wh_1", "t", "g", &["*"]);
    s.active = false;
    store.create_subscription(s).await.unwrap();
    let locker = lock_events(&guard).await;
    let mut inserts = Vec::new();
    for i in 0..10 {
        let store = Arc::clone(&store);
        inserts.push(tokio::spawn(async move {
            store
                .insert(
                    conformance::publish(&format!("evt_{i}"), "A"),
                    conformance::opts(),
                )
                .await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The batches have read wh_1 (disabled) and wait on the events lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enabler = Arc::clone(&store);
    let enable = tokio::spawn(async move {
        conformance::set_active(&*enabler, "wh_1", true).await;
    });
    // The re-enable has begun before the batches can commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        for t in inserts {
            assert!(matches!(
                t.await.unwrap().unwrap(),
                crate::store::Inserted::New { deliveries: 1, .. }
            ));
        }
        enable.await.unwrap();
    })
    .await
    .expect("the inserts and the re-enable finish");
    assert!(
        store.parked("wh_1".into(), 100).await.unwrap().is_empty(),
        "nothing parked under an enabled subscription"
    );
    let due = store
        .claim_due(100, Duration::from_secs(600), Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 10, "every delivery is due");
}

/// No foreign key cascades (schema version 8): prune deletes a pruned
/// event's rows in every table itself, and leaves those of an event it
/// keeps. A table added later must be added there (and here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_leaves_no_row_of_a_pruned_event_behind() {
    use crate::store::stats::InboundView;
    use crate::store::{
        AttemptRecord, ClaimNew, InsertOptions, Inserted, NextState, Recorded, Retention,
    };
    use std::time::Duration;

    let Some((store, guard)) = pooled(4).await else {
        return;
    };
    let opts = InsertOptions {
        dedup_window: Duration::ZERO,
        claim: Some(ClaimNew {
            lease: Duration::from_secs(60),
            destinations: vec!["d".into()],
            subscribers: false,
            full: Vec::new(),
            held: Vec::new(),
        }),
    };
    for id in ["evt_pruned", "evt_kept"] {
        let mut e = conformance::event(id, Some(id), &["d"]);
        e.inbound = Some(InboundView {
            method: "POST".into(),
            path: "/hooks/r".into(),
            headers: vec![("x-github-event".into(), "issues".into())],
        });
        let Inserted::New { claimed, .. } = store.insert(e, opts.clone()).await.unwrap() else {
            panic!("new");
        };
        let d = &claimed[0];
        let next = if id == "evt_pruned" {
            NextState::Delivered
        } else {
            NextState::Retry {
                after: Duration::from_secs(3600),
            }
        };
        let recorded = store
            .record(AttemptRecord {
                delivery_id: d.id,
                event_id: d.event_id.clone(),
                lease: d.lease,
                attempted_at_ms: crate::clock::now_ms(),
                status: Some(if id == "evt_pruned" { 200 } else { 500 }),
                latency_ms: 1,
                error: None,
                response_excerpt: None,
                next,
            })
            .await
            .unwrap();
        assert_eq!(recorded, Recorded::Written);
    }
    let client = raw(&guard.url).await;
    client
        .batch_execute(&format!("SET search_path = {}", guard.schema))
        .await
        .unwrap();
    let rows = async |event: &str| {
        let mut counts = Vec::new();
        for (table, of_event) in [
            ("events", "id = $1"),
            ("event_requests", "event_id = $1"),
            ("messages", "event_id = $1"),
            ("deliveries", "event_id = $1"),
            (
                "attempts",
                "delivery_id IN (SELECT id FROM deliveries WHERE event_id = $1)",
            ),
        ] {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE {of_event}"),
                    &[&event],
                )
                .await
                .unwrap()
                .get(0);
            counts.push((table, n));
        }
        counts
    };
    for event in ["evt_pruned", "evt_kept"] {
        let counts = rows(event).await;
        assert!(counts.iter().all(|(_, n)| *n == 1), "{event}: {counts:?}");
    }
    let attempts_before: i64 = client
        .query_one("SELECT count(*) FROM attempts", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let everything = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    assert_eq!(store.prune(everything).await.unwrap(), 1);
    let left = rows("evt_pruned").await;
    assert!(left.iter().all(|(_, n)| *n == 0), "{left:?}");
    let attempts_after: i64 = client
        .query_one("SELECT count(*) FROM attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (attempts_before, attempts_after),
        (2, 1),
        "the pruned delivery's attempt went with it"
    );
    let kept = rows("evt_kept").await;
    assert!(kept.iter().all(|(_, n)| *n == 1), "evt_kept: {kept:?}");
}

/// A new webhook that no batch takes in time, because every writer waits
/// on a lock, is shed as overloaded within the ingest wait, and nothing of
/// it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_webhook_is_shed_when_every_writer_is_busy() {
    use crate::store::Inserted;
    use std::time::{Duration, Instant};

    let Some((store, guard)) = pooled(8).await else {
        return;
    };
    let locker = lock_events(&guard).await;
    // One webhook at a time, each its own batch, until every writer waits.
    let mut first = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        first.push(tokio::spawn(async move {
            store
                .insert(
                    conformance::event(&format!("evt_{i}"), None, &["d"]),
                    conformance::opts(),
                )
                .await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        store.insert(
            conformance::event("evt_late", None, &["d"]),
            conformance::opts(),
        ),
    )
    .await;
    let waited = started.elapsed();
    locker.batch_execute("ROLLBACK").await.unwrap();
    let mut stored = 0;
    for t in first {
        if let Ok(Inserted::New { .. }) = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("answered once the lock is gone")
            .unwrap()
        {
            stored += 1;
        }
    }
    assert!(
        matches!(late, Ok(Err(StoreError::Overloaded))),
        "{late:?} after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "shed after {waited:?}");
    assert!(stored >= 4, "the writers' webhooks are stored ({stored})");
    assert!(store.get("evt_late".into()).await.unwrap().is_none());
}
