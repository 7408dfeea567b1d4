//! Read models for the operator console (`/ui`) and the backlog gauges:
//! the console's wider event filter, counts by status, destination health
//! and time series, and the inbound request kept with each event.
//!
//! The engines answer them through the console block at the end of the
//! [`Store`](super::Store) trait. Besides the types, what both engines'
//! destination-health rows add up to lives here once ([`StatsTally`],
//! [`percentile`]), so that the engines differ in their queries only.

use std::collections::BTreeMap;

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

impl DestinationStats {
    /// A destination with no attempts in the window `since_ms..now_ms`:
    /// its series is `buckets` empty buckets of [`bucket_width`].
    pub fn empty(destination: &str, since_ms: u64, now_ms: u64, buckets: u32) -> Self {
        let buckets = buckets.max(1);
        let width = bucket_width(since_ms, now_ms, buckets);
        DestinationStats {
            destination: destination.to_owned(),
            attempts: 0,
            ok: 0,
            p50_ms: None,
            p99_ms: None,
            backlog: 0,
            oldest_pending_ms: None,
            last_error: None,
            series: (0..u64::from(buckets))
                .map(|i| SeriesPoint {
                    start_ms: since_ms + i * width,
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// The width (ms, at least 1) of each of `buckets` buckets of the window
/// `since_ms..now_ms`, as every engine and the console count it.
pub fn bucket_width(since_ms: u64, now_ms: u64, buckets: u32) -> u64 {
    (now_ms.saturating_sub(since_ms) / u64::from(buckets.max(1))).max(1)
}

/// The `q` quantile of a histogram of (latency, count) sorted by latency,
/// by nearest rank: the least latency with at least `q` of the attempts at
/// or below it. That is PostgreSQL's `percentile_disc`, so every engine
/// reports the same percentile for the same attempts.
pub fn percentile(histogram: &[(u64, u64)], q: f64) -> Option<u64> {
    let n: u64 = histogram.iter().map(|(_, c)| c).sum();
    if n == 0 {
        return None;
    }
    // 1-based rank ⌈q·n⌉, at least the first.
    let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (latency, count) in histogram {
        seen += count;
        if seen >= rank {
            return Some(*latency);
        }
    }
    histogram.last().map(|(l, _)| *l)
}

/// What a failed attempt shows as its destination's last error: its error,
/// else its HTTP status.
pub fn failure_reason(error: Option<String>, status: Option<u16>) -> String {
    error
        .or_else(|| status.map(|s| format!("HTTP {s}")))
        .unwrap_or_else(|| "failed".to_owned())
}

/// Destination stats as an engine reads them: per-bucket counts, then
/// percentiles and the last failure, then the backlog. The engines differ
/// in their queries only; what a row adds up to is counted here once.
#[derive(Debug)]
pub struct StatsTally {
    since_ms: u64,
    now_ms: u64,
    buckets: u32,
    /// Each destination's stats and the id of its latest failed attempt.
    by_destination: BTreeMap<String, (DestinationStats, Option<i64>)>,
}

impl StatsTally {
    /// An empty tally of the window `since_ms..now_ms` in `buckets` buckets
    /// (at least one).
    pub fn new(since_ms: u64, now_ms: u64, buckets: u32) -> Self {
        StatsTally {
            since_ms,
            now_ms,
            buckets: buckets.max(1),
            by_destination: BTreeMap::new(),
        }
    }

    /// The width of a bucket (ms): an attempt at `t` is in bucket
    /// `(t - since_ms) / width`.
    pub fn width(&self) -> u64 {
        bucket_width(self.since_ms, self.now_ms, self.buckets)
    }

    fn entry(&mut self, destination: &str) -> &mut (DestinationStats, Option<i64>) {
        let (since, now, buckets) = (self.since_ms, self.now_ms, self.buckets);
        self.by_destination
            .entry(destination.to_owned())
            .or_insert_with(|| {
                (
                    DestinationStats::empty(destination, since, now, buckets),
                    None,
                )
            })
    }

    /// Adds one bucket's attempts to `destination`: `attempts` of them,
    /// `ok` answered 2xx, with a mean latency, and the id of the latest
    /// failed one if any failed.
    pub fn bucket(
        &mut self,
        destination: &str,
        bucket: u64,
        attempts: u64,
        ok: u64,
        mean_latency_ms: f64,
        latest_failure: Option<i64>,
    ) {
        let (stats, latest) = self.entry(destination);
        let ok = ok.min(attempts);
        stats.attempts += attempts;
        stats.ok += ok;
        if let Some(p) = usize::try_from(bucket)
            .ok()
            .and_then(|b| stats.series.get_mut(b))
        {
            p.ok += ok;
            p.failed += attempts - ok;
            p.mean_latency_ms = mean_latency_ms;
        }
        *latest = (*latest).max(latest_failure);
    }

    /// The stats of a destination that has attempts in the window.
    pub fn get_mut(&mut self, destination: &str) -> Option<&mut DestinationStats> {
        self.by_destination.get_mut(destination).map(|(s, _)| s)
    }

    /// Every destination with attempts, with the id of its latest failed
    /// attempt (to look up as `last_error`).
    pub fn with_latest_failure(&mut self) -> impl Iterator<Item = (&mut DestinationStats, i64)> {
        self.by_destination
            .values_mut()
            .filter_map(|(s, latest)| latest.map(|id| (s, id)))
    }

    /// What waits for a destination now (a destination with a backlog and
    /// no attempts in the window is listed too).
    pub fn backlog(&mut self, backlog: Backlog) {
        let (stats, _) = self.entry(&backlog.destination);
        stats.backlog = backlog.pending;
        stats.oldest_pending_ms = backlog.oldest_pending_ms;
    }

    /// The stats, ordered by destination.
    pub fn finish(self) -> Vec<DestinationStats> {
        self.by_destination.into_values().map(|(s, _)| s).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_like_percentile_disc() {
        // 1..=100 ms, once each: ⌈0.5 × 100⌉ = the 50th.
        let h: Vec<(u64, u64)> = (1..=100).map(|l| (l, 1)).collect();
        assert_eq!(percentile(&h, 0.5), Some(50));
        assert_eq!(percentile(&h, 0.99), Some(99));
        // Two attempts: the median is the lower one, as PostgreSQL says.
        assert_eq!(percentile(&[(10, 1), (30, 1)], 0.5), Some(10));
        assert_eq!(percentile(&[(10, 1), (30, 1)], 0.99), Some(30));
        assert_eq!(percentile(&[(7, 3)], 0.99), Some(7));
        assert_eq!(percentile(&[(7, 3)], 0.0), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_tally_counts_buckets_and_lists_backlogs_without_attempts() {
        let mut t = StatsTally::new(1_000, 61_000, 6);
        assert_eq!(t.width(), 10_000);
        t.bucket("a", 0, 3, 2, 12.5, Some(7));
        t.bucket("a", 5, 1, 1, 4.0, None);
        // A bucket past the window (a late row) counts in the totals only.
        t.bucket("a", 6, 1, 0, 1.0, Some(9));
        t.backlog(Backlog {
            destination: "b".into(),
            pending: 4,
            oldest_pending_ms: Some(500),
        });
        let ids: Vec<i64> = t.with_latest_failure().map(|(_, id)| id).collect();
        assert_eq!(ids, [9]);
        let out = t.finish();
        assert_eq!(out.len(), 2);
        let a = &out[0];
        assert_eq!((a.destination.as_str(), a.attempts, a.ok), ("a", 5, 3));
        assert_eq!(a.series.len(), 6);
        assert_eq!(a.series[0].start_ms, 1_000);
        assert_eq!(a.series[5].start_ms, 51_000);
        assert_eq!((a.series[0].ok, a.series[0].failed), (2, 1));
        assert_eq!((a.series[5].ok, a.series[5].failed), (1, 0));
        let b = &out[1];
        assert_eq!(
            (b.attempts, b.backlog, b.oldest_pending_ms),
            (0, 4, Some(500))
        );
        assert_eq!(
            *b,
            DestinationStats {
                backlog: 4,
                oldest_pending_ms: Some(500),
                ..DestinationStats::empty("b", 1_000, 61_000, 6)
            }
        );
    }

    #[test]
    fn an_empty_or_inverted_window_still_has_its_buckets() {
        let s = DestinationStats::empty("x", 5_000, 4_000, 0);
        assert_eq!(s.series.len(), 1);
        assert_eq!(bucket_width(5_000, 4_000, 3), 1);
    }

    #[test]
    fn a_failure_shows_its_error_else_its_status() {
        assert_eq!(failure_reason(Some("refused".into()), Some(500)), "refused");
        assert_eq!(failure_reason(None, Some(503)), "HTTP 503");
        assert_eq!(failure_reason(None, None), "failed");
    }
}
