//! Pacing: request starts to one receiver spaced at least an interval
//! apart, for receivers that throttle. A destination is paced when it sets
//! `rate:` (`kind: http` or `teams`) and always when it is `kind: teams`
//! (Teams allows four requests a second per webhook; see `teams.rs`).
//!
//! An attempt takes its receiver's next slot and sleeps until it, at most
//! [`MAX_PACE_WAIT`]; when the slots already taken reach further, the
//! delivery is postponed until they have passed, with no attempt counted,
//! so a paced destination never holds a worker or its lane for longer than
//! that while other destinations wait.
//!
//! Whose schedule: gateways that share a store that can pace for all of
//! them (PostgreSQL) reserve their slots there, under the receiver's key
//! (`Store::reserve_slot`); otherwise, or when that store cannot answer,
//! the process keeps its own ([`Pacer`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::config::{DestinationKind, Rate};
use crate::observability::flood::{Flood, log_limited};
use crate::store::Store;

/// Longest an attempt sleeps for its slot while holding a worker; a later
/// slot means the delivery is postponed instead.
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(1);

/// One receiver's schedule in this process: the next free slot.
#[derive(Debug)]
pub struct Pacer {
    next: Mutex<Option<Instant>>,
    key: String,
}

impl Pacer {
    /// A pacer for the receiver named `key` in a shared store.
    fn new(key: String) -> Self {
        Pacer {
            next: Mutex::new(None),
            key,
        }
    }

    /// The receiver's name in a shared store: a kind and a hash of its URL
    /// (a Teams webhook URL is its credential: only a hash is ever stored).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// At `now`, takes the next free slot if it is at most `max_wait` away
    /// and returns how long to wait for it (`Ok`), and the slot after it is
    /// `interval` later; otherwise takes nothing and returns how long until
    /// the slots already taken have passed (`Err`), when asking again is
    /// worthwhile. Slots go in call order.
    pub fn reserve(
        &self,
        now: Instant,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        // A poisoned lock only means another attempt panicked mid-update;
        // the instant inside is still a valid schedule.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        let wait = slot - now;
        if wait > max_wait {
            return Err(wait);
        }
        *next = Some(slot + interval);
        Ok(wait)
    }
}

/// A destination's pacing: its receiver's schedule and the spacing this
/// destination keeps in it.
#[derive(Debug, Clone)]
pub struct Pace {
    /// The receiver's schedule, shared by every destination with its URL.
    pub pacer: Arc<Pacer>,
    /// Between this destination's request starts.
    pub interval: Duration,
}

/// How a destination of `kind` at `url` is paced, if it is: Teams
/// webhooks at Teams' rate or the destination's `rate`, whichever is
/// slower; HTTP destinations at their `rate`.
pub fn pace_for(kind: DestinationKind, url: &str, rate: Option<Rate>) -> Option<Pace> {
    let (prefix, floor) = match kind {
        DestinationKind::Teams => ("teams", super::teams::MIN_INTERVAL),
        DestinationKind::Http if rate.is_some() => ("rate", Duration::ZERO),
        _ => return None,
    };
    let interval = rate.map_or(floor, |r| r.interval().max(floor));
    Some(Pace {
        pacer: pacer_for(prefix, url),
        interval,
    })
}

/// The schedule of the receiver at `url`, shared by every destination with
/// that URL (and kind) and kept across reloads: a reload compiles its
/// destinations anew, and a schedule made with them started every
/// receiver's spacing over (a burst right after a reload then met the
/// receiver's 429s, each a retry used). Held weakly: it lives as long as a
/// config that names the URL (the generation being replaced still holds it
/// while the new one is compiled).
fn pacer_for(prefix: &str, url: &str) -> Arc<Pacer> {
    use sha2::Digest;
    static PACERS: OnceLock<Mutex<HashMap<String, Weak<Pacer>>>> = OnceLock::new();
    let key = format!(
        "{prefix}:{}",
        hex::encode(sha2::Sha256::digest(url.as_bytes()))
    );
    let mut pacers = PACERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pacers.get(&key).and_then(Weak::upgrade) {
        return p;
    }
    pacers.retain(|_, p| p.strong_count() > 0);
    let p = Arc::new(Pacer::new(key.clone()));
    pacers.insert(key, Arc::downgrade(&p));
    p
}

/// A request slot for `pace`: from `store` when it paces for every gateway
/// that shares it, else (or when it cannot answer) from this process's own
/// schedule. `Ok`: wait this long, then send. `Err`: postpone this long.
pub async fn slot(store: &dyn Store, pace: &Pace) -> Result<Duration, Duration> {
    let shared = store
        .reserve_slot(pace.pacer.key().to_owned(), pace.interval, MAX_PACE_WAIT)
        .await;
    match shared {
        Ok(Some(slot)) => slot,
        Ok(None) => pace
            .pacer
            .reserve(Instant::now(), pace.interval, MAX_PACE_WAIT),
        Err(e) => {
            static UNPACED: Flood = Flood::new();
            log_limited!(UNPACED, "", warn, error = %e, "the store could not pace a request; pacing in this gateway alone");
            pace.pacer
                .reserve(Instant::now(), pace.interval, MAX_PACE_WAIT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::teams::MIN_INTERVAL;

    #[test]
    fn one_pacer_per_receiver_url_across_compiles() {
        let url = "https://example.invalid/webhookb2/pacer-test";
        let first = pace_for(DestinationKind::Teams, url, None).unwrap();
        // A reload compiles the destination again while the old generation
        // still holds its pacer: the same schedule goes on.
        let again = pace_for(DestinationKind::Teams, url, None).unwrap();
        assert!(Arc::ptr_eq(&first.pacer, &again.pacer));
        let now = Instant::now();
        let take = |p: &Pace| p.pacer.reserve(now, p.interval, MAX_PACE_WAIT);
        assert_eq!(take(&first), Ok(Duration::ZERO));
        assert_eq!(take(&again), Ok(MIN_INTERVAL));
        let other = pace_for(
            DestinationKind::Teams,
            "https://example.invalid/other",
            None,
        );
        assert!(!Arc::ptr_eq(&first.pacer, &other.unwrap().pacer));
        // Once no config names the URL, it starts afresh.
        drop((first, again));
        let fresh = pace_for(DestinationKind::Teams, url, None).unwrap();
        assert_eq!(take(&fresh), Ok(Duration::ZERO));
    }

    #[test]
    fn a_destination_is_paced_at_its_rate_and_teams_never_faster_than_teams_allows() {
        let rate = |s: &str| Some(Rate::parse(s).unwrap());
        let url = "https://example.invalid/paced";
        let interval = |kind, r| pace_for(kind, url, r).map(|p| p.interval);
        assert_eq!(interval(DestinationKind::Http, None), None);
        assert_eq!(
            interval(DestinationKind::Http, rate("20/s")),
            Some(Duration::from_millis(50))
        );
        assert_eq!(interval(DestinationKind::Teams, None), Some(MIN_INTERVAL));
        assert_eq!(
            interval(DestinationKind::Teams, rate("20/s")),
            Some(MIN_INTERVAL)
        );
        assert_eq!(
            interval(DestinationKind::Teams, rate("60/min")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(interval(DestinationKind::Log, rate("1/s")), None);
        // An http and a teams destination on one URL keep their own
        // schedules and store keys: Teams' is its webhook's alone.
        let http = pace_for(DestinationKind::Http, url, rate("1/s")).unwrap();
        let teams = pace_for(DestinationKind::Teams, url, None).unwrap();
        assert!(http.pacer.key().starts_with("rate:"));
        assert!(teams.pacer.key().starts_with("teams:"));
        assert!(!http.pacer.key().contains("example"));
    }

    #[test]
    fn pacer_hands_out_spaced_slots_and_refuses_far_ones() {
        let pacer = Pacer::new("teams:slots".into());
        let t0 = Instant::now();
        let take = |at| pacer.reserve(at, MIN_INTERVAL, MAX_PACE_WAIT);
        assert_eq!(take(t0), Ok(Duration::ZERO));
        assert_eq!(take(t0), Ok(MIN_INTERVAL));
        assert_eq!(take(t0), Ok(MIN_INTERVAL * 2));
        assert_eq!(take(t0), Ok(MIN_INTERVAL * 3));
        assert_eq!(take(t0), Ok(MIN_INTERVAL * 4));
        // Five slots taken: the sixth is 1.25 s away, over the bound, and
        // refusing it takes nothing.
        assert_eq!(take(t0), Err(MIN_INTERVAL * 5));
        assert_eq!(take(t0), Err(MIN_INTERVAL * 5));
        // Once time has passed the taken slots, the next one is free now.
        let later = t0 + MIN_INTERVAL * 10;
        assert_eq!(take(later), Ok(Duration::ZERO));
        assert_eq!(take(later), Ok(MIN_INTERVAL));
    }
}
