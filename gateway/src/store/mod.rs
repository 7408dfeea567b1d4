//! Durable event storage: accepted events, their deliveries and every
//! delivery attempt.
//!
//! [`Store`] is the boundary: ingress inserts (and answers the provider only
//! once the insert is committed), delivery claims due deliveries and records
//! attempts, admin lists, inspects and replays. [`sqlite::SqliteStore`] is
//! the embedded default; a PostgreSQL engine (several gateways sharing one
//! queue) implements the same trait, claiming with `FOR UPDATE SKIP LOCKED`
//! and a lease instead of SQLite's single writer.
//!
//! Deliberately not here: HTTP, retry policy (delivery decides the next
//! state; the store records it) and anything about plugins.

pub mod sqlite;
mod sqlite_console;
pub mod stats;

use serde::Serialize;

use crate::plugin::Message;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The store's writer is saturated; shed load.
    #[error("the store is overloaded")]
    Overloaded,
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Could not open or create the store.
    #[error("cannot open the store at {path}: {message}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
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

/// A message published to the matching subscriptions: expanded into one
/// delivery per subscription inside the insert's transaction, so a
/// subscription created after the commit never sees it and one deleted
/// before it never does.
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

/// The result of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored; its deliveries are due now.
    New {
        /// Number of deliveries created.
        deliveries: usize,
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
    /// The message to send.
    pub message: Message,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextState {
    /// Done.
    Delivered,
    /// Try again at this time (ms since the epoch).
    Retry {
        /// When.
        at_ms: u64,
    },
    /// Give up (retries exhausted, 410 Gone, destination removed).
    Dead {
        /// Why, for operators.
        reason: String,
    },
}

/// One finished attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Delivery row id.
    pub delivery_id: i64,
    /// When the attempt started.
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
}

impl EventStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Dead => "dead",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EventStatus::Pending),
            "delivered" => Some(EventStatus::Delivered),
            "dead" => Some(EventStatus::Dead),
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
    /// accepted on the same route at or after `dedup_since_ms`.
    async fn insert(&self, event: NewEvent, dedup_since_ms: u64) -> Result<Inserted, StoreError>;

    /// Claims up to `limit` deliveries due at `now_ms`. A claimed delivery
    /// is not due again until `lease_until_ms`, so a crash mid-attempt
    /// leads to a redelivery, never a loss.
    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        lease_until_ms: u64,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records an attempt and the delivery's next state.
    async fn record(&self, attempt: AttemptRecord) -> Result<(), StoreError>;

    /// When the earliest pending delivery is due (ms), if any.
    async fn next_due_ms(&self) -> Result<Option<u64>, StoreError>;

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
    /// every delivery matching `filter`. Returns how many were requeued.
    async fn replay(&self, target: ReplayTarget, now_ms: u64) -> Result<u64, StoreError>;

    /// Deletes delivered events (with their messages, deliveries and
    /// attempts) received before `before_ms`. Returns how many events.
    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError>;

    /// Stores a new subscription.
    async fn create_subscription(&self, s: Subscription) -> Result<(), StoreError>;

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

    /// Replaces a subscription (same id and tenant). False if it is gone.
    async fn update_subscription(&self, s: Subscription) -> Result<bool, StoreError>;

    /// Deletes a tenant's subscription. False if there was none.
    async fn delete_subscription(&self, tenant: String, id: String) -> Result<bool, StoreError>;

    /// Records a delivery outcome for a subscription's health: a success
    /// clears its failure streak; a failure starts one, and disables the
    /// subscription once the streak is `disable_after_ms` old; `gone`
    /// (410) disables it at once.
    async fn subscription_outcome(
        &self,
        id: String,
        success: bool,
        gone: bool,
        now_ms: u64,
        disable_after_ms: u64,
    ) -> Result<SubscriptionHealth, StoreError>;

    // ---- Operator console (`/ui`) and the backlog gauges ------------------
    // Reads and replays the console needs beyond the admin API, kept in one
    // block so an engine ports them together. Types are in `stats.rs`; the
    // SQLite answers in `sqlite_console.rs`.

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

    /// What [`replay_filtered`](Self::replay_filtered) would requeue now.
    async fn count_replay_set(
        &self,
        filter: stats::ConsoleFilter,
    ) -> Result<stats::ReplaySet, StoreError>;

    /// Requeues the deliveries of the events matching `filter` (those to
    /// its destination, in its status, not in flight) with a fresh retry
    /// budget, only if that set is still `expected`.
    async fn replay_filtered(
        &self,
        filter: stats::ConsoleFilter,
        expected: stats::ReplaySet,
        now_ms: u64,
    ) -> Result<stats::BulkReplay, StoreError>;

    /// Requeues one delivery of an event. False when there is no such
    /// delivery or it is in flight.
    async fn replay_delivery(
        &self,
        event_id: String,
        delivery_id: i64,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

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

    /// Pending and dead deliveries per destination (`sub:<id>` for a
    /// subscription), in the order asked.
    async fn parked_deliveries(
        &self,
        destinations: Vec<String>,
    ) -> Result<Vec<(String, stats::ParkedDeliveries)>, StoreError>;

    /// The inbound request an event came from, if it was kept.
    async fn inbound(&self, event_id: String) -> Result<Option<stats::InboundView>, StoreError>;
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
    /// Created, ms.
    pub created_at_ms: u64,
    /// Failing without success since (ms), if failing.
    pub failing_since_ms: Option<u64>,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,
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

/// Milliseconds since the epoch as RFC 3339 with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
