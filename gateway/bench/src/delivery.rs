//! A delivery row's accounting, per `webhook-id`.
//!
//! Every request answered 2xx, in the measured window or not (warm-up, and
//! requests that straddle an edge of the window), is an event the gateway
//! owes one delivery to each of the route's destinations (the sink's
//! copies, [`crate::sink::copy_id`]): one in rows 5 and 6, more in the
//! fan-out row. The drain waits until the sink has seen every owed id
//! at least once (a duplicate of one id does not stand in for another),
//! then the bench keeps watching for [`WATCH`], one `delivery.lease` and a
//! second: a delivery whose outcome went unrecorded is sent again when its
//! lease ends, and would show as a duplicate then. A resend after an
//! attempt recorded as failed waits for the first retry (60 s by default)
//! and is not watched for; the sink answers 200 at once, so an attempt
//! fails only on a timeout or a connection error.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::DELIVERY_LEASE;
use crate::load::{LoadResult, Window, quantile};
use crate::report::DeliveryStats;
use crate::sink::{Sink, copy_id};

/// How long the sink is watched after the last owed delivery arrived.
pub const WATCH: Duration = DELIVERY_LEASE.saturating_add(Duration::from_secs(1));

/// Waits until the sink has seen every id of `owed` at least once, until
/// `deadline`, or until `gone()` (a gateway died). Returns whether every
/// one arrived.
pub async fn drain(
    sink: &Sink,
    owed: &HashSet<String>,
    deadline: Instant,
    mut gone: impl FnMut() -> bool,
) -> bool {
    let mut waiting: HashSet<&str> = owed.iter().map(String::as_str).collect();
    let mut read = 0;
    loop {
        let new = sink.deliveries_from(read);
        read += new.len();
        for (id, _) in &new {
            waiting.remove(id.as_str());
        }
        if waiting.is_empty() {
            return true;
        }
        if Instant::now() >= deadline || gone() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits [`WATCH`] (less if `gone()`): duplicates that come when a lease
/// ends arrive within it.
pub async fn watch(mut gone: impl FnMut() -> bool) {
    let end = Instant::now() + WATCH;
    while Instant::now() < end && !gone() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When the sink first saw each id (`seen` in arrival order).
pub fn first_arrivals(seen: &[(String, Instant)]) -> HashMap<&str, Instant> {
    let mut first: HashMap<&str, Instant> = HashMap::with_capacity(seen.len());
    for (id, at) in seen {
        first.entry(id.as_str()).or_insert(*at);
    }
    first
}

/// The deliveries `load` owes (every 2xx), `copies` of each, by the keys
/// the sink notes them under.
pub fn owed(load: &LoadResult, copies: usize) -> HashSet<String> {
    load.owed_ids()
        .flat_map(|id| (1..=copies).map(move |c| copy_id(id, c)))
        .collect()
}

/// The numbers of a delivery row from what the load generator saw
/// (`load`: `answered` in the window, `answered_outside` the other 2xx)
/// and what the sink saw (`seen`, in arrival order, duplicates included),
/// once the drain and the watch are over; each webhook owes `copies`
/// deliveries, each counted on its own.
pub fn stats(
    load: &LoadResult,
    seen: &[(String, Instant)],
    window: Window,
    load_ended: Instant,
    copies: usize,
) -> DeliveryStats {
    let first = first_arrivals(seen);
    let owed_keys = owed(load, copies);
    let owed: HashSet<&str> = owed_keys.iter().map(String::as_str).collect();

    // Answered → delivered, for each copy of the ids answered in the window.
    let mut latencies = Vec::with_capacity(load.answered.len() * copies);
    let mut before_answer = 0;
    for (key, answered_at) in load
        .answered
        .iter()
        .flat_map(|(id, at)| (1..=copies).map(move |c| (copy_id(id, c), at)))
    {
        let Some(at) = first.get(key.as_str()) else {
            continue;
        };
        if at < answered_at {
            before_answer += 1;
        }
        latencies.push(
            u64::try_from(at.saturating_duration_since(*answered_at).as_nanos())
                .unwrap_or(u64::MAX),
        );
    }
    latencies.sort_unstable();

    let owed_arrivals: Vec<Instant> = owed
        .iter()
        .filter_map(|id| first.get(id).copied())
        .collect();
    let missing = (owed.len() - owed_arrivals.len()) as u64;
    let end = window.end.min(load_ended);
    // Deliveries the sink saw while the load ran (all of them, warm-up
    // events included: ingest and delivery share the cores).
    let in_window = seen
        .iter()
        .filter(|(_, at)| *at >= window.start && *at <= end)
        .count() as u64;
    let window_len = end
        .saturating_duration_since(window.start)
        .as_secs_f64()
        .max(1e-9);
    let q = |p| Duration::from_nanos(quantile(&latencies, p));
    DeliveryStats {
        owed: owed.len() as u64,
        accepted: load.ok,
        copies: copies as u64,
        delivered: latencies.len() as u64,
        missing,
        duplicates: (seen.len() - first.len()) as u64,
        unowed: first.keys().filter(|id| !owed.contains(*id)).count() as u64,
        watched: WATCH,
        per_second_while_loading: in_window as f64 / window_len,
        p50: q(0.5),
        p99: q(0.99),
        max: q(1.0),
        before_answer,
        backlog_at_end: owed.len() as u64
            - owed_arrivals.iter().filter(|at| **at <= load_ended).count() as u64,
        drained_after: (missing == 0).then(|| {
            owed_arrivals.iter().max().map_or(Duration::ZERO, |last| {
                last.saturating_duration_since(load_ended)
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// The measured window from `from` to `to` ms after `base`.
    fn window(base: Instant, from: u64, to: u64) -> Window {
        Window {
            start: at(base, from),
            end: at(base, to),
        }
    }

    /// A warm-up event that never arrives is missing, and one duplicate
    /// is counted: neither hides behind the total count at the sink.
    #[test]
    fn a_lost_warm_up_event_and_a_duplicate_are_both_reported() {
        let t = Instant::now();
        let window = window(t, 1_000, 2_000);
        let load = LoadResult {
            ok: 2,
            answered: vec![("a".into(), at(t, 1_100)), ("b".into(), at(t, 1_200))],
            answered_outside: vec!["w1".into(), "w2".into()],
            ..LoadResult::default()
        };
        // w2 never arrives; `a` arrives twice: as many deliveries as owed.
        let seen = vec![
            ("w1".to_owned(), at(t, 900)),
            ("a".to_owned(), at(t, 1_150)),
            ("b".to_owned(), at(t, 1_300)),
            ("a".to_owned(), at(t, 7_000)),
        ];
        assert_eq!(seen.len(), owed(&load, 1).len());
        let s = stats(&load, &seen, window, at(t, 2_000), 1);
        assert_eq!(s.owed, 4);
        assert_eq!(s.accepted, 2);
        assert_eq!(s.delivered, 2);
        assert_eq!(s.missing, 1, "w2, answered during the warm-up");
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.unowed, 0);
        assert_eq!(s.drained_after, None, "not drained: w2 never came");
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.max, Duration::from_millis(100));
    }

    #[test]
    fn drained_is_the_first_arrival_of_the_last_owed_id() {
        let t = Instant::now();
        let window = window(t, 0, 1_000);
        let load = LoadResult {
            ok: 1,
            answered: vec![("a".into(), at(t, 100))],
            answered_outside: vec!["late".into()],
            ..LoadResult::default()
        };
        let seen = vec![
            ("a".to_owned(), at(t, 200)),
            ("late".to_owned(), at(t, 1_500)),
            // A resend and an id never answered 2xx (its request timed
            // out) do not move the drain.
            ("a".to_owned(), at(t, 6_000)),
            ("x".to_owned(), at(t, 6_500)),
        ];
        let s = stats(&load, &seen, window, at(t, 1_000), 1);
        assert_eq!(s.missing, 0);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.unowed, 1);
        assert_eq!(s.backlog_at_end, 1);
        assert_eq!(s.drained_after, Some(Duration::from_millis(500)));
    }

    /// With two destinations, each copy is owed on its own: one copy does
    /// not stand in for the other, and its latency counts apart.
    #[test]
    fn each_copy_of_a_fanned_out_webhook_is_owed_and_timed() {
        let t = Instant::now();
        let window = window(t, 0, 1_000);
        let load = LoadResult {
            ok: 2,
            answered: vec![("a".into(), at(t, 100)), ("b".into(), at(t, 200))],
            ..LoadResult::default()
        };
        let seen = vec![
            ("a".to_owned(), at(t, 110)),
            ("a#2".to_owned(), at(t, 130)),
            ("b".to_owned(), at(t, 210)),
            // b's second copy never comes; a's first comes again.
            ("a".to_owned(), at(t, 900)),
        ];
        let s = stats(&load, &seen, window, at(t, 1_000), 2);
        assert_eq!(s.owed, 4);
        assert_eq!(s.copies, 2);
        assert_eq!(s.delivered, 3);
        assert_eq!(s.missing, 1, "b#2");
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.max, Duration::from_millis(30));
        assert_eq!(s.per_second_while_loading, 4.0);
        assert_eq!(s.drained_after, None);
    }
}
