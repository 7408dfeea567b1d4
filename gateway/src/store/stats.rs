//! Read models for the operator console (`/ui`) and the backlog gauges:
//! the console's wider event filter, counts by status, destination health
//! and time series, and the inbound request kept with each event.
//!
//! Only types live here; the engines answer them through the console block
//! at the end of the [`Store`](super::Store) trait.

use serde::Serialize;

use super::{EventFilter, EventStatus};

/// The console's event filter: the admin filter plus the provider event
/// type and a search on ids.
#[derive(Debug, Clone, Default)]
pub struct ConsoleFilter {
    /// Status, route, destination and time range (status is the event's).
    pub base: EventFilter,
    /// Provider event type of the event (exact).
    pub event_type: Option<String>,
    /// An id: the event id (or a prefix of it), the provider's delivery id
    /// or a message id (`webhook-id`), exact.
    pub search: Option<String>,
    /// Only events whose id is at or before this one: pins a bulk replay
    /// to the set the operator confirmed, whatever arrives meanwhile.
    pub max_id: Option<String>,
}

/// Counts by status stop here: the live counts cost the same whatever
/// the filter, and a count at the cap is shown as "10000+".
pub const COUNT_CAP: u64 = 10_000;

/// How many events match a filter, by status, each up to [`COUNT_CAP`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// Pending events.
    pub pending: u64,
    /// Delivered events.
    pub delivered: u64,
    /// Dead events.
    pub dead: u64,
}

impl StatusCounts {
    /// Every status together.
    pub fn total(&self) -> u64 {
        self.pending + self.delivered + self.dead
    }

    /// A count as shown: `10000+` at the cap.
    pub fn show(n: &u64) -> String {
        if *n >= COUNT_CAP {
            format!("{COUNT_CAP}+")
        } else {
            n.to_string()
        }
    }

    /// The total as shown.
    pub fn show_total(&self) -> String {
        let capped = [self.pending, self.delivered, self.dead]
            .iter()
            .any(|n| *n >= COUNT_CAP);
        format!("{}{}", self.total(), if capped { "+" } else { "" })
    }

    /// The count of one status.
    pub fn of(&self, status: EventStatus) -> u64 {
        match status {
            EventStatus::Pending => self.pending,
            EventStatus::Delivered => self.delivered,
            EventStatus::Dead => self.dead,
            // A delivery's state only: no event is parked (its event
            // counts as pending).
            EventStatus::Parked => 0,
        }
    }
}

/// What a bulk replay of a filtered set would touch, or touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySet {
    /// Events in the set.
    pub events: u64,
    /// Their deliveries that are replayed (those to the filtered
    /// destination and in the filtered state, none in flight).
    pub deliveries: u64,
}

/// What a bulk replay run in batches has requeued so far: its deliveries,
/// and its events counted once however many batches they span.
#[derive(Debug, Default)]
pub struct ReplayTally {
    done: ReplaySet,
    events: std::collections::HashSet<String>,
}

impl ReplayTally {
    /// Adds a batch: the events of its requeued deliveries, and how many.
    pub fn add(&mut self, events: Vec<String>, requeued: u64) {
        self.done.deliveries += requeued;
        for e in events {
            if self.events.insert(e) {
                self.done.events += 1;
            }
        }
    }

    /// The events requeued so far, in chunks of at most `n`, for their
    /// status refresh once the whole set is requeued.
    pub fn events_in_chunks(&self, n: usize) -> Vec<Vec<String>> {
        let mut events: Vec<String> = self.events.iter().cloned().collect();
        events.sort_unstable();
        events.chunks(n.max(1)).map(<[String]>::to_vec).collect()
    }

    /// The set requeued, as a bulk replay reports it.
    pub fn replayed(&self) -> BulkReplay {
        BulkReplay::Replayed(self.done)
    }
}

/// The result of a bulk replay that names the set it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkReplay {
    /// Requeued the expected set (less what went in flight meanwhile).
    Replayed(ReplaySet),
    /// The set changed since it was counted; nothing was requeued.
    Changed(ReplaySet),
}

/// Deliveries waiting, per destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Destination name (`sub:<id>` for a subscription).
    pub destination: String,
    /// Pending deliveries.
    pub pending: u64,
    /// Arrival time of the oldest event with a pending delivery (ms).
    pub oldest_pending_ms: Option<u64>,
}

/// One bucket of a destination's time series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Bucket start (ms).
    pub start_ms: u64,
    /// Attempts answered 2xx.
    pub ok: u64,
    /// Other attempts.
    pub failed: u64,
    /// Mean latency of the bucket's attempts (ms).
    pub mean_latency_ms: f64,
}

/// A destination's health over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationStats {
    /// Destination name.
    pub destination: String,
    /// Attempts in the window.
    pub attempts: u64,
    /// Of which answered 2xx.
    pub ok: u64,
    /// Median attempt latency (ms).
    pub p50_ms: Option<u64>,
    /// 99th percentile attempt latency (ms).
    pub p99_ms: Option<u64>,
    /// Pending deliveries now.
    pub backlog: u64,
    /// Arrival time of the oldest event still pending (ms).
    pub oldest_pending_ms: Option<u64>,
    /// The most recent failed attempt in the window: when (ms) and why.
    pub last_error: Option<(u64, String)>,
    /// Attempts per bucket, oldest first, covering the whole window.
    pub series: Vec<SeriesPoint>,
}

/// Deliveries to one subscription, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParkedDeliveries {
    /// Still to be attempted.
    pub pending: u64,
    /// Kept while the subscription is disabled; sent when it is enabled.
    pub parked: u64,
    /// Given up.
    pub dead: u64,
}

/// The inbound request an event came from (credential headers are
/// redacted before they are stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InboundView {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, in arrival order, credentials redacted by the gateway
    /// before they reach the store (`pipeline::credential::redact`).
    pub headers: Vec<(String, String)>,
}
