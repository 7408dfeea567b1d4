//! The store contract as tests, written once and run against every engine.
//!
//! An engine's test module instantiates the whole suite with
//! `conformance::suite!(|| (store, guard))`, where the closure makes a fresh
//! empty store (and anything that must live as long, such as its temporary
//! directory). Every case goes through the [`Store`] trait only, and times
//! are real but short (leases of a few hundred milliseconds), so the same
//! cases hold for an engine whose clock is a database server's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::{BulkReplay, ConsoleFilter, ReplaySet};
use super::{
    AttemptHealth, AttemptRecord, ClaimNew, DueDelivery, EventFilter, EventStatus, Fanout,
    InsertOptions, Inserted, NewEvent, NewMessage, NextState, Recorded, ReplayTarget, Retention,
    Store, StoreError, Subscription, SubscriptionHealth, SubscriptionPatch,
};
use crate::plugin::Message;

/// Instantiates every conformance case as a `#[tokio::test]` for the
/// engine `$make` makes.
macro_rules! suite {
    ($make:expr) => {
        $crate::store::conformance::suite!(@cases $make;
            leases_hold_deliveries_and_status_follows_the_least_finished,
            a_stale_lease_token_is_refused_and_writes_nothing,
            renew_extends_a_lease_and_release_hands_it_back,
            an_insert_claims_what_it_is_asked_to_in_its_own_transaction,
            claims_skip_the_destinations_asked_and_take_the_oldest_first,
            a_claim_finds_due_work_behind_a_skipped_lanes_long_backlog,
            dedup_holds_under_concurrent_inserts_and_expires,
            a_failed_insert_leaves_nothing_behind,
            fan_out_reaches_matching_active_subscriptions_of_the_tenant,
            a_fan_out_claim_leaves_the_deliveries_of_full_subscriber_lanes_due,
            replay_requeues_finished_deliveries_but_not_those_in_flight,
            bulk_replay_covers_more_than_one_batch,
            a_replay_to_another_destination_moves_only_named_deliveries,
            retention_prunes_delivered_and_dead_after_their_own_windows,
            subscription_patches_change_only_what_they_name,
            health_disables_after_the_streak_on_gone_or_exhausted,
            postponing_uses_no_retry_and_counts_no_attempt,
            hastening_makes_only_a_destinations_waiting_deliveries_due,
            pages_are_newest_first_with_a_cursor_and_filters,
            a_disabled_subscription_parks_its_deliveries_until_it_is_enabled,
            a_park_is_settled_against_the_subscription_as_it_is_when_written,
            deleting_a_subscription_dead_letters_what_waits_for_it,
            a_re_enable_racing_a_park_leaves_nothing_parked,
            a_console_bulk_replay_runs_in_batches_and_leaves_what_is_in_flight,
            a_status_filtered_bulk_replay_takes_an_event_spanning_batches_whole,
            a_console_bulk_replay_with_to_moves_the_confirmed_set_and_no_subscribers,
            a_park_after_an_attempt_counts_the_attempt,
            re_enabling_and_deleting_settle_more_than_a_batch,
            a_re_enable_keeps_parked_deliveries_ahead_of_new_ones,
            an_event_read_while_it_is_finished_is_one_snapshot,
            a_record_ends_its_lease,
            records_that_arrive_together_are_each_written_or_refused_alone,
            an_insert_claim_runs_out_and_a_duplicate_claims_nothing,
            the_longest_keys_the_gateway_keeps_are_stored,
            destination_stats_count_attempts_failures_and_backlogs,
            the_consoles_reads_filter_search_count_and_page_alike,
            one_delivery_is_replayed_unless_it_is_in_flight_parked_or_another_events,
            the_search_finds_message_ids_a_transform_chose,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                #[allow(clippy::redundant_closure_call, reason = "the macro takes a closure")]
                let made = ($make)();
                // An engine that needs a server makes `None` without one
                // (and says so itself).
                let Some((store, _guard)) = $crate::store::conformance::Made::made(made) else {
                    return;
                };
                $crate::store::conformance::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}
pub(crate) use suite;

/// What a suite's closure makes: a store and its guard, or, for an engine
/// that needs a server, maybe nothing.
pub trait Made {
    /// The engine.
    type Store: Store;
    /// Lives as long as the store.
    type Guard;
    /// The store, if there is one.
    fn made(self) -> Option<(Self::Store, Self::Guard)>;
}

impl<T: Store, G> Made for (T, G) {
    type Store = T;
    type Guard = G;
    fn made(self) -> Option<(T, G)> {
        Some(self)
    }
}

impl<T: Store, G> Made for Option<(T, G)> {
    type Store = T;
    type Guard = G;
    fn made(self) -> Option<(T, G)> {
        self
    }
}

/// A store under test.
type S = Arc<dyn Store>;

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_millis(300);

pub(crate) fn opts() -> InsertOptions {
    InsertOptions {
        dedup_window: Duration::from_secs(3600),
        claim: None,
    }
}

pub(crate) fn event(id: &str, source: Option<&str>, dests: &[&str]) -> NewEvent {
    NewEvent {
        id: id.into(),
        route: "r".into(),
        source_id: source.map(Into::into),
        received_at_ms: crate::clock::now_ms(),
        messages: vec![NewMessage {
            message: Message::json(Some("e"), &serde_json::json!({"id": id})),
            destinations: dests.iter().map(|d| (*d).to_owned()).collect(),
        }],
        fanout: Vec::new(),
        inbound: None,
    }
}

/// An event whose webhook became several messages, one per
/// (message id, destination) of `messages`.
pub(crate) fn split(id: &str, source: Option<&str>, messages: &[(&str, &str)]) -> NewEvent {
    let mut e = event(id, source, &[]);
    let one = e.messages.pop().expect("event() makes one message");
    e.messages = messages
        .iter()
        .map(|(message_id, dest)| {
            let mut m = one.clone();
            m.message.id = Some((*message_id).to_owned());
            m.destinations = vec![(*dest).to_owned()];
            m
        })
        .collect();
    e
}

/// Claims and dead-letters every due delivery; how many there were.
pub(crate) async fn dead_letter_all(store: &S) -> usize {
    let mut dead = 0;
    loop {
        let due = store.claim_due(500, LONG, Vec::new()).await.unwrap();
        if due.is_empty() {
            return dead;
        }
        for d in &due {
            record(store, d, 500, NextState::Dead { reason: "x".into() }).await;
            dead += 1;
        }
    }
}

/// The delivery of event `event_id` to `destination`.
pub(crate) async fn delivery_to(
    store: &dyn Store,
    event_id: &str,
    destination: &str,
) -> super::DeliveryView {
    let detail = store.get(event_id.into()).await.unwrap().unwrap();
    detail
        .deliveries
        .into_iter()
        .find(|d| d.destination == destination)
        .unwrap_or_else(|| panic!("{event_id} has no delivery to {destination}"))
}

/// Inserts a one-message event to `dests`; panics unless it is new.
pub async fn insert_one(store: &dyn Store, id: &str, source: Option<&str>, dests: &[&str]) {
    match store.insert(event(id, source, dests), opts()).await {
        Ok(Inserted::New { .. }) => {}
        other => panic!("insert {id}: {other:?}"),
    }
}

pub(crate) fn attempt(d: &DueDelivery, status: u16, next: NextState) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        event_id: d.event_id.clone(),
        lease: d.lease,
        attempted_at_ms: crate::clock::now_ms(),
        status: Some(status),
        latency_ms: 1,
        error: None,
        response_excerpt: Some("ok".into()),
        next,
    }
}

/// Records an attempt on `d` (`status`, then `next`): what the store said.
async fn record(store: &S, d: &DueDelivery, status: u16, next: NextState) -> Recorded {
    store.record(attempt(d, status, next)).await.unwrap()
}

async fn status(store: &S, id: &str) -> EventStatus {
    store
        .get(id.into())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{id} is stored"))
        .summary
        .status
}

/// Whether a claim now finds nothing due.
async fn nothing_due(store: &S) -> bool {
    store
        .claim_due(10, LONG, Vec::new())
        .await
        .unwrap()
        .is_empty()
}

/// Claims until `n` deliveries came back or `within` passed.
async fn claim_until(store: &S, n: usize, within: Duration) -> Vec<DueDelivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(store.claim_due(100, LONG, Vec::new()).await.unwrap());
        if got.len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    got
}

/// Enables or disables tenant `t`'s subscription `id`, which must exist.
/// Publishes `n` events of type "A", `{prefix}00000` upwards.
async fn publish_many(store: &S, prefix: &str, n: usize) {
    for i in 0..n {
        store
            .insert(publish(&format!("{prefix}{i:05}"), "A"), opts())
            .await
            .unwrap();
    }
}

/// Tenant `t`'s subscription `id` as the change leaves it; the change
/// must be reported done.
pub(crate) async fn set_active(store: &dyn Store, id: &str, active: bool) -> Subscription {
    store
        .update_subscription(
            "t".into(),
            id.into(),
            SubscriptionPatch {
                active: Some(active),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("setting {id} active = {active} is reported done: {e}"))
        .expect("the subscription exists")
}

/// Creates tenant `t`'s subscriptions `ids` (object `g`, every event
/// type), disabled.
pub(crate) async fn disabled_subscriptions(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        let mut s = subscription(id, "t", "g", &["*"]);
        s.active = false;
        store.create_subscription(s).await.unwrap();
    }
}

/// Checks tenant `t`'s subscription `id`, whose `column` the test made
/// undecodable: a read and a list answer `Corrupt` (the read naming the
/// column), and it can still be deleted.
pub(crate) async fn assert_reported_corrupt(store: &dyn Store, id: &str, column: &str) {
    match store.get_subscription(Some("t".into()), id.into()).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains(column), "{why}"),
        other => panic!("{column}: corrupt, not {other:?}"),
    }
    assert!(
        matches!(
            store.list_subscriptions("t".into(), None, None).await,
            Err(StoreError::Corrupt(_))
        ),
        "{column}: a list with it is corrupt too"
    );
    store
        .delete_subscription("t".into(), id.into())
        .await
        .expect("a corrupt subscription can still be deleted");
}

/// A retention that keeps everything a test makes.
pub(crate) const KEEP_AN_HOUR: Retention = Retention {
    delivered: Duration::from_secs(3600),
    dead: Duration::from_secs(3600),
};

/// The record of an attempt that parks `d` (its subscription read as
/// disabled).
fn park(d: &DueDelivery) -> AttemptRecord {
    AttemptRecord {
        status: None,
        ..attempt(
            d,
            0,
            NextState::Park {
                reason: "parked: the subscription is disabled".into(),
                attempted: false,
            },
        )
    }
}

pub(crate) fn subscription(id: &str, tenant: &str, object: &str, types: &[&str]) -> Subscription {
    Subscription {
        id: id.into(),
        tenant: tenant.into(),
        object_id: object.into(),
        object_type: "Group".into(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        callback_url: "https://example.invalid/cb".into(),
        callback_token: None,
        context: None,
        validity_ms: crate::clock::now_ms() + 86_400_000,
        active: true,
        secret: "whsec_x".into(),
        created_at_ms: 0,
        failing_since_ms: None,
        disabled_reason: None,
        headers: Default::default(),
        properties: None,
        signature_scheme: Default::default(),
        previous_secret: None,
        previous_secret_expires_ms: None,
    }
}

pub async fn leases_hold_deliveries_and_status_follows_the_least_finished(store: S) {
    insert_one(&*store, "evt_1", None, &["a", "b"]).await;
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(
        store
            .claim_due(10, LONG, Vec::new())
            .await
            .unwrap()
            .is_empty(),
        "leased deliveries are not due"
    );
    assert_eq!(
        record(&store, &due[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    assert_eq!(status(&store, "evt_1").await, EventStatus::Pending);
    let dead = NextState::Dead {
        reason: "gone".into(),
    };
    assert_eq!(
        store.record(attempt(&due[1], 410, dead)).await.unwrap(),
        Recorded::Written
    );
    let e = store.get("evt_1".into()).await.unwrap().unwrap();
    assert_eq!(e.summary.status, EventStatus::Dead);
    assert_eq!(
        e.deliveries.iter().map(|d| d.attempts.len()).sum::<usize>(),
        2
    );
    assert!(e.deliveries.iter().all(|d| d.attempts_made == 1));
    assert_eq!(store.next_due_in().await.unwrap(), None, "nothing pending");
}

pub async fn a_stale_lease_token_is_refused_and_writes_nothing(store: S) {
    insert_one(&*store, "evt_1", None, &["a"]).await;
    let first = store.claim_due(10, SHORT, Vec::new()).await.unwrap();
    assert_eq!(first.len(), 1);
    // The lease runs out (the first claimer is slow, or dead) and someone
    // else claims the delivery.
    let second = claim_until(&store, 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1, "reclaimed after the lease ran out");
    assert_ne!(first[0].lease, second[0].lease);
    // The first claimer's outcome is refused, whatever it says.
    let stale = &first[0];
    assert_eq!(
        record(&store, stale, 200, NextState::Delivered).await,
        Recorded::LeaseLost
    );
    assert!(!store.renew(stale.id, stale.lease, LONG).await.unwrap());
    assert!(!store.release(stale.id, stale.lease).await.unwrap());
    let e = store.get("evt_1".into()).await.unwrap().unwrap();
    assert_eq!(e.summary.status, EventStatus::Pending, "nothing written");
    assert!(e.deliveries[0].attempts.is_empty());
    // The current holder's outcome is written.
    assert_eq!(
        record(&store, &second[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    assert_eq!(status(&store, "evt_1").await, EventStatus::Delivered);
    // And a second record with the same token is stale too.
    assert_eq!(
        record(&store, &second[0], 200, NextState::Delivered).await,
        Recorded::LeaseLost
    );
}

pub async fn renew_extends_a_lease_and_release_hands_it_back(store: S) {
    insert_one(&*store, "evt_1", None, &["a"]).await;
    let due = store.claim_due(10, SHORT, Vec::new()).await.unwrap();
    assert!(store.renew(due[0].id, due[0].lease, LONG).await.unwrap());
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert!(
        store
            .claim_due(10, LONG, Vec::new())
            .await
            .unwrap()
            .is_empty(),
        "the renewed lease still holds"
    );
    assert!(store.release(due[0].id, due[0].lease).await.unwrap());
    let again = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(again.len(), 1, "released: due now");
    assert_eq!(again[0].attempts, 0, "a release counts no attempt");
    assert!(!store.release(due[0].id, due[0].lease).await.unwrap());
}

/// A record ends its lease: the token it was made under no longer renews
/// or releases the delivery, whatever the record decided. A late release
/// does not cut a retry's backoff short, nor reopen a delivered one.
pub async fn a_record_ends_its_lease(store: S) {
    insert_one(&*store, "evt_1", None, &["a"]).await;
    insert_one(&*store, "evt_2", None, &["a"]).await;
    let mut due = claim_until(&store, 2, Duration::from_secs(5)).await;
    assert_eq!(due.len(), 2);
    due.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(
        record(&store, &due[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    assert_eq!(
        record(&store, &due[1], 503, NextState::Retry { after: LONG }).await,
        Recorded::Written
    );
    for d in &due {
        assert!(
            !store.renew(d.id, d.lease, LONG).await.unwrap(),
            "{}: renewed after its record",
            d.event_id
        );
        assert!(
            !store.release(d.id, d.lease).await.unwrap(),
            "{}: released after its record",
            d.event_id
        );
    }
    assert!(
        store
            .claim_due(10, LONG, Vec::new())
            .await
            .unwrap()
            .is_empty(),
        "the retry waits out its backoff"
    );
    assert_eq!(status(&store, "evt_1").await, EventStatus::Delivered);
    assert_eq!(status(&store, "evt_2").await, EventStatus::Pending);
}

/// Records that arrive at once (an engine may write them together) are
/// each decided alone: a stale token among them is refused and writes
/// nothing, the others are written with their own outcomes, and a response
/// that holds a NUL character (a binary body's excerpt) is still stored.
pub async fn records_that_arrive_together_are_each_written_or_refused_alone(store: S) {
    const N: usize = 48;
    for i in 0..N {
        insert_one(&*store, &format!("evt_{i:02}"), None, &["a"]).await;
    }
    let mut due = claim_until(&store, N, Duration::from_secs(5)).await;
    assert_eq!(due.len(), N);
    due.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    // Event i: 0 delivered, 1 stale, 2 retried, 3 dead (by i % 4).
    let mut tasks = tokio::task::JoinSet::new();
    for (i, d) in due.iter().enumerate() {
        let mut a = match i % 4 {
            0 | 1 => attempt(d, 200, NextState::Delivered),
            2 => attempt(d, 503, NextState::Retry { after: LONG }),
            _ => attempt(
                d,
                410,
                NextState::Dead {
                    reason: "gone".into(),
                },
            ),
        };
        if i % 4 == 1 {
            a.lease = super::LeaseToken(d.lease.0.wrapping_add(1));
        }
        if i == 4 {
            a.response_excerpt = Some("bin\0ary".into());
        }
        let store = Arc::clone(&store);
        tasks.spawn(async move { (i, store.record(a).await) });
    }
    let mut outcomes = tokio::time::timeout(Duration::from_secs(30), tasks.join_all())
        .await
        .expect("every record is answered within 30 s");
    outcomes.sort_by_key(|(i, _)| *i);
    for (i, r) in outcomes {
        let want = if i % 4 == 1 {
            Recorded::LeaseLost
        } else {
            Recorded::Written
        };
        assert_eq!(r.unwrap(), want, "record {i}");
    }
    for (i, d) in due.iter().enumerate() {
        let e = store.get(d.event_id.clone()).await.unwrap().unwrap();
        let (want, attempts) = match i % 4 {
            0 => (EventStatus::Delivered, 1),
            1 => (EventStatus::Pending, 0),
            2 => (EventStatus::Pending, 1),
            _ => (EventStatus::Dead, 1),
        };
        assert_eq!(e.summary.status, want, "event {i}");
        assert_eq!(e.deliveries[0].attempts.len(), attempts, "event {i}");
    }
    let binary = store.get("evt_04".into()).await.unwrap().unwrap();
    let excerpt = binary.deliveries[0].attempts[0].response.clone().unwrap();
    assert!(
        excerpt.starts_with("bin") && excerpt.ends_with("ary"),
        "{excerpt:?}"
    );
    // The stale records left their deliveries to the current claim.
    for (i, d) in due.iter().enumerate().filter(|(i, _)| i % 4 == 1) {
        assert_eq!(
            record(&store, d, 200, NextState::Delivered).await,
            Recorded::Written,
            "record {i} under its own lease"
        );
    }
}

pub async fn an_insert_claims_what_it_is_asked_to_in_its_own_transaction(store: S) {
    let inserted = store
        .insert(
            event("evt_1", None, &["a", "b"]),
            InsertOptions {
                claim: Some(ClaimNew {
                    lease: LONG,
                    destinations: vec!["a".into()],
                    subscribers: false,
                    full: Vec::new(),
                    held: Vec::new(),
                }),
                ..opts()
            },
        )
        .await
        .unwrap();
    let Inserted::New {
        deliveries,
        claimed,
    } = inserted
    else {
        panic!("new")
    };
    assert_eq!(deliveries, 2);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].destination, "a");
    assert_eq!(claimed[0].event_id, "evt_1");
    assert_eq!(claimed[0].route, "r");
    assert_eq!(&claimed[0].message.body[..], br#"{"id":"evt_1"}"#);
    let polled = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(polled.len(), 1, "only the unclaimed one is due");
    assert_eq!(polled[0].destination, "b");
    assert_eq!(
        record(&store, &claimed[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
}

/// What an insert claims is held only by its lease: when the gateway that
/// inserted never hands it to its dispatcher (it crashed), the lease runs
/// out and a poll claims it. A duplicate insert asking for a claim stores
/// and claims nothing, and takes nothing from the first event's deliveries.
pub async fn an_insert_claim_runs_out_and_a_duplicate_claims_nothing(store: S) {
    let claim = |lease| InsertOptions {
        claim: Some(ClaimNew {
            lease,
            destinations: vec!["a".into()],
            subscribers: false,
            full: Vec::new(),
            held: Vec::new(),
        }),
        ..opts()
    };
    let Inserted::New { claimed, .. } = store
        .insert(event("evt_1", Some("g1"), &["a"]), claim(SHORT))
        .await
        .unwrap()
    else {
        panic!("new")
    };
    assert_eq!(claimed.len(), 1);
    // The same provider id again, asking for a claim: a duplicate.
    match store
        .insert(event("evt_2", Some("g1"), &["a"]), claim(LONG))
        .await
        .unwrap()
    {
        Inserted::Duplicate { existing_id } => assert_eq!(existing_id, "evt_1"),
        other => panic!("a duplicate, not {other:?}"),
    }
    assert!(store.get("evt_2".into()).await.unwrap().is_none());
    // The first insert's claim is never handed on: it runs out, and the
    // delivery is claimed again, under a new token, with no attempt counted.
    let again = claim_until(&store, 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "the insert's lease ran out");
    assert_eq!(again[0].id, claimed[0].id);
    assert_ne!(again[0].lease, claimed[0].lease);
    assert_eq!(again[0].attempts, 0);
    assert_eq!(
        record(&store, &claimed[0], 200, NextState::Delivered).await,
        Recorded::LeaseLost
    );
    assert_eq!(
        record(&store, &again[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    assert_eq!(status(&store, "evt_1").await, EventStatus::Delivered);
}

pub async fn claims_skip_the_destinations_asked_and_take_the_oldest_first(store: S) {
    insert_one(&*store, "evt_1", None, &["slow"]).await;
    insert_one(&*store, "evt_2", None, &["fast"]).await;
    insert_one(&*store, "evt_3", None, &["fast"]).await;
    let got = store
        .claim_due(10, LONG, vec!["slow".into()])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
        ["evt_2", "evt_3"]
    );
    let one = store.claim_due(1, LONG, Vec::new()).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].destination, "slow");
}

/// A read of several statements sees one snapshot. While attempts are
/// recorded one after another, every event read in full (`get`) has the
/// status its deliveries give it: never "pending" beside deliveries all
/// delivered (a commit landing between the event's statement and its
/// deliveries'), nor the reverse.
pub async fn an_event_read_while_it_is_finished_is_one_snapshot(store: S) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const N: usize = 150;
    let id = |i: usize| format!("evt_{i:04}");
    for i in 0..N {
        insert_one(&*store, &id(i), None, &["d"]).await;
    }
    let mut due = claim_until(&store, N, Duration::from_secs(20)).await;
    assert_eq!(due.len(), N);
    due.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (store, current, done) = (store.clone(), current.clone(), done.clone());
        async move {
            let (mut reads, mut torn) = (0u32, Vec::new());
            while !done.load(Ordering::Acquire) {
                let e = id(current.load(Ordering::Acquire));
                let detail = store
                    .get(e.clone())
                    .await
                    .unwrap()
                    .expect("the event exists");
                let all_delivered = detail
                    .deliveries
                    .iter()
                    .all(|d| d.state == EventStatus::Delivered);
                if (detail.summary.status == EventStatus::Delivered) != all_delivered {
                    torn.push((e, detail.summary.status));
                }
                reads += 1;
            }
            (reads, torn)
        }
    });
    for (i, d) in due.iter().enumerate() {
        current.store(i, Ordering::Release);
        record(&store, d, 200, NextState::Delivered).await;
        // Let the reader start a read of this event before the next record.
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Release);
    let (reads, torn) = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the reader stops within 20 s")
        .unwrap();
    assert!(reads > 0);
    assert!(
        torn.is_empty(),
        "{} of {reads} reads saw the event and its deliveries at different moments: {torn:?}",
        torn.len()
    );
}

/// A full lane's backlog, due and in front of everyone else's, is passed
/// over: what is due for other destinations behind it is still claimed,
/// oldest first (engines may look destination by destination past a long
/// backlog instead of scanning it).
pub async fn a_claim_finds_due_work_behind_a_skipped_lanes_long_backlog(store: S) {
    const BACKLOG: usize = 1_100;
    insert_one(&*store, "evt_first", None, &["ok"]).await;
    for i in 0..BACKLOG {
        insert_one(&*store, &format!("evt_h{i:05}"), None, &["hang"]).await;
    }
    insert_one(&*store, "evt_later", None, &["ok"]).await;
    insert_one(&*store, "evt_other", None, &["other"]).await;
    let got = store
        .claim_due(10, LONG, vec!["hang".into()])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
        ["evt_first", "evt_later", "evt_other"]
    );
    // A limit below what is due behind the backlog takes the oldest.
    for d in &got {
        assert!(store.release(d.id, d.lease).await.unwrap());
    }
    let two = store.claim_due(2, LONG, vec!["hang".into()]).await.unwrap();
    assert_eq!(
        two.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
        ["evt_first", "evt_later"]
    );
    let backlog = store.claim_due(2, LONG, Vec::new()).await.unwrap();
    assert_eq!(
        backlog
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<Vec<_>>(),
        ["evt_h00000", "evt_h00001"],
        "without a skip, the backlog is the oldest due"
    );
}

pub async fn dedup_holds_under_concurrent_inserts_and_expires(store: S) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert(event(&format!("evt_{i:02}"), Some("gh-1"), &["a"]), opts())
                .await
        }));
    }
    let mut new = Vec::new();
    let mut duplicates = HashSet::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Inserted::New { .. } => new.push(()),
            Inserted::Duplicate { existing_id } => {
                duplicates.insert(existing_id);
            }
        }
    }
    assert_eq!(new.len(), 1, "exactly one of the concurrent inserts is new");
    assert_eq!(duplicates.len(), 1, "all point to the same first event");
    // Another route, same provider id: not a duplicate.
    let mut other = event("evt_other", Some("gh-1"), &["a"]);
    other.route = "r2".into();
    assert!(matches!(
        store.insert(other, opts()).await.unwrap(),
        Inserted::New { .. }
    ));
    // A short window runs out.
    let short = InsertOptions {
        dedup_window: SHORT,
        claim: None,
    };
    assert!(matches!(
        store
            .insert(event("evt_s1", Some("gh-2"), &[]), short.clone())
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
    assert!(matches!(
        store
            .insert(event("evt_s2", Some("gh-2"), &[]), short.clone())
            .await
            .unwrap(),
        Inserted::Duplicate { existing_id } if existing_id == "evt_s1"
    ));
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert!(matches!(
        store
            .insert(event("evt_s3", Some("gh-2"), &[]), short)
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
}

pub async fn a_failed_insert_leaves_nothing_behind(store: S) {
    insert_one(&*store, "evt_1", Some("p1"), &["a"]).await;
    // The same event id again, with a new provider id: the event row
    // conflicts after the dedup key was taken. The whole insert must fail,
    // leaving neither the key nor any delivery.
    let err = store
        .insert(event("evt_1", Some("p2"), &["a"]), opts())
        .await;
    assert!(matches!(err, Err(StoreError::Database(_))), "{err:?}");
    assert!(
        matches!(
            store
                .insert(event("evt_2", Some("p2"), &["a"]), opts())
                .await
                .unwrap(),
            Inserted::New { .. }
        ),
        "the provider's retry is new, not a duplicate of a half-stored event"
    );
    let e = store.get("evt_1".into()).await.unwrap().unwrap();
    assert_eq!(e.deliveries.len(), 1, "no stray deliveries");
}

/// `chars` characters that no compression shrinks (PostgreSQL compresses
/// an index entry before it checks its size), each `width` bytes in UTF-8.
fn incompressible(seed: u64, chars: usize, width: usize) -> String {
    let (first, span) = match width {
        1 => (0x21, 0x5e),
        2 => (0x100, 0x700),
        3 => (0x4e00, 0x5000),
        _ => (0x1_0000, 0x1_0000),
    };
    let mut x = seed | 1;
    (0..chars)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_u32(first + (x % span) as u32).unwrap_or('x')
        })
        .collect()
}

/// The gateway bounds what it keeps as an indexed key (`crate::text`: a
/// provider id, event type or message id of at most
/// [`crate::text::MAX_KEY_BYTES`]; the `/v1` API's object ids and event
/// types of at most as many characters). Every engine stores the longest
/// of each: PostgreSQL's index entries hold 2,704 bytes.
pub async fn the_longest_keys_the_gateway_keeps_are_stored(store: S) {
    let max = crate::text::MAX_KEY_BYTES;
    let source = incompressible(1, max, 1);
    let event_type = incompressible(2, max / 4, 4);
    // A plugin's id, suffixed when one webhook became many messages.
    let message_id = format!("{}.99", incompressible(3, max, 1));
    let mut e = event("evt_long", Some(&source), &["a"]);
    e.messages[0].message.event_type = Some(event_type.clone());
    e.messages[0].message.id = Some(message_id.clone());
    assert!(matches!(
        store.insert(e, opts()).await.unwrap(),
        Inserted::New { deliveries: 1, .. }
    ));
    assert!(matches!(
        store.insert(event("evt_long_again", Some(&source), &["a"]), opts()).await.unwrap(),
        Inserted::Duplicate { existing_id } if existing_id == "evt_long"
    ));
    let got = store.get("evt_long".into()).await.unwrap().unwrap();
    assert_eq!(got.summary.source_id.as_deref(), Some(source.as_str()));
    assert_eq!(got.summary.event_type.as_deref(), Some(event_type.as_str()));
    assert_eq!(got.messages[0].id.as_deref(), Some(message_id.as_str()));

    // `/v1`: an object id and a published event type of the most
    // characters, each of the widest.
    let object = incompressible(4, max, 4);
    let published = incompressible(5, max, 4);
    store
        .create_subscription(subscription("wh_long", "t", &object, &["*"]))
        .await
        .unwrap();
    let mut p = publish("evt_pub", &published);
    // The idempotency key is the provider id and the message id.
    p.source_id = Some(incompressible(6, max, 4));
    p.fanout[0].envelope.id.clone_from(&p.source_id);
    p.fanout[0].object_id = object;
    match store.insert(p, opts()).await.unwrap() {
        Inserted::New { deliveries, .. } => assert_eq!(deliveries, 1),
        other => panic!("{other:?}"),
    }
}

pub async fn fan_out_reaches_matching_active_subscriptions_of_the_tenant(store: S) {
    let subs = [
        subscription("wh_a", "t1", "g1", &["*"]),
        subscription("wh_b", "t1", "g1", &["Other"]),
        subscription("wh_c", "t2", "g1", &["*"]),
        Subscription {
            validity_ms: 1,
            ..subscription("wh_d", "t1", "g1", &["*"])
        },
        subscription("wh_e", "t1", "g1", &["Created"]),
    ];
    for s in subs {
        store.create_subscription(s).await.unwrap();
    }
    store
        .update_subscription(
            "t1".into(),
            "wh_e".into(),
            SubscriptionPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let mut e = event("evt_1", None, &[]);
    e.fanout.push(Fanout {
        tenant: Some("t1".into()),
        object_type: "Group".into(),
        object_id: "g1".into(),
        event_type: "Created".into(),
        envelope: Message::json(Some("Created"), &serde_json::json!({"x": 1})),
    });
    let Inserted::New {
        deliveries,
        claimed,
    } = store
        .insert(
            e,
            InsertOptions {
                claim: Some(ClaimNew {
                    lease: LONG,
                    destinations: Vec::new(),
                    subscribers: true,
                    full: Vec::new(),
                    held: Vec::new(),
                }),
                ..opts()
            },
        )
        .await
        .unwrap()
    else {
        panic!("new")
    };
    assert_eq!(
        deliveries, 2,
        "wh_a (t1, active, unexpired, matching type) and wh_e (disabled: parked)"
    );
    assert_eq!(claimed.len(), 1, "a parked delivery is never claimed");
    assert_eq!(claimed[0].destination, "sub:wh_a");
    let parked = store.parked("wh_e".into(), 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id, "evt_1");
}

/// The dispatcher names the subscriber lanes that are full: their
/// deliveries are stored due for a later poll instead of claimed only to be
/// handed back.
pub async fn a_fan_out_claim_leaves_the_deliveries_of_full_subscriber_lanes_due(store: S) {
    for id in ["wh_a", "wh_b", "wh_c"] {
        store
            .create_subscription(subscription(id, "t", "g", &["*"]))
            .await
            .unwrap();
    }
    let claim = ClaimNew {
        lease: LONG,
        destinations: Vec::new(),
        subscribers: true,
        full: vec!["sub:wh_a".into(), "sub:wh_c".into()],
        held: Vec::new(),
    };
    let Inserted::New {
        deliveries,
        claimed,
    } = store
        .insert(
            publish("evt_1", "A"),
            InsertOptions {
                claim: Some(claim),
                ..opts()
            },
        )
        .await
        .unwrap()
    else {
        panic!("new")
    };
    assert_eq!(deliveries, 3);
    let claimed: Vec<&str> = claimed.iter().map(|d| d.destination.as_str()).collect();
    assert_eq!(claimed, ["sub:wh_b"], "only the lane with room is claimed");
    let mut due: Vec<String> = store
        .claim_due(10, LONG, Vec::new())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.destination)
        .collect();
    due.sort();
    assert_eq!(
        due,
        ["sub:wh_a", "sub:wh_c"],
        "the others are due, unclaimed"
    );
}

pub async fn replay_requeues_finished_deliveries_but_not_those_in_flight(store: S) {
    insert_one(&*store, "evt_1", None, &["a", "b"]).await;
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    let (a, b) = if due[0].destination == "a" {
        (&due[0], &due[1])
    } else {
        (&due[1], &due[0])
    };
    record(
        &store,
        a,
        500,
        NextState::Dead {
            reason: "exhausted".into(),
        },
    )
    .await;
    // b is in flight: a replay of the event leaves it alone.
    let n = store
        .replay(
            ReplayTarget::Event {
                id: "evt_1".into(),
                destination: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        record(&store, b, 200, NextState::Delivered).await,
        Recorded::Written,
        "the in-flight attempt keeps its lease"
    );
    let again = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].destination, "a");
    assert_eq!(again[0].retries, 0, "a fresh retry budget");
    assert_eq!(again[0].attempts, 1, "attempts are history");
    // Replay by destination only touches that destination.
    record(&store, &again[0], 200, NextState::Delivered).await;
    let n = store
        .replay(
            ReplayTarget::Event {
                id: "evt_1".into(),
                destination: Some("b".into()),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(status(&store, "evt_1").await, EventStatus::Pending);
}

pub async fn bulk_replay_covers_more_than_one_batch(store: S) {
    const N: usize = 1_200;
    for i in 0..N {
        insert_one(&*store, &format!("evt_{i:05}"), None, &["d"]).await;
    }
    insert_one(&*store, "evt_other", None, &["e"]).await;
    let dead = dead_letter_all(&store).await;
    assert_eq!(dead, N + 1);
    let n = store
        .replay(
            ReplayTarget::Matching(EventFilter {
                status: Some(EventStatus::Dead),
                destination: Some("d".into()),
                ..Default::default()
            }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n as usize, N, "exactly the filtered set, across batches");
    assert_eq!(status(&store, "evt_other").await, EventStatus::Dead);
}

/// A replay with `to` (a destination renamed in the config) moves what it
/// requeues to the new name, in both forms of replay, across batches; a
/// delivery in flight keeps its destination and its lease, and a
/// subscriber's delivery is neither requeued nor moved.
/// Dead letters for the replays that move deliveries: `n` events to `old`
/// (`evt_00000`, ...), `evt_keep` to `other`, and `evt_pub` to the
/// subscriber `wh_1` (`sub:wh_1`).
async fn dead_letters_to_move(store: &S, n: usize) {
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    for i in 0..n {
        insert_one(&**store, &format!("evt_{i:05}"), None, &["old"]).await;
    }
    insert_one(&**store, "evt_keep", None, &["other"]).await;
    store.insert(publish("evt_pub", "A"), opts()).await.unwrap();
    assert_eq!(dead_letter_all(store).await, n + 2);
}

/// Every moved delivery is claimed under `to`'s name with a fresh retry
/// budget.
async fn claim_moved(store: &S, n: usize) {
    let moved = claim_until(store, n, Duration::from_secs(10)).await;
    assert_eq!(moved.len(), n);
    assert!(
        moved
            .iter()
            .all(|d| d.destination == "new" && d.retries == 0),
        "all to the new name, with a fresh retry budget"
    );
}

pub async fn a_replay_to_another_destination_moves_only_named_deliveries(store: S) {
    const N: usize = 520;
    dead_letters_to_move(&store, N).await;
    insert_one(&*store, "evt_flight", None, &["old"]).await;
    let in_flight = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(in_flight.len(), 1);

    // One event's, by destination.
    let n = store
        .replay(
            ReplayTarget::Event {
                id: "evt_00000".into(),
                destination: Some("old".into()),
            },
            Some("new".into()),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        delivery_to(&*store, "evt_00000", "new").await.state,
        EventStatus::Pending
    );
    // Every dead one, across batches; the subscriber's stays as it is.
    let n = store
        .replay(
            ReplayTarget::Matching(EventFilter {
                status: Some(EventStatus::Dead),
                ..Default::default()
            }),
            Some("new".into()),
        )
        .await
        .unwrap();
    assert_eq!(n as usize, N - 1 + 1, "the rest of old's, and other's");
    assert_eq!(
        delivery_to(&*store, "evt_pub", "sub:wh_1").await.state,
        EventStatus::Dead
    );
    assert_eq!(status(&store, "evt_pub").await, EventStatus::Dead);
    assert_eq!(
        record(&store, &in_flight[0], 200, NextState::Delivered).await,
        Recorded::Written,
        "the attempt in flight keeps its lease"
    );
    assert_eq!(
        delivery_to(&*store, "evt_flight", "old").await.state,
        EventStatus::Delivered
    );
    claim_moved(&store, N + 1).await;
}

/// The console's bulk replay requeues the confirmed set in batches (its own
/// transactions, so it never holds ingest or many row locks for long),
/// refuses a set that changed since it was confirmed, and leaves a delivery
/// that went in flight since the count to its attempt.
pub async fn a_console_bulk_replay_runs_in_batches_and_leaves_what_is_in_flight(store: S) {
    const N: usize = 1_100;
    for i in 0..N {
        insert_one(&*store, &format!("evt_{i:05}"), None, &["d"]).await;
    }
    insert_one(&*store, "evt_other", None, &["e"]).await;
    dead_letter_all(&store).await;
    // One of them is replayed by hand and claimed: in flight.
    let detail = store.get("evt_00007".into()).await.unwrap().unwrap();
    assert!(
        store
            .replay_delivery("evt_00007".into(), detail.deliveries[0].id)
            .await
            .unwrap()
    );
    let in_flight = claim_until(&store, 1, Duration::from_secs(10)).await;
    assert_eq!(in_flight.len(), 1);
    let filter = ConsoleFilter {
        base: EventFilter {
            destination: Some("d".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let set = store.count_replay_set(filter.clone(), false).await.unwrap();
    assert_eq!((set.events, set.deliveries), (N as u64, N as u64 - 1));
    let stale = ReplaySet {
        deliveries: set.deliveries + 1,
        ..set
    };
    assert_eq!(
        store
            .replay_filtered(filter.clone(), stale, None)
            .await
            .unwrap(),
        BulkReplay::Changed(set),
        "a set that is not the one confirmed is not replayed"
    );
    let BulkReplay::Replayed(done) = store
        .replay_filtered(filter.clone(), set, None)
        .await
        .unwrap()
    else {
        panic!("the confirmed set is replayed")
    };
    assert_eq!(
        (done.events, done.deliveries),
        (N as u64 - 1, N as u64 - 1),
        "everything but the one in flight, across batches"
    );
    assert_eq!(status(&store, "evt_other").await, EventStatus::Dead);
    // The one in flight still records under its own lease.
    assert_eq!(
        record(&store, &in_flight[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    let requeued = store.claim_due(2_000, LONG, Vec::new()).await.unwrap();
    assert_eq!(requeued.len(), N - 1);
}

/// The console's bulk replay with `to` moves what it counted, across
/// batches, to the new destination with a fresh retry budget; a
/// subscriber's delivery is neither counted nor moved, and deliveries the
/// filter does not name stay where they are.
pub async fn a_console_bulk_replay_with_to_moves_the_confirmed_set_and_no_subscribers(store: S) {
    const N: usize = 520;
    dead_letters_to_move(&store, N).await;

    // By destination: old's only.
    let filter = ConsoleFilter {
        base: EventFilter {
            destination: Some("old".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let set = store.count_replay_set(filter.clone(), false).await.unwrap();
    assert_eq!((set.events, set.deliveries), (N as u64, N as u64));
    let BulkReplay::Replayed(done) = store
        .replay_filtered(filter, set, Some("new".into()))
        .await
        .unwrap()
    else {
        panic!("the confirmed set is replayed")
    };
    assert_eq!((done.events, done.deliveries), (N as u64, N as u64));
    assert_eq!(
        delivery_to(&*store, "evt_keep", "other").await.state,
        EventStatus::Dead,
        "not named by the filter"
    );

    // By status: a subscriber's dead delivery is not counted when moving,
    // and stays dead; other's moves.
    let filter = ConsoleFilter {
        base: EventFilter {
            status: Some(EventStatus::Dead),
            ..Default::default()
        },
        ..Default::default()
    };
    let counted = store.count_replay_set(filter.clone(), false).await.unwrap();
    assert_eq!(counted.deliveries, 2, "other's and the subscriber's");
    assert_eq!(
        store
            .replay_filtered(filter.clone(), counted, Some("new".into()))
            .await
            .unwrap(),
        BulkReplay::Changed(ReplaySet {
            events: 2,
            deliveries: 1
        }),
        "moving, the subscriber's delivery is not in the set"
    );
    let moving = store.count_replay_set(filter.clone(), true).await.unwrap();
    assert_eq!(
        moving,
        ReplaySet {
            events: 2,
            deliveries: 1
        }
    );
    let BulkReplay::Replayed(done) = store
        .replay_filtered(filter, moving, Some("new".into()))
        .await
        .unwrap()
    else {
        panic!("the set counted for a move is replayed")
    };
    assert_eq!(done.deliveries, 1);
    assert_eq!(
        delivery_to(&*store, "evt_pub", "sub:wh_1").await.state,
        EventStatus::Dead
    );
    claim_moved(&store, N + 1).await;
}

pub async fn a_status_filtered_bulk_replay_takes_an_event_spanning_batches_whole(store: S) {
    // One event to more destinations than a batch holds, all dead letters,
    // replayed by the filter "status: dead". Requeueing the first batch
    // must not change what the filter matches for the rest of the set: a
    // status refresh per batch made the event pending after the first 500
    // and left the other 100 dead.
    const N: usize = 600;
    let dests: Vec<String> = (0..N).map(|i| format!("d{i:03}")).collect();
    let refs: Vec<&str> = dests.iter().map(String::as_str).collect();
    insert_one(&*store, "evt_wide", None, &refs).await;
    dead_letter_all(&store).await;
    assert_eq!(status(&store, "evt_wide").await, EventStatus::Dead);
    let filter = ConsoleFilter {
        base: EventFilter {
            status: Some(EventStatus::Dead),
            ..Default::default()
        },
        ..Default::default()
    };
    let set = store.count_replay_set(filter.clone(), false).await.unwrap();
    assert_eq!((set.events, set.deliveries), (1, N as u64));
    let BulkReplay::Replayed(done) = store.replay_filtered(filter, set, None).await.unwrap() else {
        panic!("the confirmed set is replayed")
    };
    assert_eq!((done.events, done.deliveries), (1, N as u64));
    assert_eq!(status(&store, "evt_wide").await, EventStatus::Pending);
    let requeued = store.claim_due(2_000, LONG, Vec::new()).await.unwrap();
    assert_eq!(requeued.len(), N, "every confirmed delivery is due again");
}

pub async fn retention_prunes_delivered_and_dead_after_their_own_windows(store: S) {
    insert_one(&*store, "evt_delivered", None, &["a"]).await;
    insert_one(&*store, "evt_dead", None, &["b"]).await;
    insert_one(&*store, "evt_pending", None, &["c"]).await;
    insert_one(&*store, "evt_none", None, &[]).await;
    for d in store.claim_due(10, LONG, Vec::new()).await.unwrap() {
        let next = match d.destination.as_str() {
            "a" => NextState::Delivered,
            "b" => NextState::Dead { reason: "x".into() },
            _ => continue,
        };
        store.record(attempt(&d, 200, next)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let keep_dead = Retention {
        delivered: Duration::ZERO,
        dead: LONG,
    };
    assert_eq!(
        store.prune(keep_dead).await.unwrap(),
        2,
        "delivered + no deliveries"
    );
    assert!(store.get("evt_delivered".into()).await.unwrap().is_none());
    assert!(store.get("evt_dead".into()).await.unwrap().is_some());
    let all = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    assert_eq!(store.prune(all).await.unwrap(), 1);
    assert!(store.get("evt_dead".into()).await.unwrap().is_none());
    assert!(
        store.get("evt_pending".into()).await.unwrap().is_some(),
        "pending events are never pruned"
    );
}

/// What the console's destinations page shows, the same on every engine:
/// attempts and 2xx per bucket, nearest-rank percentiles, the latest
/// failure's reason, and what waits now (a postponed delivery waits but was
/// not attempted).
pub async fn destination_stats_count_attempts_failures_and_backlogs(store: S) {
    let since = crate::clock::now_ms() - 60_000;
    insert_one(&*store, "evt_1", None, &["a", "b"]).await;
    insert_one(&*store, "evt_2", None, &["a"]).await;
    insert_one(&*store, "evt_3", None, &["c"]).await;
    insert_one(&*store, "evt_4", None, &["p"]).await;
    let due = store.claim_due(10, LONG, vec!["c".into()]).await.unwrap();
    assert_eq!(due.len(), 4, "{due:?}");
    for d in &due {
        let base = attempt(d, 200, NextState::Delivered);
        let record = match (d.destination.as_str(), d.event_id.as_str()) {
            ("a", "evt_1") => AttemptRecord {
                latency_ms: 10,
                ..base
            },
            ("a", _) => AttemptRecord {
                status: Some(500),
                latency_ms: 30,
                error: Some("boom".into()),
                next: NextState::Retry { after: LONG },
                ..base
            },
            ("b", _) => AttemptRecord {
                status: Some(503),
                latency_ms: 20,
                next: NextState::Dead {
                    reason: "exhausted".into(),
                },
                ..base
            },
            _ => AttemptRecord {
                status: None,
                error: Some("destination not configured".into()),
                next: NextState::Postpone { after: LONG },
                ..base
            },
        };
        assert!(
            store.record(record).await.unwrap() == Recorded::Written,
            "{d:?}"
        );
    }
    // Three buckets of a little over 40 s: every attempt (about 60 s after
    // `since`) falls in the middle one.
    let now = crate::clock::now_ms() + 60_000;
    let stats = store.destination_stats(since, now, 3).await.unwrap();
    let names: Vec<&str> = stats.iter().map(|s| s.destination.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "p"], "ordered by destination");
    for s in &stats {
        assert_eq!(s.series.len(), 3, "{s:?}");
        assert_eq!(s.series[0].start_ms, since, "{s:?}");
        let width = s.series[1].start_ms - s.series[0].start_ms;
        assert_eq!(s.series[2].start_ms - s.series[1].start_ms, width);
        assert!(width >= 40_000, "{s:?}");
        let (ok, failed) = (s.series[1].ok, s.series[1].failed);
        assert_eq!(ok + failed, s.attempts, "{s:?}: all in the middle bucket");
        assert_eq!(ok, s.ok, "{s:?}");
    }
    let [a, b, c, p] = &stats[..] else {
        unreachable!()
    };
    assert_eq!((a.attempts, a.ok), (2, 1), "{a:?}");
    assert_eq!((a.p50_ms, a.p99_ms), (Some(10), Some(30)), "{a:?}");
    assert!((a.series[1].mean_latency_ms - 20.0).abs() < 1e-9, "{a:?}");
    assert_eq!(
        a.last_error.as_ref().map(|(_, why)| why.as_str()),
        Some("boom")
    );
    let evt_2 = store.get("evt_2".into()).await.unwrap().unwrap().summary;
    assert_eq!(
        (a.backlog, a.oldest_pending_ms),
        (1, Some(evt_2.received_at_ms))
    );
    assert_eq!((b.attempts, b.ok, b.backlog), (1, 0, 0), "{b:?}");
    assert_eq!((b.p50_ms, b.p99_ms), (Some(20), Some(20)), "{b:?}");
    assert_eq!(
        b.last_error.as_ref().map(|(_, why)| why.as_str()),
        Some("HTTP 503")
    );
    let at = b.last_error.as_ref().map(|(at, _)| *at).unwrap();
    assert!((since..now).contains(&at), "{b:?}");
    for waiting in [c, p] {
        assert_eq!(waiting.attempts, 0, "{waiting:?}: never attempted");
        assert_eq!((waiting.p50_ms, waiting.last_error.as_ref()), (None, None));
        assert_eq!(waiting.backlog, 1, "{waiting:?}");
    }
    // A window that ended before the attempts holds none of them, but the
    // backlog is now's.
    let before = store
        .destination_stats(since - 60_000, since, 2)
        .await
        .unwrap();
    assert!(before.iter().all(|s| s.attempts == 0), "{before:?}");
    assert_eq!(
        before.iter().map(|s| s.backlog).sum::<u64>(),
        3,
        "{before:?}"
    );
}

/// The console's reads beyond the admin API, the same on every engine:
/// its filters and id search, counts by status, pages, the kept inbound
/// request, the backlog and the deliveries by state per destination.
pub async fn the_consoles_reads_filter_search_count_and_page_alike(store: S) {
    use super::stats::{InboundView, ParkedDeliveries, StatusCounts};

    let inbound = InboundView {
        method: "POST".into(),
        path: "/hooks/r?x=1".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-hub-signature-256".into(), "[redacted]".into()),
        ],
    };
    let e1 = NewEvent {
        inbound: Some(inbound.clone()),
        ..event("evt_01", Some("prov-1"), &["a"])
    };
    // Two webhooks that became two messages each, with the ids the
    // pipeline gives them: the provider's id, else the event's, suffixed.
    let mut e2 = NewEvent {
        route: "r2".into(),
        ..split(
            "evt_02",
            Some("prov-2"),
            &[("prov-2.0", "b"), ("prov-2.1", "b")],
        )
    };
    for m in &mut e2.messages {
        m.message.event_type = Some("push".into());
    }
    for e in [
        e1,
        e2,
        split("evt_03", None, &[("evt_03.0", "a"), ("evt_03.1", "b")]),
    ] {
        assert!(matches!(
            store.insert(e, opts()).await.unwrap(),
            Inserted::New { .. }
        ));
    }
    // evt_01 delivered, evt_02 dead, evt_03 pending (its claims handed back).
    for d in store.claim_due(10, LONG, Vec::new()).await.unwrap() {
        match d.event_id.as_str() {
            "evt_01" => record(&store, &d, 200, NextState::Delivered).await,
            "evt_02" => record(&store, &d, 500, NextState::Dead { reason: "x".into() }).await,
            _ => {
                assert!(store.release(d.id, d.lease).await.unwrap());
                continue;
            }
        };
    }

    let ids = async |filter: ConsoleFilter| -> Vec<String> {
        let page = store.console_list(filter, 10, None).await.unwrap();
        assert_eq!(page.next, None);
        page.events.into_iter().map(|e| e.id).collect()
    };
    let all = ConsoleFilter::default();
    assert_eq!(
        ids(all.clone()).await,
        ["evt_03", "evt_02", "evt_01"],
        "newest first"
    );
    let with = |f: &dyn Fn(&mut ConsoleFilter)| {
        let mut filter = ConsoleFilter::default();
        f(&mut filter);
        filter
    };
    let cases: [(&str, ConsoleFilter, &[&str]); 12] = [
        (
            "status",
            with(&|f| f.base.status = Some(EventStatus::Delivered)),
            &["evt_01"],
        ),
        (
            "route",
            with(&|f| f.base.route = Some("r2".into())),
            &["evt_02"],
        ),
        (
            "destination",
            with(&|f| f.base.destination = Some("a".into())),
            &["evt_03", "evt_01"],
        ),
        (
            "event type",
            with(&|f| f.event_type = Some("push".into())),
            &["evt_02"],
        ),
        (
            "an id prefix",
            with(&|f| f.search = Some("evt_0".into())),
            &["evt_03", "evt_02", "evt_01"],
        ),
        (
            "a whole id",
            with(&|f| f.search = Some(" evt_02 ".into())),
            &["evt_02"],
        ),
        (
            "a provider id",
            with(&|f| f.search = Some("prov-1".into())),
            &["evt_01"],
        ),
        (
            "a message id of a split webhook",
            with(&|f| f.search = Some("prov-2.1".into())),
            &["evt_02"],
        ),
        (
            "the message id of an event without a provider id",
            with(&|f| f.search = Some("evt_03.1".into())),
            &["evt_03"],
        ),
        (
            "no such id",
            with(&|f| f.search = Some("prov-".into())),
            &[],
        ),
        (
            "the confirmed set",
            with(&|f| f.max_id = Some("evt_02".into())),
            &["evt_02", "evt_01"],
        ),
        (
            "route and status together",
            with(&|f| {
                f.base.route = Some("r".into());
                f.base.status = Some(EventStatus::Pending);
            }),
            &["evt_03"],
        ),
    ];
    for (what, filter, want) in cases {
        assert_eq!(ids(filter).await, want, "{what}");
    }

    // Pages: newest first, the cursor carries on, the last page has none.
    let first = store.console_list(all.clone(), 2, None).await.unwrap();
    let got: Vec<&str> = first.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ["evt_03", "evt_02"]);
    let second = store
        .console_list(all.clone(), 2, Some(first.next.expect("a second page")))
        .await
        .unwrap();
    let got: Vec<&str> = second.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((got, second.next), (vec!["evt_01"], None));
    let e2 = &first.events[1];
    assert_eq!(
        (
            e2.route.as_str(),
            e2.status,
            e2.source_id.as_deref(),
            e2.event_type.as_deref()
        ),
        ("r2", EventStatus::Dead, Some("prov-2"), Some("push"))
    );

    // Counts by status ignore the filter's status.
    let counts = |filter| store.count_by_status(filter);
    let every = StatusCounts {
        pending: 1,
        delivered: 1,
        dead: 1,
    };
    assert_eq!(counts(all.clone()).await.unwrap(), every);
    let route_r = with(&|f| {
        f.base.route = Some("r".into());
        f.base.status = Some(EventStatus::Dead);
    });
    assert_eq!(
        counts(route_r).await.unwrap(),
        StatusCounts { dead: 0, ..every }
    );

    // The inbound request, when it was kept.
    assert_eq!(store.inbound("evt_01".into()).await.unwrap(), Some(inbound));
    assert_eq!(store.inbound("evt_03".into()).await.unwrap(), None);
    assert_eq!(store.inbound("evt_none".into()).await.unwrap(), None);

    // What waits: evt_03's two deliveries.
    let received = store
        .get("evt_03".into())
        .await
        .unwrap()
        .unwrap()
        .summary
        .received_at_ms;
    let backlog = store.backlog().await.unwrap();
    let got: Vec<(&str, u64, Option<u64>)> = backlog
        .iter()
        .map(|b| (b.destination.as_str(), b.pending, b.oldest_pending_ms))
        .collect();
    assert_eq!(got, [("a", 1, Some(received)), ("b", 1, Some(received))]);
    let by_state = store
        .parked_deliveries(vec!["b".into(), "a".into(), "zzz".into()])
        .await
        .unwrap();
    assert_eq!(
        by_state,
        [
            (
                "b".to_owned(),
                ParkedDeliveries {
                    pending: 1,
                    parked: 0,
                    dead: 2
                }
            ),
            (
                "a".to_owned(),
                ParkedDeliveries {
                    pending: 1,
                    parked: 0,
                    dead: 0
                }
            ),
            ("zzz".to_owned(), ParkedDeliveries::default()),
        ],
        "in the order asked"
    );
}

/// The console's replay of one delivery: a finished one (delivered or
/// dead) is due again at once with a fresh retry budget and its attempts
/// kept; one in flight, one parked for a disabled subscription, one named
/// with another event's id and one that does not exist are left alone.
pub async fn one_delivery_is_replayed_unless_it_is_in_flight_parked_or_another_events(store: S) {
    insert_one(&*store, "evt_1", None, &["a", "b"]).await;
    insert_one(&*store, "evt_2", None, &["a"]).await;
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 3);
    let find = |event: &str, dest: &str| {
        due.iter()
            .find(|d| d.event_id == event && d.destination == dest)
            .unwrap()
            .clone()
    };
    let (dead, delivered, in_flight) = (find("evt_1", "a"), find("evt_1", "b"), find("evt_2", "a"));
    // A retried attempt first, so the budget has something to reset.
    record(
        &store,
        &dead,
        500,
        NextState::Retry {
            after: Duration::ZERO,
        },
    )
    .await;
    let again = claim_until(&store, 1, Duration::from_secs(5)).await;
    assert_eq!((again.len(), again[0].retries), (1, 1), "{again:?}");
    record(
        &store,
        &again[0],
        500,
        NextState::Dead { reason: "x".into() },
    )
    .await;
    record(&store, &delivered, 200, NextState::Delivered).await;
    assert_eq!(status(&store, "evt_1").await, EventStatus::Dead);

    let replay = |event: &str, id: i64| store.replay_delivery(event.into(), id);
    assert!(!replay("evt_2", in_flight.id).await.unwrap(), "in flight");
    assert!(
        !replay("evt_2", dead.id).await.unwrap(),
        "another event's delivery"
    );
    assert!(
        !replay("evt_1", i64::MAX).await.unwrap(),
        "no such delivery"
    );
    assert_eq!(
        status(&store, "evt_1").await,
        EventStatus::Dead,
        "nothing changed"
    );

    assert!(replay("evt_1", dead.id).await.unwrap(), "a dead delivery");
    assert!(
        replay("evt_1", delivered.id).await.unwrap(),
        "a delivered one"
    );
    assert_eq!(status(&store, "evt_1").await, EventStatus::Pending);
    let mut replayed = claim_until(&store, 2, Duration::from_secs(5)).await;
    replayed.sort_by_key(|d| d.id);
    let got: Vec<(i64, u32, u32)> = replayed
        .iter()
        .map(|d| (d.id, d.attempts, d.retries))
        .collect();
    let mut want = vec![(dead.id, 2, 0), (delivered.id, 1, 0)];
    want.sort_unstable();
    assert_eq!(got, want, "due at once, attempts kept, retries from 0");

    // A delivery parked for a disabled subscription waits for it.
    disabled_subscriptions(&*store, &["wh_off"]).await;
    store.insert(publish("evt_3", "A"), opts()).await.unwrap();
    let parked = store.parked("wh_off".into(), 10).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        !replay("evt_3", parked[0].delivery_id).await.unwrap(),
        "parked"
    );
    assert_eq!(store.parked("wh_off".into(), 10).await.unwrap().len(), 1);
}

/// A message id a transform set, unlike the provider's id and the event's
/// (the ids the pipeline gives), is the `webhook-id` its destination saw:
/// the console's search finds the event by it, exactly.
pub async fn the_search_finds_message_ids_a_transform_chose(store: S) {
    let mut one = event("evt_1", Some("prov-1"), &["a"]);
    one.messages[0].message.id = Some("custom-77".into());
    let split = split("evt_2", None, &[("batch.0", "a"), ("batch.1", "a")]);
    for e in [one, split] {
        assert!(matches!(
            store.insert(e, opts()).await.unwrap(),
            Inserted::New { .. }
        ));
    }
    let search = async |q: &str| -> Vec<String> {
        let filter = ConsoleFilter {
            search: Some(q.into()),
            ..Default::default()
        };
        let page = store.console_list(filter, 10, None).await.unwrap();
        page.events.into_iter().map(|e| e.id).collect()
    };
    assert_eq!(search("custom-77").await, ["evt_1"]);
    assert_eq!(search("prov-1").await, ["evt_1"], "the provider's id too");
    assert_eq!(search("batch.1").await, ["evt_2"]);
    assert!(search("custom-7").await.is_empty(), "exact, not a prefix");
    assert!(search("batch").await.is_empty(), "no message has that id");
}

pub async fn subscription_patches_change_only_what_they_name(store: S) {
    let created = store
        .create_subscription(subscription("wh_1", "t1", "g1", &["*"]))
        .await
        .unwrap();
    assert!(created.created_at_ms > 0, "set by the store");
    // The subscription is disabled by delivery health...
    assert_eq!(
        store
            .subscription_outcome("wh_1".into(), AttemptHealth::Gone, LONG)
            .await
            .unwrap(),
        SubscriptionHealth::Disabled
    );
    // ...while its owner changes the callback: the disable stays.
    let patched = store
        .update_subscription(
            "t1".into(),
            "wh_1".into(),
            SubscriptionPatch {
                callback_url: Some("https://example.invalid/new".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(patched.callback_url, "https://example.invalid/new");
    assert!(!patched.active, "a patch does not undo a disable");
    assert!(patched.disabled_reason.is_some());
    assert_eq!(patched.secret, "whsec_x", "untouched fields stay");
    // Another tenant can neither see nor change it.
    assert!(
        store
            .update_subscription(
                "t2".into(),
                "wh_1".into(),
                SubscriptionPatch {
                    active: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_subscription(Some("t2".into()), "wh_1".into())
            .await
            .unwrap()
            .is_none()
    );
    // Re-enabling clears the reason and the streak.
    let enabled = store
        .update_subscription(
            "t1".into(),
            "wh_1".into(),
            SubscriptionPatch {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.active);
    assert_eq!(enabled.disabled_reason, None);
    assert_eq!(enabled.failing_since_ms, None);
    assert_eq!(enabled.callback_url, "https://example.invalid/new");
    let listed = store
        .list_subscriptions("t1".into(), Some("g1".into()), None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        store
            .delete_subscription("t1".into(), "wh_1".into())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_subscription("t1".into(), "wh_1".into())
            .await
            .unwrap()
    );
}

pub async fn health_disables_after_the_streak_on_gone_or_exhausted(store: S) {
    for id in ["wh_streak", "wh_gone", "wh_exhausted"] {
        store
            .create_subscription(subscription(id, "t", "g", &["*"]))
            .await
            .unwrap();
    }
    let after = Duration::from_millis(200);
    let outcome = |id: &str, o| {
        let store = store.clone();
        let id = id.to_owned();
        async move { store.subscription_outcome(id, o, after).await.unwrap() }
    };
    assert_eq!(
        outcome("wh_streak", AttemptHealth::Failure).await,
        SubscriptionHealth::Active
    );
    let s = store
        .get_subscription(None, "wh_streak".into())
        .await
        .unwrap()
        .unwrap();
    assert!(s.failing_since_ms.is_some());
    // A success clears the streak, so the next failure starts a new one.
    assert_eq!(
        outcome("wh_streak", AttemptHealth::Success).await,
        SubscriptionHealth::Active
    );
    tokio::time::sleep(after + Duration::from_millis(50)).await;
    assert_eq!(
        outcome("wh_streak", AttemptHealth::Failure).await,
        SubscriptionHealth::Active,
        "a fresh streak"
    );
    tokio::time::sleep(after + Duration::from_millis(50)).await;
    assert_eq!(
        outcome("wh_streak", AttemptHealth::Failure).await,
        SubscriptionHealth::Disabled
    );
    assert_eq!(
        outcome("wh_streak", AttemptHealth::Failure).await,
        SubscriptionHealth::Active,
        "disabled once: already inactive"
    );
    assert_eq!(
        outcome("wh_gone", AttemptHealth::Gone).await,
        SubscriptionHealth::Disabled
    );
    assert_eq!(
        outcome("wh_exhausted", AttemptHealth::Exhausted).await,
        SubscriptionHealth::Disabled
    );
    let s = store
        .get_subscription(None, "wh_gone".into())
        .await
        .unwrap()
        .unwrap();
    assert!(!s.active);
    assert!(s.disabled_reason.unwrap().contains("410"));
}

pub async fn postponing_uses_no_retry_and_counts_no_attempt(store: S) {
    insert_one(&*store, "evt_1", None, &["gone-from-config"]).await;
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    store
        .record(AttemptRecord {
            error: Some("destination not configured".into()),
            status: None,
            ..attempt(&due[0], 0, NextState::Postpone { after: SHORT })
        })
        .await
        .unwrap();
    let next = store.next_due_in().await.unwrap().expect("still pending");
    assert!(next <= SHORT, "{next:?}");
    let again = claim_until(&store, 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, again[0].retries), (0, 0));
    let e = store.get("evt_1".into()).await.unwrap().unwrap();
    assert_eq!(
        e.deliveries[0].last_error.as_deref(),
        Some("destination not configured")
    );
}

/// A reload that brings destination `back` into the config again makes
/// what waits for it due at once, across batches: not its delivery in
/// flight (still held), not its finished ones, not another
/// destination's; retry counts stay as they were.
pub async fn hastening_makes_only_a_destinations_waiting_deliveries_due(store: S) {
    const N: usize = 1_100;
    for i in 0..N {
        insert_one(&*store, &format!("evt_{i:05}"), None, &["back"]).await;
    }
    insert_one(&*store, "evt_other", None, &["other"]).await;
    insert_one(&*store, "evt_flight", None, &["back"]).await;
    insert_one(&*store, "evt_done", None, &["back"]).await;
    let due = claim_until(&store, N + 3, Duration::from_secs(10)).await;
    assert_eq!(due.len(), N + 3);
    let mut in_flight = None;
    for d in &due {
        let next = match d.event_id.as_str() {
            "evt_flight" => {
                in_flight = Some(d.id);
                continue;
            }
            "evt_done" => NextState::Delivered,
            // One retry counted, waiting its backoff.
            "evt_00000" => NextState::Retry { after: LONG },
            _ => NextState::Postpone { after: LONG },
        };
        assert_eq!(record(&store, d, 0, next).await, Recorded::Written);
    }
    assert!(nothing_due(&store).await);

    let n = store.hasten(vec!["back".into()]).await.unwrap();
    assert_eq!(
        n as usize, N,
        "every waiting delivery to `back`, and only those"
    );
    let again = claim_until(&store, N, Duration::from_secs(10)).await;
    assert_eq!(again.len(), N);
    assert!(again.iter().all(|d| d.destination == "back"));
    assert!(
        again.iter().all(|d| Some(d.id) != in_flight),
        "held stays held"
    );
    let first = again.iter().find(|d| d.event_id == "evt_00000").unwrap();
    assert_eq!(first.retries, 1, "the retry count is kept");
    assert!(
        again
            .iter()
            .filter(|d| d.event_id != "evt_00000")
            .all(|d| d.retries == 0),
        "postponed deliveries counted no retry"
    );
    assert_eq!(status(&store, "evt_done").await, EventStatus::Delivered);
    // `other` still waits its time; nothing is left to hasten for `back`.
    assert!(nothing_due(&store).await);
    assert!(store.next_due_in().await.unwrap().unwrap() > LONG / 2);
    assert_eq!(
        store
            .hasten(vec!["back".into(), "nowhere".into()])
            .await
            .unwrap(),
        0
    );
}

pub async fn pages_are_newest_first_with_a_cursor_and_filters(store: S) {
    for i in 0..5 {
        insert_one(&*store, &format!("evt_{i}"), None, &[]).await;
    }
    let mut routed = event("evt_9", None, &["d"]);
    routed.route = "other".into();
    store.insert(routed, opts()).await.unwrap();
    let f = EventFilter {
        route: Some("r".into()),
        ..Default::default()
    };
    let p1 = store.list(f.clone(), 2, None).await.unwrap();
    assert_eq!(
        p1.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["evt_4", "evt_3"]
    );
    let p2 = store.list(f.clone(), 2, p1.next).await.unwrap();
    assert_eq!(
        p2.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["evt_2", "evt_1"]
    );
    let p3 = store.list(f, 2, p2.next).await.unwrap();
    assert_eq!(p3.events.len(), 1);
    assert!(p3.next.is_none());
    let pending = store
        .list(
            EventFilter {
                status: Some(EventStatus::Pending),
                destination: Some("d".into()),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(pending.events.len(), 1);
    assert_eq!(pending.events[0].id, "evt_9");
}

pub(crate) fn publish(id: &str, event_type: &str) -> NewEvent {
    let mut e = event(id, None, &[]);
    e.fanout.push(Fanout {
        tenant: Some("t".into()),
        object_type: "Group".into(),
        object_id: "g".into(),
        event_type: event_type.into(),
        envelope: Message::json(Some(event_type), &serde_json::json!({"id": id})),
    });
    e
}

pub async fn a_disabled_subscription_parks_its_deliveries_until_it_is_enabled(store: S) {
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    // One delivery is due when the subscription gets disabled: its attempt
    // parks it.
    store.insert(publish("evt_0", "A"), opts()).await.unwrap();
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1);
    set_active(&*store, "wh_1", false).await;
    assert_eq!(
        store
            .record(AttemptRecord {
                status: None,
                ..attempt(
                    &due[0],
                    0,
                    NextState::Park {
                        reason: "disabled".into(),
                        attempted: false,
                    }
                )
            })
            .await
            .unwrap(),
        Recorded::Written
    );
    // Events published while it is off are kept for it, not dropped.
    for i in 1..=3 {
        let Inserted::New { deliveries, .. } = store
            .insert(publish(&format!("evt_{i}"), "A"), opts())
            .await
            .unwrap()
        else {
            panic!("new")
        };
        assert_eq!(deliveries, 1);
    }
    assert!(
        store
            .claim_due(10, LONG, Vec::new())
            .await
            .unwrap()
            .is_empty(),
        "parked deliveries are not due"
    );
    assert_eq!(status(&store, "evt_2").await, EventStatus::Pending);
    // A replay leaves a parked delivery parked, in its place: it is sent
    // when the subscription is enabled again.
    assert_eq!(
        store
            .replay(
                ReplayTarget::Event {
                    id: "evt_1".into(),
                    destination: None,
                },
                None
            )
            .await
            .unwrap(),
        0
    );
    let parked = store.parked("wh_1".into(), 10).await.unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|p| p.event_id.as_str())
            .collect::<Vec<_>>(),
        ["evt_0", "evt_1", "evt_2", "evt_3"]
    );
    let kept = Retention {
        delivered: Duration::ZERO,
        dead: Duration::ZERO,
    };
    store.prune(kept).await.unwrap();
    assert!(
        store.get("evt_1".into()).await.unwrap().is_some(),
        "parked events are not pruned"
    );
    // Enabled again: everything parked is due, oldest first.
    set_active(&*store, "wh_1", true).await;
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    let mut order = Vec::new();
    for _ in 0..4 {
        let one = store.claim_due(1, LONG, Vec::new()).await.unwrap();
        assert_eq!(one.len(), 1);
        order.push(one[0].event_id.clone());
    }
    assert_eq!(order, ["evt_0", "evt_1", "evt_2", "evt_3"]);
}

/// An attempt decides to park on what it read of the subscription; the
/// owner may have re-enabled it (or deleted it) since. The store settles
/// the park against the subscription as it is when the outcome is written,
/// in the same transaction, so the re-enable's requeue and the park cannot
/// miss each other and leave a delivery parked under an active
/// subscription.
pub async fn a_park_is_settled_against_the_subscription_as_it_is_when_written(store: S) {
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    store.insert(publish("evt_0", "A"), opts()).await.unwrap();
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1);
    // Read as disabled, active by the time the outcome is written: due
    // again at once with a fresh budget, as a re-enable would make it.
    assert_eq!(
        store.record(park(&due[0])).await.unwrap(),
        Recorded::Written
    );
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    let again = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(again.len(), 1, "due again, not parked");
    assert_eq!(again[0].retries, 0);
    assert_eq!(status(&store, "evt_0").await, EventStatus::Pending);
    // Still disabled when written: parked.
    set_active(&*store, "wh_1", false).await;
    assert_eq!(
        store.record(park(&again[0])).await.unwrap(),
        Recorded::Written
    );
    assert_eq!(store.parked("wh_1".into(), 10).await.unwrap().len(), 1);
    // Re-enabled, claimed, and deleted before the park is written: dead,
    // since nothing could ever send it.
    set_active(&*store, "wh_1", true).await;
    let third = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(third.len(), 1);
    assert!(
        store
            .delete_subscription("t".into(), "wh_1".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store.record(park(&third[0])).await.unwrap(),
        Recorded::Written
    );
    assert_eq!(status(&store, "evt_0").await, EventStatus::Dead);
}

/// The attempt whose failure disabled the subscription is parked with it,
/// and counted and kept like any attempt (it was made); a park decided
/// before sending counts nothing.
pub async fn a_park_after_an_attempt_counts_the_attempt(store: S) {
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    store.insert(publish("evt_0", "A"), opts()).await.unwrap();
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 1);
    set_active(&*store, "wh_1", false).await;
    let failed = attempt(
        &due[0],
        500,
        NextState::Park {
            reason: "parked: this failure disabled the subscription".into(),
            attempted: true,
        },
    );
    assert_eq!(store.record(failed).await.unwrap(), Recorded::Written);
    assert_eq!(store.parked("wh_1".into(), 10).await.unwrap().len(), 1);
    let detail = store.get("evt_0".into()).await.unwrap().unwrap();
    let d = &detail.deliveries[0];
    assert_eq!(d.attempts_made, 1, "{d:?}");
    assert_eq!(d.attempts.len(), 1, "{d:?}");
    assert_eq!(d.attempts[0].status, Some(500));
    // Re-enabled: sent again; the park before sending adds nothing.
    set_active(&*store, "wh_1", true).await;
    let again = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    set_active(&*store, "wh_1", false).await;
    assert_eq!(
        store.record(park(&again[0])).await.unwrap(),
        Recorded::Written
    );
    let detail = store.get("evt_0".into()).await.unwrap().unwrap();
    assert_eq!(detail.deliveries[0].attempts_made, 1);
    assert_eq!(detail.deliveries[0].attempts.len(), 1);
}

/// Parked deliveries keep their place when the subscription is enabled
/// again, ahead of events published while the re-enable's batches run: a
/// batch made due at its own "now" let newer events overtake the batches
/// after it.
pub async fn a_re_enable_keeps_parked_deliveries_ahead_of_new_ones(store: S) {
    const PARKED: usize = 1_500;
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    set_active(&*store, "wh_1", false).await;
    publish_many(&store, "evt_a", PARKED).await;
    let enabling = {
        let store = store.clone();
        tokio::spawn(async move { set_active(&*store, "wh_1", true).await })
    };
    let mut newer = 0;
    while !enabling.is_finished() {
        store
            .insert(publish(&format!("evt_b{newer:05}"), "A"), opts())
            .await
            .unwrap();
        newer += 1;
    }
    enabling.await.unwrap();
    store.insert(publish("evt_c", "A"), opts()).await.unwrap();
    let first = store.claim_due(PARKED, LONG, Vec::new()).await.unwrap();
    let overtaking: Vec<&str> = first
        .iter()
        .map(|d| d.event_id.as_str())
        .filter(|e| !e.starts_with("evt_a"))
        .collect();
    assert!(
        overtaking.is_empty(),
        "newer events claimed before older parked ones ({newer} published during the re-enable): {overtaking:?}"
    );
}

/// A re-enable and a delete settle every delivery waiting for the
/// subscription, however many batches that takes (each its own writer
/// operation or transaction, so ingest is never held up for all of them).
pub async fn re_enabling_and_deleting_settle_more_than_a_batch(store: S) {
    const N: usize = 1_100;
    store
        .create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    set_active(&*store, "wh_1", false).await;
    publish_many(&store, "evt_a", N).await;
    assert_eq!(store.parked("wh_1".into(), 2 * N).await.unwrap().len(), N);
    set_active(&*store, "wh_1", true).await;
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    let due = store.claim_due(2 * N, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), N, "every parked delivery is due again");
    assert_eq!(due[0].event_id, "evt_a00000", "oldest first");
    for d in &due {
        assert!(store.release(d.id, d.lease).await.unwrap());
    }
    // Disabled again: N more park; then deleted with N pending and N parked.
    set_active(&*store, "wh_1", false).await;
    publish_many(&store, "evt_b", N).await;
    assert!(
        store
            .delete_subscription("t".into(), "wh_1".into())
            .await
            .unwrap()
    );
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    assert!(nothing_due(&store).await);
    for id in ["evt_a00000", "evt_a01099", "evt_b00000", "evt_b01099"] {
        assert_eq!(status(&store, id).await, EventStatus::Dead, "{id}");
    }
}

/// The race behind the case above, run both ways at once: an attempt that
/// read the subscription disabled records its park while the owner
/// re-enables it. Whichever commits first, nothing stays parked under the
/// enabled subscription.
pub async fn a_re_enable_racing_a_park_leaves_nothing_parked(store: S) {
    for round in 0..40 {
        let sub = format!("wh_{round}");
        let mut s = subscription(&sub, "t", &format!("g{round}"), &["*"]);
        s.active = true;
        store.create_subscription(s).await.unwrap();
        let mut e = publish(&format!("evt_{round}"), "A");
        e.fanout[0].object_id = format!("g{round}");
        store.insert(e, opts()).await.unwrap();
        let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
        assert_eq!(due.len(), 1);
        set_active(&*store, &sub, false).await;
        let parked = park(&due[0]);
        let (a, b) = (store.clone(), store.clone());
        let enable = sub.clone();
        // Both at once, spawned so that either may reach the store first,
        // within a deadline (a lock-order deadlock between the two would
        // otherwise hang here).
        let (recorded, enabled) = tokio::time::timeout(Duration::from_secs(30), async move {
            tokio::join!(
                tokio::spawn(async move { a.record(parked).await }),
                tokio::spawn(async move { set_active(&*b, &enable, true).await }),
            )
        })
        .await
        .expect("the park and the re-enable both finish");
        assert_eq!(recorded.unwrap().unwrap(), Recorded::Written);
        enabled.unwrap();
        assert!(
            store.parked(sub.clone(), 10).await.unwrap().is_empty(),
            "round {round}: parked under an enabled subscription"
        );
        assert_eq!(
            claim_until(&store, 1, Duration::from_secs(10)).await.len(),
            1,
            "round {round}: due again"
        );
    }
}

/// A deleted subscription cannot be enabled again, so what it had parked,
/// and what waits for a retry, is dead-lettered with the delete: otherwise
/// it would wait forever, its events never finished and never pruned. A
/// delivery in flight is left to its attempt, which finds the subscription
/// gone.
pub async fn deleting_a_subscription_dead_letters_what_waits_for_it(store: S) {
    for id in ["wh_1", "wh_2"] {
        store
            .create_subscription(subscription(id, "t", "g", &["*"]))
            .await
            .unwrap();
    }
    store.insert(publish("evt_0", "A"), opts()).await.unwrap();
    // evt_0: one delivery each; wh_1's is claimed (in flight) and wh_2's
    // is waiting for a retry.
    let due = store.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(due.len(), 2);
    let (to_1, to_2): (Vec<_>, Vec<_>) = due.iter().partition(|d| d.destination == "sub:wh_1");
    assert_eq!(
        record(&store, to_2[0], 500, NextState::Retry { after: LONG }).await,
        Recorded::Written
    );
    set_active(&*store, "wh_1", false).await;
    // evt_1: parked for wh_1 (disabled), due for wh_2.
    store.insert(publish("evt_1", "A"), opts()).await.unwrap();
    assert_eq!(store.parked("wh_1".into(), 10).await.unwrap().len(), 1);

    assert!(
        store
            .delete_subscription("t".into(), "wh_1".into())
            .await
            .unwrap()
    );
    assert!(store.parked("wh_1".into(), 10).await.unwrap().is_empty());
    let to_deleted = delivery_to(&*store, "evt_1", "sub:wh_1").await;
    assert_eq!(to_deleted.state, EventStatus::Dead);
    assert_eq!(
        to_deleted.last_error.as_deref(),
        Some(crate::store::SUBSCRIPTION_DELETED)
    );
    // The one in flight is left to its attempt (its record still lands).
    assert_eq!(
        record(&store, to_1[0], 200, NextState::Delivered).await,
        Recorded::Written
    );
    assert!(
        store
            .delete_subscription("t".into(), "wh_2".into())
            .await
            .unwrap()
    );
    // Nothing waits any more: evt_1 is dead, evt_0 dead (wh_2's retry),
    // and retention prunes both.
    assert_eq!(status(&store, "evt_0").await, EventStatus::Dead);
    assert_eq!(status(&store, "evt_1").await, EventStatus::Dead);
    // Pruning takes what was received before now (ms).
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .prune(Retention {
            delivered: Duration::ZERO,
            dead: Duration::ZERO,
        })
        .await
        .unwrap();
    assert!(store.get("evt_0".into()).await.unwrap().is_none());
    assert!(store.get("evt_1".into()).await.unwrap().is_none());
}

// ---- Shared engines: two stores (two gateways) on one database ----------
// Not part of `suite!`: only an engine several processes share runs them,
// each case getting two stores opened separately on the same database.

/// A gateway crashes mid-attempt: nothing is released, its lease runs out
/// and the other gateway claims the delivery; the dead one's late record is
/// refused.
pub async fn a_crashed_gateways_leases_run_out_and_another_reclaims(a: S, b: S) {
    insert_one(&*a, "evt_1", None, &["d"]).await;
    let held = a.claim_due(10, SHORT, Vec::new()).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        b.claim_due(10, LONG, Vec::new()).await.unwrap().is_empty(),
        "held by the other gateway"
    );
    drop(a);
    let taken = claim_until(&b, 1, Duration::from_secs(5)).await;
    assert_eq!(taken.len(), 1, "reclaimed after the lease ran out");
    assert_eq!(taken[0].event_id, "evt_1");
    assert_eq!(
        b.record(attempt(&held[0], 200, NextState::Delivered))
            .await
            .unwrap(),
        Recorded::LeaseLost,
        "the first claim's token is stale"
    );
    assert_eq!(
        b.record(attempt(&taken[0], 200, NextState::Delivered))
            .await
            .unwrap(),
        Recorded::Written
    );
    assert_eq!(status(&b, "evt_1").await, EventStatus::Delivered);
}

/// Opening a store (a gateway starting) leaves the claims of the gateways
/// already running alone. `open` opens another store on the same database.
pub async fn opening_a_store_leaves_other_gateways_claims_alone<F, Fut>(a: S, open: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    insert_one(&*a, "evt_1", None, &["d"]).await;
    assert_eq!(a.claim_due(10, LONG, Vec::new()).await.unwrap().len(), 1);
    let b = open().await;
    assert!(
        b.claim_due(10, LONG, Vec::new()).await.unwrap().is_empty(),
        "still held by the running gateway"
    );
}

/// The same provider delivery sent to two gateways at once is stored once.
pub async fn dedup_holds_across_gateways(a: S, b: S) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .insert(event(&format!("evt_{i:02}"), Some("gh-1"), &["d"]), opts())
                .await
        }));
    }
    let mut new = 0;
    for t in tasks {
        if let Inserted::New { .. } = t.await.unwrap().unwrap() {
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one gateway stored it");
}

/// Two gateways claiming at once never get the same delivery, and together
/// they get them all.
pub async fn concurrent_claims_never_overlap(a: S, b: S) {
    for i in 0..200 {
        insert_one(&*a, &format!("evt_{i:03}"), None, &["d"]).await;
    }
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim_due(7, LONG, Vec::new()).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no delivery claimed twice");
    assert_eq!(unique.len(), 200, "every delivery claimed");
}

/// Deliveries of one event finished by two gateways at the same moment
/// leave the event's status right.
pub async fn an_event_finished_by_two_gateways_at_once_is_finished(a: S, b: S) {
    for i in 0..20 {
        insert_one(&*a, &format!("evt_{i:02}"), None, &["x", "y"]).await;
    }
    let due = claim_until(&a, 40, Duration::from_secs(5)).await;
    assert_eq!(due.len(), 40);
    let mut tasks = Vec::new();
    for d in due {
        let store = if d.destination == "x" {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            record(&store, &d, 200, NextState::Delivered).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Recorded::Written);
    }
    for i in 0..20 {
        assert_eq!(
            status(&b, &format!("evt_{i:02}")).await,
            EventStatus::Delivered,
            "evt_{i:02}"
        );
    }
}

/// A subscription disabled through one gateway is disabled for the other
/// at once, and enabling it through the other sends what was parked.
pub async fn subscription_state_is_shared(a: S, b: S) {
    a.create_subscription(subscription("wh_1", "t", "g", &["*"]))
        .await
        .unwrap();
    b.update_subscription(
        "t".into(),
        "wh_1".into(),
        SubscriptionPatch {
            active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    let seen = a
        .get_subscription(None, "wh_1".into())
        .await
        .unwrap()
        .unwrap();
    assert!(!seen.active, "disabled for the other gateway at once");
    a.insert(publish("evt_1", "A"), opts()).await.unwrap();
    assert_eq!(b.parked("wh_1".into(), 10).await.unwrap().len(), 1);
    a.update_subscription(
        "t".into(),
        "wh_1".into(),
        SubscriptionPatch {
            active: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(claim_until(&b, 1, Duration::from_secs(5)).await.len(), 1);
    // Health: a streak of failures seen by either gateway disables once.
    a.subscription_outcome("wh_1".into(), AttemptHealth::Failure, LONG)
        .await
        .unwrap();
    assert_eq!(
        b.subscription_outcome("wh_1".into(), AttemptHealth::Gone, LONG)
            .await
            .unwrap(),
        SubscriptionHealth::Disabled
    );
    assert_eq!(
        a.subscription_outcome("wh_1".into(), AttemptHealth::Gone, LONG)
            .await
            .unwrap(),
        SubscriptionHealth::Active,
        "already disabled: not disabled twice"
    );
}

/// Work made due by one gateway (here a release) wakes the other's
/// dispatcher through the store's hook.
pub async fn due_work_wakes_the_other_gateway(a: S, b: S) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    b.on_due(Arc::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    }));
    insert_one(&*a, "evt_1", None, &["d"]).await;
    let mut held = a.claim_due(10, LONG, Vec::new()).await.unwrap();
    assert_eq!(held.len(), 1);
    // The listener may still be connecting: release until one release is
    // heard. Counted, not a `Notify` permit: the insert's own announcement
    // (or another test's) must not pass for the release's.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // What was announced before this release has arrived by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = woken.load(Ordering::SeqCst);
        let d = held.pop().expect("a claimed delivery");
        a.release(d.id, d.lease).await.unwrap();
        let heard = Instant::now() + Duration::from_millis(500);
        while Instant::now() < heard && woken.load(Ordering::SeqCst) == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if woken.load(Ordering::SeqCst) > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the other gateway was never woken"
        );
        held = claim_until(&a, 1, Duration::from_secs(1)).await;
    }
}

/// An insert whose only unclaimed deliveries are to `held` (paused)
/// destinations wakes no gateway: nobody would claim them. One that also
/// leaves another destination's delivery due wakes the other gateway.
pub async fn deliveries_left_to_a_held_destination_wake_no_gateway(a: S, b: S) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    b.on_due(Arc::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    }));
    // The listener may still be connecting: insert until one is heard.
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        insert_one(&*a, &format!("evt_warm_{n}"), None, &["open"]).await;
        let heard = Instant::now() + Duration::from_millis(500);
        while Instant::now() < heard && woken.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if woken.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other gateway was never woken"
        );
    }
    let held = |id: &str, dests: &[&str]| {
        let opts = InsertOptions {
            claim: Some(ClaimNew {
                lease: LONG,
                destinations: Vec::new(),
                subscribers: false,
                full: Vec::new(),
                held: vec!["paused".into()],
            }),
            ..opts()
        };
        (event(id, None, dests), opts)
    };
    // What was announced before has arrived by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = woken.load(Ordering::SeqCst);
    let (e, o) = held("evt_paused", &["paused"]);
    assert!(matches!(a.insert(e, o).await, Ok(Inserted::New { .. })));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        woken.load(Ordering::SeqCst),
        before,
        "a delivery to a held destination woke a gateway"
    );
    let (e, o) = held("evt_both", &["paused", "open"]);
    assert!(matches!(a.insert(e, o).await, Ok(Inserted::New { .. })));
    let heard = Instant::now() + Duration::from_secs(5);
    while woken.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < heard,
            "a due delivery to `open` woke nobody"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Both stored and due all the same: held is about waking, not storing.
    // (One claim takes every due delivery: the warm-up's few and these.)
    let due = claim_until(&b, 3, Duration::from_secs(5)).await;
    let paused = due.iter().filter(|d| d.destination == "paused").count();
    assert_eq!(paused, 2, "{due:?}");
}

/// A dead letter replayed through one gateway is sent by the other, and
/// the event's status follows for both.
pub async fn a_replay_through_one_gateway_is_sent_by_the_other(a: S, b: S) {
    insert_one(&*a, "evt_1", None, &["d"]).await;
    let due = a.claim_due(10, LONG, Vec::new()).await.unwrap();
    let dead = NextState::Dead {
        reason: "gone".into(),
    };
    assert_eq!(
        a.record(attempt(&due[0], 410, dead)).await.unwrap(),
        Recorded::Written
    );
    assert_eq!(status(&b, "evt_1").await, EventStatus::Dead);
    let n = a
        .replay(
            ReplayTarget::Event {
                id: "evt_1".into(),
                destination: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(status(&b, "evt_1").await, EventStatus::Pending);
    let again = claim_until(&b, 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].retries, 0, "a fresh retry budget");
    assert_eq!(
        b.record(attempt(&again[0], 200, NextState::Delivered))
            .await
            .unwrap(),
        Recorded::Written
    );
    assert_eq!(status(&a, "evt_1").await, EventStatus::Delivered);
}
