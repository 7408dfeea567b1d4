//! Durable event storage: accepted events, their deliveries and every
//! delivery attempt, and the subscriptions of the sending side.
//!
//! [`Store`] is the boundary and the contract every engine keeps, whether
//! it is the only writer of an embedded file or one of many gateways on a
//! shared database:
//!
//! - **Leases.** A claimed delivery carries a [`LeaseToken`]. `record`,
//!   `renew` and `release` must present it; a stale token (the lease ran
//!   out and someone else claimed the delivery) is refused and the attempt's
//!   outcome is not written. Leases and retry waits are *durations*; the
//!   engine turns them into times with its own clock (the database's), never
//!   the caller's.
//! - **Dedup** is a unique key (`route`, provider id) with an expiry,
//!   written with insert-or-conflict: two concurrent inserts of the same
//!   provider delivery can never both be new.
//! - **Patches.** Subscription changes name the fields they change
//!   ([`SubscriptionPatch`]); health is one conditional update. Nothing
//!   reads a whole row and writes it back.
//! - **All or nothing.** An operation that fails leaves no partial writes
//!   (an event is never stored without its deliveries).
//!
//! Engines live beside the trait: [`sqlite`] (the embedded default, also
//! the `memory` engine on a scratch file), [`postgres`] (one database
//! shared by several gateways) and, in the conformance suite
//! (`conformance.rs`, built for tests), one set of tests every engine must
//! pass.
//!
//! Deliberately not here: HTTP, retry policy (delivery decides the next
//! state; the store records it) and anything about plugins.

#[cfg(test)]
pub mod conformance;
pub mod memory;
pub mod postgres;
pub mod sqlite;
pub mod stats;
mod subscription_columns;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::plugin::Message;

/// Deliveries to a subscription have destination `sub:<subscription id>`.
pub const SUBSCRIBER_PREFIX: &str = "sub:";

/// A replay that moves deliveries (`to`) leaves a subscriber's out: they
/// belong to their subscription. The condition on `d.destination`, the
/// same SQL in both engines; empty when the replay does not move.
pub(crate) fn movable_sql(moving: bool) -> &'static str {
    static CLAUSE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            " AND substr(d.destination, 1, {}) <> '{SUBSCRIBER_PREFIX}'",
            SUBSCRIBER_PREFIX.len()
        )
    });
    if moving { &CLAUSE } else { "" }
}

/// Why a delivery to a deleted subscription is dead (deleting it
/// dead-letters what waits for it; an attempt in flight finds it gone).
pub const SUBSCRIPTION_DELETED: &str = "the subscription was deleted";

/// Why a store operation failed. Engines map their own errors into it, so
/// no caller depends on an engine's error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store's writer is saturated; shed load.
    #[error("the store is overloaded")]
    Overloaded,
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The operation failed inside the engine (a bug); it was rolled back
    /// and the store goes on serving.
    #[error("internal store error: {0}")]
    Internal(String),
    /// Could not open or create the store.
    #[error("cannot open the store at {path}: {message}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
}

/// Proof of a claim: every write about a claimed delivery presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// A fresh random token.
    pub fn random() -> Self {
        LeaseToken(rand::random::<i64>())
    }
}

/// An accepted webhook, as ingress hands it over.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Gateway event id (`evt_…`, time-ordered).
    pub id: String,
    /// Route it arrived on.
    pub route: String,
    /// Provider delivery id, for duplicate detection.
    pub source_id: Option<String>,
    /// Arrival time, ms since the epoch.
    pub received_at_ms: u64,
    /// Messages and their destinations.
    pub messages: Vec<NewMessage>,
    /// Messages published to subscriptions.
    pub fanout: Vec<Fanout>,
    /// The inbound request, credentials redacted, for the console.
    pub inbound: Option<stats::InboundView>,
}

impl NewEvent {
    /// The deliveries it creates: one per named destination of each
    /// message, and one per subscription each fan-out reaches (`reached`,
    /// per fan-out, as the store resolved them).
    pub(crate) fn deliveries<T>(&self, reached: &[Vec<T>]) -> usize {
        self.messages
            .iter()
            .map(|m| m.destinations.len())
            .sum::<usize>()
            + reached.iter().map(Vec::len).sum::<usize>()
    }

    /// The type stored with the event: its first message's, or else its
    /// first fan-out's.
    pub(crate) fn event_type(&self) -> Option<String> {
        self.messages
            .first()
            .and_then(|m| m.message.event_type.clone())
            .or_else(|| self.fanout.first().map(|f| f.event_type.clone()))
    }

    /// Its stored status when it creates `deliveries`: finished at once
    /// when there are none.
    pub(crate) fn status(deliveries: usize) -> &'static str {
        if deliveries == 0 {
            "delivered"
        } else {
            "pending"
        }
    }
}

/// An event's messages in the order every engine stores and numbers them:
/// the named ones (`named`, each with its destinations), then each
/// fan-out's envelope (`fanout`) that `reached` (per fan-out, its
/// subscriptions as (id, active)) says reaches a subscription. Each comes
/// with its destinations as (name, active) and whether they are
/// subscribers. `M` is a message or a reference to one, so an engine that
/// keeps the event (SQLite's writer may apply an operation again) borrows
/// and one that consumes it moves.
pub(crate) fn stored_messages<M, D>(
    named: impl IntoIterator<Item = (M, D)>,
    fanout: impl IntoIterator<Item = M>,
    reached: Vec<Vec<(String, bool)>>,
) -> impl Iterator<Item = (M, Vec<(String, bool)>, bool)>
where
    D: IntoIterator<Item = String>,
{
    let named = named
        .into_iter()
        .map(|(m, dests)| (m, dests.into_iter().map(|d| (d, true)).collect(), false));
    let published = fanout
        .into_iter()
        .zip(reached)
        .filter(|(_, subs)| !subs.is_empty())
        .map(|(envelope, subs)| {
            let dests = subs
                .into_iter()
                .map(|(id, active)| (format!("{SUBSCRIBER_PREFIX}{id}"), active))
                .collect();
            (envelope, dests, true)
        });
    named.chain(published)
}

/// A message published to the matching subscriptions: expanded into one
/// delivery per subscription inside the insert's transaction, so a
/// subscription created after the commit never sees it and one deleted
/// before it never does. A matching subscription that is disabled (not
/// expired) gets its delivery parked: nothing is dropped while it is off.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Only this tenant's subscriptions (all tenants when `None`).
    pub tenant: Option<String>,
    /// Object type to match.
    pub object_type: String,
    /// Object id to match.
    pub object_id: String,
    /// Event type to match (`*` subscriptions match every type).
    pub event_type: String,
    /// The envelope sent to each subscriber (its `context` and
    /// `subscriptionId` are added when sending).
    pub envelope: Message,
}

/// One message of an event and the destinations it goes to.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message (with its id assigned).
    pub message: Message,
    /// Destination names.
    pub destinations: Vec<String>,
}

/// How an insert treats duplicates and whether it claims what it creates.
#[derive(Debug, Clone)]
pub struct InsertOptions {
    /// The same provider delivery id on the same route within this window
    /// is a duplicate.
    pub dedup_window: Duration,
    /// Claim some of the new deliveries in the insert's own transaction, so
    /// they go straight to the dispatcher instead of being found again by
    /// polling.
    pub claim: Option<ClaimNew>,
}

/// Which new deliveries an insert claims, and for how long.
#[derive(Debug, Clone)]
pub struct ClaimNew {
    /// Lease length (on the store's clock).
    pub lease: Duration,
    /// Named destinations to claim deliveries for.
    pub destinations: Vec<String>,
    /// Also claim the deliveries to subscriptions a fan-out creates.
    pub subscribers: bool,
    /// Subscriber destinations (`sub:<id>`) not to claim for although
    /// `subscribers` is set, sorted: their lanes are full, so a claim would
    /// only be handed back (a write per delivery) while the lane works
    /// through its queue. Their deliveries are stored due, for a poll.
    pub full: Vec<String>,
    /// Named destinations not claimed for whose deliveries need no wake:
    /// `paused:` ones, which no gateway claims until a reload resumes them.
    /// An insert that leaves only such deliveries unclaimed announces no
    /// due work (PostgreSQL's `NOTIFY`, which wakes every gateway's poller).
    pub held: Vec<String>,
}

impl ClaimNew {
    /// Whether a delivery to subscriber destination `dest` is claimed.
    pub fn claims_subscriber(&self, dest: &str) -> bool {
        self.subscribers
            && self
                .full
                .binary_search_by(|f| f.as_str().cmp(dest))
                .is_err()
    }

    /// Whether a new delivery to `dest` is claimed: it must be `active`
    /// (a parked one never is), and either to a named destination asked
    /// for, or a fan-out's (`to_subscriber`) to a subscriber whose lane is
    /// not full.
    pub fn claims(&self, dest: &str, active: bool, to_subscriber: bool) -> bool {
        active
            && ((to_subscriber && self.claims_subscriber(dest))
                || self.destinations.iter().any(|d| d == dest))
    }

    /// Whether a new delivery to `dest`, if not claimed, is due work to
    /// announce: it is `active` and not to a [`held`](Self::held)
    /// destination.
    pub fn announces(&self, dest: &str, active: bool, to_subscriber: bool) -> bool {
        active && (to_subscriber || !self.held.iter().any(|h| h == dest))
    }

    /// For an insert with `claim` (or none): whether a new delivery to
    /// `dest` is claimed, and whether it is left as due work to announce
    /// (PostgreSQL's `NOTIFY`).
    pub fn decide(
        claim: Option<&Self>,
        dest: &str,
        active: bool,
        to_subscriber: bool,
    ) -> (bool, bool) {
        match claim {
            None => (false, active),
            Some(c) if c.claims(dest, active, to_subscriber) => (true, false),
            Some(c) => (false, c.announces(dest, active, to_subscriber)),
        }
    }
}

/// The result of an insert.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored; its deliveries are due now.
    New {
        /// Number of deliveries created.
        deliveries: usize,
        /// The deliveries claimed in the insert's transaction (as
        /// [`InsertOptions::claim`] asked).
        claimed: Vec<DueDelivery>,
    },
    /// The same provider delivery id was accepted on this route within the
    /// dedup window: nothing stored.
    Duplicate {
        /// The event that was accepted first.
        existing_id: String,
    },
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Delivery row id.
    pub id: i64,
    /// The claim: present it to `record`, `renew` and `release`.
    pub lease: LeaseToken,
    /// Event id.
    pub event_id: String,
    /// Route the event arrived on.
    pub route: String,
    /// Destination name.
    pub destination: String,
    /// Attempts made so far (ever).
    pub attempts: u32,
    /// Retries used since the last (re)queue: the position in the retry
    /// schedule.
    pub retries: u32,
    /// The message to send (shared by the message's deliveries).
    pub message: Arc<Message>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextState {
    /// Done.
    Delivered,
    /// Try again after this wait (from now, on the store's clock); one
    /// retry of the budget is used.
    Retry {
        /// How long from now.
        after: Duration,
    },
    /// Not attempted (its destination is missing from the current
    /// config, say): due again after this wait, no retry used and no
    /// attempt counted.
    Postpone {
        /// How long from now.
        after: Duration,
    },
    /// Give up (retries exhausted, 410 Gone).
    Dead {
        /// Why, for operators.
        reason: String,
    },
    /// Keep it without attempting it until its subscription is enabled
    /// again (it is disabled now); no retry used.
    Park {
        /// Why, for operators.
        reason: String,
        /// Whether an attempt was made: the one whose failure disabled the
        /// subscription. It is counted and its row written like any other;
        /// a park decided before sending counts nothing.
        attempted: bool,
    },
}

/// One finished attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Delivery row id.
    pub delivery_id: i64,
    /// The delivery's event, as claimed ([`DueDelivery::event_id`]): the
    /// event whose status a finished delivery settles. Carried so that an
    /// engine need not look it up again; the SQLite engine checks it with
    /// the lease in the delivery's update, so a record naming another
    /// event changes nothing and is answered [`Recorded::LeaseLost`].
    pub event_id: String,
    /// The claim the attempt was made under.
    pub lease: LeaseToken,
    /// When the attempt started (ms since the epoch, for display).
    pub attempted_at_ms: u64,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Network or protocol error, when there was no usable response.
    pub error: Option<String>,
    /// The first few KiB of the response body.
    pub response_excerpt: Option<String>,
    /// The decision.
    pub next: NextState,
}

/// Event status: that of its least-finished delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// At least one delivery is still to be made.
    Pending,
    /// Every delivery succeeded (or there were none).
    Delivered,
    /// Nothing pending, and at least one delivery gave up.
    Dead,
    /// A delivery kept for a disabled subscription, sent when it is
    /// enabled again (a delivery's state; its event counts as pending).
    Parked,
}

impl EventStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Dead => "dead",
            EventStatus::Parked => "parked",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EventStatus::Pending),
            "delivered" => Some(EventStatus::Delivered),
            "dead" => Some(EventStatus::Dead),
            "parked" => Some(EventStatus::Parked),
            _ => None,
        }
    }
}

/// Which events (and, for replay, which of their deliveries) an operation
/// is about. Every field narrows the selection.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Event status (for replay: the delivery's state).
    pub status: Option<EventStatus>,
    /// Route name.
    pub route: Option<String>,
    /// Destination name (events with a delivery to it).
    pub destination: Option<String>,
    /// Received at or after (ms).
    pub since_ms: Option<u64>,
    /// Received before (ms).
    pub until_ms: Option<u64>,
}

/// One event in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// Route.
    pub route: String,
    /// Status.
    pub status: EventStatus,
    /// Provider delivery id.
    pub source_id: Option<String>,
    /// Event type of the first message.
    pub event_type: Option<String>,
    /// Arrival time, RFC 3339.
    pub received_at: String,
    /// Arrival time, ms since the epoch.
    pub received_at_ms: u64,
}

/// A page of events, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventSummary>,
    /// Cursor for the next page (`?cursor=`), or null at the end.
    pub next: Option<String>,
}

/// An event with everything known about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    /// Summary fields.
    #[serde(flatten)]
    pub summary: EventSummary,
    /// Its messages.
    pub messages: Vec<MessageView>,
    /// Its deliveries and their attempts.
    pub deliveries: Vec<DeliveryView>,
}

/// A stored message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Position within the event.
    pub index: u32,
    /// Message id (`webhook-id` towards destinations).
    pub id: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Media type.
    pub content_type: String,
    /// Headers sent with it.
    pub headers: Vec<(String, String)>,
    /// Body as text when it is UTF-8.
    pub body: Option<String>,
    /// Body size in bytes.
    pub size: usize,
}

/// A delivery of a message to one destination.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Delivery row id.
    pub id: i64,
    /// Which message (index).
    pub message_index: u32,
    /// Destination name.
    pub destination: String,
    /// `pending`, `delivered` or `dead`.
    pub state: EventStatus,
    /// Attempts made.
    pub attempts_made: u32,
    /// Next attempt (RFC 3339), when pending.
    pub next_attempt_at: Option<String>,
    /// Why it is dead, or the last failure.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// When (RFC 3339).
    pub at: String,
    /// HTTP status.
    pub status: Option<u16>,
    /// Latency in ms.
    pub latency_ms: u64,
    /// Error, if any.
    pub error: Option<String>,
    /// First few KiB of the response body.
    pub response: Option<String>,
}

/// The storage boundary. Every write is durable when its future resolves.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores an event and its deliveries, unless `source_id` was already
    /// accepted on the same route within `opts.dedup_window` (checked with
    /// a unique key, so concurrent duplicates cannot both be new). The
    /// deliveries `opts.claim` names come back claimed.
    async fn insert(&self, event: NewEvent, opts: InsertOptions) -> Result<Inserted, StoreError>;

    /// Claims up to `limit` due deliveries, oldest due first, skipping the
    /// destinations in `skip` (those the dispatcher has no room for). A
    /// claimed delivery is not due again until its lease (`lease` from now
    /// on the store's clock) runs out, so a crash mid-attempt leads to a
    /// redelivery, never a loss.
    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        skip: Vec<String>,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Extends a lease to `lease` from now. False if the token is stale.
    async fn renew(&self, id: i64, token: LeaseToken, lease: Duration) -> Result<bool, StoreError>;

    /// Gives a claimed delivery back, due now, with no attempt counted.
    /// False if the token is stale.
    async fn release(&self, id: i64, token: LeaseToken) -> Result<bool, StoreError>;

    /// Records an attempt and the delivery's next state, if `attempt.lease`
    /// still holds the delivery; otherwise writes nothing and answers
    /// [`Recorded::LeaseLost`]. Never shed for load: callers wait instead.
    async fn record(&self, attempt: AttemptRecord) -> Result<Recorded, StoreError>;

    /// How long until the earliest pending delivery is due (zero if one is
    /// due now), if any.
    async fn next_due_in(&self) -> Result<Option<Duration>, StoreError>;

    /// Events matching `filter`, newest first, `limit` per page, after
    /// `cursor`.
    async fn list(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError>;

    /// One event with its messages, deliveries and attempts.
    async fn get(&self, id: String) -> Result<Option<EventDetail>, StoreError>;

    /// Requeues deliveries for immediate delivery with a fresh retry
    /// budget: those of event `id` (optionally only to `destination`), or
    /// every delivery matching `filter`. Deliveries in flight are left to
    /// finish. Bulk replays run in bounded batches. Returns how many were
    /// requeued.
    ///
    /// With `to`, the requeued deliveries are also moved to destination
    /// `to` (a destination renamed or replaced in the config: its waiting
    /// and dead deliveries would otherwise look for the old name forever).
    /// Such a replay leaves deliveries to subscribers out: they belong to
    /// their subscription.
    async fn replay(&self, target: ReplayTarget, to: Option<String>) -> Result<u64, StoreError>;

    /// Makes due now every waiting delivery to one of `destinations`:
    /// pending, held by no lease, due later than now (postponed while the
    /// destination was missing from the config, or waiting out a retry's
    /// backoff). A reload calls it for the destinations it brings back,
    /// so their backlog goes at once rather than at its next look. Held
    /// deliveries, parked and finished ones are left alone; retry counts
    /// are not touched. Returns how many became due.
    async fn hasten(&self, destinations: Vec<String>) -> Result<u64, StoreError>;

    /// Deletes finished events (with their messages, deliveries and
    /// attempts): delivered ones received more than `retention.delivered`
    /// ago, dead ones more than `retention.dead` ago. Works in bounded
    /// batches. Returns how many events.
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Stores a new subscription. Its `created_at_ms` is set by the store.
    async fn create_subscription(&self, s: Subscription) -> Result<Subscription, StoreError>;

    /// A subscription by id, only if it belongs to `tenant` (any tenant
    /// when `None`: the delivery path).
    async fn get_subscription(
        &self,
        tenant: Option<String>,
        id: String,
    ) -> Result<Option<Subscription>, StoreError>;

    /// A tenant's subscriptions, optionally for one object.
    async fn list_subscriptions(
        &self,
        tenant: String,
        object_id: Option<String>,
        object_type: Option<String>,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Changes the fields `patch` names, and nothing else, on a tenant's
    /// subscription. Returns the subscription as it is afterwards, or
    /// `None` if there is none.
    ///
    /// A re-enable settles what waits for the subscription (see
    /// [`Store::delete_subscription`] for a delete): the first batch in the
    /// change's own transaction, the rest in batches after. An `Err` means
    /// the change did not happen; once it has committed, a failed later
    /// batch is left to the next [`Store::prune`], not reported.
    async fn update_subscription(
        &self,
        tenant: String,
        id: String,
        patch: SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Deletes a tenant's subscription, dead-lettering what waits for it
    /// (settled as a re-enable's). False if there was none.
    async fn delete_subscription(&self, tenant: String, id: String) -> Result<bool, StoreError>;

    /// Records a delivery outcome for a subscription's health, as one
    /// conditional update: a success clears its failure streak; a failure
    /// starts one, and disables the subscription once the streak is
    /// `disable_after` old; `gone` (410) disables it at once.
    async fn subscription_outcome(
        &self,
        id: String,
        outcome: AttemptHealth,
        disable_after: Duration,
    ) -> Result<SubscriptionHealth, StoreError>;

    /// The deliveries parked for a subscription (it is disabled), oldest
    /// first, at most `limit`. They are sent, oldest first, when a patch
    /// enables it again.
    async fn parked(
        &self,
        subscription_id: String,
        limit: usize,
    ) -> Result<Vec<ParkedDelivery>, StoreError>;

    /// Whether the store can take writes: `Err` with the reason when its
    /// writer is gone or its last commits failed.
    fn health(&self) -> Result<(), String>;

    /// Registers `wake`, called whenever deliveries became due that no
    /// claim holds, whichever process made them due (a shared engine hears
    /// it from the database). An engine only this process writes need not
    /// call it: the dispatcher already wakes itself for its own writes.
    fn on_due(&self, wake: DueHook) {
        let _ = wake;
    }

    /// Bytes free on the file system the engine writes its files to, for
    /// an engine that writes local files (`None` for one that does not):
    /// `/metrics` reports it, for an alert before the disk fills.
    fn free_disk_bytes(&self) -> Option<u64> {
        None
    }

    /// Store operations that panicked since start. Each was rolled back
    /// and failed alone (the engine went on), but each is a bug an
    /// operator should hear of: `/healthz` reports the count. Engines that
    /// cannot survive a panic have none to report.
    fn operation_panics(&self) -> u64 {
        0
    }

    // ---- Operator console (`/ui`) and the backlog gauges ------------------
    // Reads and replays the console needs beyond the admin API, kept in one
    // block so an engine ports them together. Types are in `stats.rs`; the
    // SQLite answers in `sqlite/console.rs`.

    /// Events matching the console's filter, newest first, `limit` per
    /// page, after `cursor`.
    async fn console_list(
        &self,
        filter: stats::ConsoleFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<EventPage, StoreError>;

    /// How many events match `filter`, by status (its status is ignored),
    /// each counted up to [`stats::COUNT_CAP`].
    async fn count_by_status(
        &self,
        filter: stats::ConsoleFilter,
    ) -> Result<stats::StatusCounts, StoreError>;

    /// What [`replay_filtered`](Self::replay_filtered) would requeue now;
    /// `moving`: with a `to` (a subscriber's deliveries are left out).
    async fn count_replay_set(
        &self,
        filter: stats::ConsoleFilter,
        moving: bool,
    ) -> Result<stats::ReplaySet, StoreError>;

    /// Requeues the deliveries of the events matching `filter` (those to
    /// its destination, in its status, not in flight) with a fresh retry
    /// budget, only if that set is still `expected`. With `to`, as
    /// [`replay`](Self::replay)'s: they move to that destination, and a
    /// subscriber's deliveries are left out (the caller checks `to`
    /// against the config and gives `filter` a destination).
    async fn replay_filtered(
        &self,
        filter: stats::ConsoleFilter,
        expected: stats::ReplaySet,
        to: Option<String>,
    ) -> Result<stats::BulkReplay, StoreError>;

    /// Requeues one delivery of an event. False when there is no such
    /// delivery or it is in flight.
    async fn replay_delivery(&self, event_id: String, delivery_id: i64)
    -> Result<bool, StoreError>;

    /// Pending deliveries and the oldest pending arrival, per destination.
    async fn backlog(&self) -> Result<Vec<stats::Backlog>, StoreError>;

    /// Per destination with attempts in `[since_ms, now_ms)` or a backlog:
    /// success rate, latency percentiles, last error and `buckets` buckets
    /// of attempts.
    async fn destination_stats(
        &self,
        since_ms: u64,
        now_ms: u64,
        buckets: u32,
    ) -> Result<Vec<stats::DestinationStats>, StoreError>;

    /// Pending, parked and dead deliveries per destination (`sub:<id>` for a
    /// subscription), in the order asked.
    async fn parked_deliveries(
        &self,
        destinations: Vec<String>,
    ) -> Result<Vec<(String, stats::ParkedDeliveries)>, StoreError>;

    /// The inbound request an event came from, if it was kept.
    async fn inbound(&self, event_id: String) -> Result<Option<stats::InboundView>, StoreError>;

    /// Reserves the next request slot of a paced receiver (`key`: a Teams
    /// webhook's hashed URL), `interval` after the last slot that any
    /// gateway sharing this store reserved for it, on the store's clock.
    /// `Some(Ok(wait))`: taken, start in `wait`. `Some(Err(after))`: the
    /// next free slot is more than `max_wait` away; nothing is taken, ask
    /// again in `after`. `None`: the engine serves one process (SQLite,
    /// held by its `data_dir` lock), which paces on its own.
    async fn reserve_slot(
        &self,
        key: String,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Option<Result<Duration, Duration>>, StoreError> {
        let _ = (key, interval, max_wait);
        Ok(None)
    }
}

/// A shared handle to a store.
pub type SharedStore = Arc<dyn Store>;

/// What [`Store::on_due`] calls.
pub type DueHook = Arc<dyn Fn() + Send + Sync>;

/// A delivery kept for a disabled subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ParkedDelivery {
    /// Delivery row id.
    pub delivery_id: i64,
    /// The event it belongs to.
    pub event_id: String,
    /// The published event's type.
    pub event_type: Option<String>,
    /// When the event was received, RFC 3339.
    pub received_at: String,
}

/// How long finished events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delivered events (and those with no deliveries).
    pub delivered: Duration,
    /// Dead letters: events whose deliveries ended dead.
    pub dead: Duration,
}

/// The result of [`Store::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The attempt and the next state are written.
    Written,
    /// The lease was gone (expired and claimed again, or released): nothing
    /// was written.
    LeaseLost,
}

/// What one attempt to a subscription says about its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptHealth {
    /// Delivered.
    Success,
    /// Failed; may be retried.
    Failure,
    /// The callback answered 410 Gone.
    Gone,
    /// The delivery's retries ran out: disable now.
    Exhausted,
}

/// Fields of a subscription to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionPatch {
    /// New object id.
    pub object_id: Option<String>,
    /// New object type.
    pub object_type: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New callback URL.
    pub callback_url: Option<String>,
    /// New callback token (`Some(None)` clears it).
    pub callback_token: Option<Option<String>>,
    /// New context (`Some(None)` clears it).
    pub context: Option<Option<serde_json::Value>>,
    /// New expiry (ms since the epoch).
    pub validity_ms: Option<u64>,
    /// Enable (clears the failure streak and the disable reason, and sends
    /// the deliveries parked meanwhile, oldest first) or disable by hand.
    pub active: Option<bool>,
    /// New signing secret.
    pub secret: Option<String>,

    // --- Sending-side extras (issue 13); written by `subscription_columns`.
    /// New extra headers.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// New properties (`Some(None)` clears them).
    pub properties: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    /// New signature scheme.
    pub signature_scheme: Option<SignatureScheme>,
    /// A secret rotation, applied in one statement: the current secret
    /// becomes the previous one (signing until the overlap ends) and the
    /// new one takes its place.
    pub rotation: Option<SecretRotation>,
}

/// A secret rotation (see [`SubscriptionPatch::rotation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRotation {
    /// The new secret.
    pub secret: String,
    /// Until then (ms) the previous secret signs too.
    pub previous_expires_ms: u64,
}

/// A subscription of the sending side (`/v1/webhook`).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `wh_…` id.
    pub id: String,
    /// Owning tenant (from its API key).
    pub tenant: String,
    /// Object it watches.
    pub object_id: String,
    /// Type of that object.
    pub object_type: String,
    /// Event types, `*` for all.
    pub event_types: Vec<String>,
    /// Where events are POSTed.
    pub callback_url: String,
    /// Sent back as `kz-callback-token`.
    pub callback_token: Option<String>,
    /// Sent back as `context` in every payload.
    pub context: Option<serde_json::Value>,
    /// Expiry, ms since the epoch.
    pub validity_ms: u64,
    /// Receives events.
    pub active: bool,
    /// `whsec_…` signing secret.
    pub secret: String,
    /// Created, ms (set by the store).
    pub created_at_ms: u64,
    /// Failing without success since (ms), if failing.
    pub failing_since_ms: Option<u64>,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,

    // --- Sending-side extras (issue 13, ASP.NET-style registrations). Stored
    // in nullable columns (schema migration 3, `subscription_columns.rs`); a
    // row written before they existed reads back with the defaults below.
    /// Extra HTTP headers sent with every delivery (checked against a
    /// deny-list by the API before they get here).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Extra properties merged into every payload under `properties`.
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
    /// How deliveries are signed.
    pub signature_scheme: SignatureScheme,
    /// The secret in use before the last rotation: it keeps signing, next
    /// to `secret`, until `previous_secret_expires_ms`.
    pub previous_secret: Option<String>,
    /// End of the rotation overlap, ms.
    pub previous_secret_expires_ms: Option<u64>,
}

/// How a subscription's deliveries are signed. Stored as its
/// [`SignatureScheme::as_str`] name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64>`.
    #[default]
    StandardWebhooks,
    /// ASP.NET WebHooks' sender: `ms-signature: sha256=<hex>` over the body.
    MsSignature,
}

impl SignatureScheme {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::StandardWebhooks => "standard-webhooks",
            SignatureScheme::MsSignature => "ms-signature",
        }
    }

    /// The scheme named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "standard-webhooks" => Some(SignatureScheme::StandardWebhooks),
            "ms-signature" => Some(SignatureScheme::MsSignature),
            _ => None,
        }
    }
}

/// The health change an attempt caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionHealth {
    /// Still active.
    Active,
    /// Just disabled by this attempt.
    Disabled,
}

/// What to replay.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    /// One event's deliveries.
    Event {
        /// Event id.
        id: String,
        /// Only deliveries to this destination.
        destination: Option<String>,
    },
    /// Every delivery matching the filter (`status` is the delivery's
    /// state, e.g. `dead` for dead letters).
    Matching(EventFilter),
}

/// The last instant RFC 3339 (and humantime, which refuses to format a
/// later one) can write: 9999-12-31T23:59:59.999Z, in ms since the epoch.
pub const RFC3339_MAX_MS: u64 = 253_402_300_799_999;

/// Milliseconds since the epoch as RFC 3339 with milliseconds. Times past
/// the year 9999 (a retry scheduled "forever" from now) print as the last
/// representable instant instead of failing.
pub fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.min(RFC3339_MAX_MS));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Pauses before each new try of a settlement batch that failed. A batch
/// settles against the subscription as it is then, so trying it again is
/// safe; a passing failure (a dropped connection, a full queue, a lock
/// held a moment) then costs the caller a fraction of a second instead of
/// leaving the rest parked until the next prune, minutes away. A failure
/// that outlasts these (2.6 s in all) is left to prune.
const SETTLE_RETRY: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Runs a re-enable's or a delete's settlement batches (`batch` settles
/// one and says whether more are left) until none is left, trying a
/// failed batch again after each pause of [`SETTLE_RETRY`]; the error of
/// its last try when every try failed. Each batch that succeeds starts the
/// pauses over: it made progress, and the batches are finite.
pub(crate) async fn settle_in_batches<F, Fut>(mut batch: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, StoreError>>,
{
    let mut failed = 0;
    loop {
        match batch().await {
            Ok(true) => failed = 0,
            Ok(false) => return Ok(()),
            Err(e) => {
                let Some(pause) = SETTLE_RETRY.get(failed) else {
                    return Err(e);
                };
                failed += 1;
                tracing::debug!(error = %e, ?pause, "a settlement batch failed; trying again");
                tokio::time::sleep(*pause).await;
            }
        }
    }
}

/// What a re-enable or a delete does when settling its subscription's
/// waiting deliveries failed after the change itself committed (and after
/// [`settle_in_batches`] tried again): the change stands, so the caller is
/// told it succeeded (reporting an error would invite a retry of something
/// already done). The settlement's note is in the store; the next prune
/// finishes it (`Store::prune`).
pub(crate) fn settled_later(subscription_id: &str, settled: Result<(), StoreError>) {
    if let Err(e) = settled {
        tracing::warn!(
            subscription = subscription_id,
            error = %e,
            "subscription changed; settling the rest of its waiting deliveries failed, \
             the next prune finishes it"
        );
    }
}

#[cfg(test)]
mod settle_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Runs `settle_in_batches` over batches that answer `script` in turn,
    /// with tokio's clock paused: the call's result, how many batches it
    /// ran and how long it paused.
    async fn settle_script(
        script: &[Result<bool, ()>],
    ) -> (Result<(), StoreError>, usize, Duration) {
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let result = settle_in_batches(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            let answer = script
                .get(n)
                .copied()
                .unwrap_or_else(|| panic!("batch {n} run, but the script has {}", script.len()));
            async move { answer.map_err(|()| StoreError::Internal(format!("batch {n} failed"))) }
        })
        .await;
        (result, calls.into_inner(), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_settlement_batch_that_fails_for_a_moment_is_tried_again() {
        let (result, batches, paused) =
            settle_script(&[Ok(true), Err(()), Err(()), Ok(true), Err(()), Ok(false)]).await;
        result.expect("every batch settled in the end");
        assert_eq!(batches, 6);
        // Two pauses after the first failure (100 + 500 ms); the progress
        // in between started them over, so the third failure paused 100 ms.
        assert_eq!(paused, Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_settlement_batch_that_keeps_failing_is_left_to_prune() {
        let (result, batches, paused) =
            settle_script(&[Ok(true), Err(()), Err(()), Err(()), Err(())]).await;
        let err = result.expect_err("the batch never settled");
        assert!(err.to_string().contains("batch 4 failed"), "{err}");
        assert_eq!(batches, 5, "one try and one after each pause, no more");
        assert_eq!(paused, Duration::from_millis(2600));
    }
}
