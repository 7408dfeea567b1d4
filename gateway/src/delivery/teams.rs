//! `kind: teams` destinations: Microsoft Teams incoming webhooks and
//! Workflows ("When a Teams webhook request is received") URLs.
//!
//! A Teams destination is an HTTP destination with three Teams rules on top,
//! all pure functions here so the delivery loop only calls them:
//!
//! - **Size.** Teams refuses messages over about 28 KB; sending one only
//!   burns the retry schedule, so [`oversized`] turns it into a dead letter
//!   before any request.
//! - **Errors disguised as success.** Office 365 connector ("incoming
//!   webhook") URLs answer `200` with body `1` on success, but also `200`
//!   with an error text (`Webhook message delivery failed with error: …`,
//!   `Summary or Text is required.`) on some failures. [`classify`] turns
//!   such an answer into a failed attempt so it is retried and, in the end,
//!   dead-lettered instead of counted as delivered. Workflows URLs answer
//!   `202` with no body, which stays a success.
//! - **Rate.** Connectors throttle more than four requests a second per
//!   webhook (and answer `429`, whose `Retry-After` the retry policy already
//!   honours). [`Pacer`] spaces the requests to one destination so the
//!   gateway stays under that instead of collecting 429s. An attempt waits
//!   at most [`MAX_PACE_WAIT`] for its slot; when the queue ahead is longer
//!   it is postponed (no attempt counted) rather than holding a worker.
//!
//! Not here: sending itself (the delivery loop's shared client) and the
//! retry decision (`retry.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::retry::AttemptResult;

/// Teams' message size limit ("approximately 28 KB" in Microsoft's docs for
/// incoming webhooks and bot messages); the whole posted body counts.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// Connectors allow four requests a second per webhook; a quarter second
/// between request starts keeps one gateway under it.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Longest an attempt sleeps for its slot while holding a worker; a later
/// slot means the delivery is postponed instead.
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(1);

/// Why a body cannot be sent to Teams at all, or `None` when it fits.
pub fn oversized(body_len: usize) -> Option<String> {
    (body_len > MAX_MESSAGE_BYTES).then(|| {
        format!("message is {body_len} bytes, over Teams' {MAX_MESSAGE_BYTES}-byte limit; not sent")
    })
}

/// Reads a Teams answer: a `200` whose body is neither empty nor `1` is a
/// legacy connector's error, so the attempt failed (status kept for the
/// record, the text as the error). Anything else is left as it is.
pub fn classify(mut result: AttemptResult, body: Option<&str>) -> AttemptResult {
    if result.status != Some(200) {
        return result;
    }
    let text = body.unwrap_or("").trim();
    if text.is_empty() || text == "1" {
        return result;
    }
    let throttled = text.contains("HTTP error 429");
    result.status = if throttled { Some(429) } else { None };
    result.error = Some(format!("Teams answered 200 with an error: {text}"));
    result
}

/// Spaces the requests to one destination at least an interval apart.
///
/// This is the process's own schedule. Gateways that share a store that
/// can pace for all of them (PostgreSQL) reserve their slots there, under
/// [`Pacer::key`]; this schedule is then only the fallback for when the
/// store cannot answer (see `attempt.rs`).
#[derive(Debug)]
pub struct Pacer {
    next: Mutex<Option<Instant>>,
    interval: Duration,
    key: String,
}

impl Pacer {
    /// A pacer with `interval` between request starts, for the receiver
    /// at `url`.
    pub fn new(url: &str, interval: Duration) -> Self {
        use sha2::Digest;
        Pacer {
            next: Mutex::new(None),
            interval,
            // Teams webhook URLs carry their credential: only a hash of
            // one is ever stored.
            key: format!(
                "teams:{}",
                hex::encode(sha2::Sha256::digest(url.as_bytes()))
            ),
        }
    }

    /// The receiver's name in a shared store: a hash of its URL.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The spacing between request starts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// At `now`, takes the next free slot if it is at most `max_wait` away
    /// and returns how long to wait for it (`Ok`); otherwise takes nothing
    /// and returns how long until the slots already taken have passed
    /// (`Err`), when asking again is worthwhile. Slots go in call order.
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        // A poisoned lock only means another attempt panicked mid-update;
        // the instant inside is still a valid schedule.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        *next = Some(slot + self.interval);
        Ok(wait)
    }
}

/// The pacer of the Teams webhook at `url`, shared by every destination
/// with that URL and kept across reloads: a reload compiles its
/// destinations anew, and a pacer made with them started every webhook's
/// spacing over (a burst right after a reload then met Teams' 429s, each a
/// retry used). Held weakly: it lives as long as a config that names the
/// URL (the generation being replaced still holds it while the new one is
/// compiled).
pub fn pacer_for(url: &str) -> Arc<Pacer> {
    static PACERS: OnceLock<Mutex<HashMap<String, Weak<Pacer>>>> = OnceLock::new();
    let mut pacers = PACERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pacers.get(url).and_then(Weak::upgrade) {
        return p;
    }
    pacers.retain(|_, p| p.strong_count() > 0);
    let p = Arc::new(Pacer::new(url, MIN_INTERVAL));
    pacers.insert(url.to_owned(), Arc::downgrade(&p));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pacer_per_webhook_url_across_compiles() {
        let url = "https://example.invalid/webhookb2/pacer-test";
        let first = pacer_for(url);
        // A reload compiles the destination again while the old generation
        // still holds its pacer: the same schedule goes on.
        let again = pacer_for(url);
        assert!(Arc::ptr_eq(&first, &again));
        let now = Instant::now();
        assert_eq!(first.reserve(now, MAX_PACE_WAIT), Ok(Duration::ZERO));
        assert_eq!(again.reserve(now, MAX_PACE_WAIT), Ok(MIN_INTERVAL));
        assert!(!Arc::ptr_eq(
            &first,
            &pacer_for("https://example.invalid/other")
        ));
        // Once no config names the URL, it starts afresh.
        drop((first, again));
        assert_eq!(
            pacer_for(url).reserve(now, MAX_PACE_WAIT),
            Ok(Duration::ZERO)
        );
    }

    fn ok(status: u16) -> AttemptResult {
        AttemptResult {
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn size_limit_is_inclusive() {
        assert_eq!(oversized(MAX_MESSAGE_BYTES), None);
        let reason = oversized(MAX_MESSAGE_BYTES + 1).unwrap();
        assert!(reason.contains("28672"), "{reason}");
    }

    #[test]
    fn connector_success_and_workflows_accepted_stay_successes() {
        for (status, body) in [
            (200, Some("1")),
            (200, Some(" 1\n")),
            (200, None),
            (202, None),
        ] {
            let r = classify(ok(status), body);
            assert_eq!((r.status, r.error), (Some(status), None), "{body:?}");
        }
        // Only 200 is read: a 4xx text stays the 4xx it is.
        let r = classify(ok(400), Some("Bad payload"));
        assert_eq!((r.status, r.error), (Some(400), None));
    }

    #[test]
    fn two_hundred_with_error_text_is_a_failure() {
        let r = classify(
            ok(200),
            Some(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId abc",
            ),
        );
        assert_eq!(r.status, None);
        assert!(r.error.unwrap().contains("HTTP error 413"));
        let r = classify(ok(200), Some("Summary or Text is required."));
        assert_eq!(r.status, None);
    }

    #[test]
    fn two_hundred_reporting_throttling_is_a_429() {
        let r = classify(
            ok(200),
            Some(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId abc",
            ),
        );
        assert_eq!(r.status, Some(429));
        assert!(r.error.is_some());
    }

    #[test]
    fn pacer_hands_out_spaced_slots_and_refuses_far_ones() {
        let pacer = Pacer::new("https://example.invalid/webhookb2/slots", MIN_INTERVAL);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Ok(MIN_INTERVAL));
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Ok(MIN_INTERVAL * 2));
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Ok(MIN_INTERVAL * 3));
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Ok(MIN_INTERVAL * 4));
        // Five slots taken: the sixth is 1.25 s away, over the bound, and
        // refusing it takes nothing.
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Err(MIN_INTERVAL * 5));
        assert_eq!(pacer.reserve(t0, MAX_PACE_WAIT), Err(MIN_INTERVAL * 5));
        // Once time has passed the taken slots, the next one is free now.
        let later = t0 + MIN_INTERVAL * 10;
        assert_eq!(pacer.reserve(later, MAX_PACE_WAIT), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve(later, MAX_PACE_WAIT), Ok(MIN_INTERVAL));
    }
}
