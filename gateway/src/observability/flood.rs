//! Repeated log lines, held to one per kind and key every
//! [`WINDOW`]. A failure that every request or every attempt meets (the
//! database restarting, a plugin that traps, a destination that is down)
//! otherwise writes a line per request: 400 error lines in the one second
//! a PostgreSQL restart took under load, tens of thousands in a minute's
//! outage, at the moment the gateway is busiest. As Vector does for its
//! internal logs, the first line of a kind and key in a window is logged
//! at its level; the rest of the window's go to debug (so a 5xx's
//! `request_id` still finds its line with `RUST_LOG=debug`), and the next
//! line logged at its level says how many were held back (`suppressed`).
//! Metrics count every occurrence; only the log is thinned.
//!
//! A kind is a call site (one `static Flood` each, [`log_limited!`]); a key
//! tells apart what an operator fixes separately (a route, a destination).
//! Keys are few (the config's names); past [`MAX_KEYS`] the stalest is
//! forgotten, which at worst logs its next line at once.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a kind and key stays quiet after a line is logged.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Keys remembered per call site.
const MAX_KEYS: usize = 256;

/// One call site's windows, per key.
#[derive(Debug, Default)]
pub struct Flood {
    keys: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    /// When the line logged at its level was, from [`epoch`].
    logged_at: Duration,
    /// Lines sent to debug since.
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it at its level; `suppressed` lines of its kind and key went to
    /// debug since the last one.
    Log { suppressed: u64 },
    /// Log it at debug: a line of its kind and key was logged less than
    /// [`WINDOW`] ago.
    Quiet,
}

impl Flood {
    /// A call site's state, empty (usable in a `static`).
    pub const fn new() -> Self {
        Flood {
            keys: Mutex::new(Vec::new()),
        }
    }

    /// Whether a line of this kind and `key` is logged at its level now.
    pub fn admit(&self, key: &str) -> Verdict {
        self.admit_at(key, epoch().elapsed())
    }

    /// [`admit`](Self::admit) at `now` (time since any fixed instant).
    fn admit_at(&self, key: &str, now: Duration) -> Verdict {
        // A poisoned lock only means a panic while it was held: the
        // entries are plain counters and times, still valid.
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = keys.iter_mut().find(|e| &*e.key == key) {
            if now.saturating_sub(entry.logged_at) < WINDOW {
                entry.suppressed += 1;
                return Verdict::Quiet;
            }
            let suppressed = std::mem::take(&mut entry.suppressed);
            entry.logged_at = now;
            return Verdict::Log { suppressed };
        }
        if keys.len() >= MAX_KEYS
            && let Some(stalest) = keys
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.logged_at)
                .map(|(i, _)| i)
        {
            keys.swap_remove(stalest);
        }
        keys.push(Entry {
            key: key.into(),
            logged_at: now,
            suppressed: 0,
        });
        Verdict::Log { suppressed: 0 }
    }
}

/// The instant every call site measures from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Logs a line at `$level` (`error`, `warn`, `info`) when `$flood` admits
/// it for `$key`, with `suppressed = N` when lines were held back since
/// the last one; otherwise at debug. The rest is what the `tracing` macro
/// of that level takes (fields, then the message).
macro_rules! log_limited {
    ($flood:expr, $key:expr, $level:ident, $($rest:tt)+) => {
        match $flood.admit($key) {
            $crate::observability::flood::Verdict::Log { suppressed: 0 } => {
                ::tracing::$level!($($rest)+)
            }
            $crate::observability::flood::Verdict::Log { suppressed } => {
                ::tracing::$level!(suppressed, $($rest)+)
            }
            $crate::observability::flood::Verdict::Quiet => ::tracing::debug!($($rest)+),
        }
    };
}
pub(crate) use log_limited;

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn one_line_per_key_and_window_then_the_count_of_those_held_back() {
        let flood = Flood::new();
        assert_eq!(flood.admit_at("a", S), Verdict::Log { suppressed: 0 });
        for _ in 0..5 {
            assert_eq!(flood.admit_at("a", 2 * S), Verdict::Quiet);
        }
        // Another key has its own window.
        assert_eq!(flood.admit_at("b", 2 * S), Verdict::Log { suppressed: 0 });
        assert_eq!(flood.admit_at("a", S + WINDOW - S / 10), Verdict::Quiet);
        assert_eq!(
            flood.admit_at("a", S + WINDOW),
            Verdict::Log { suppressed: 6 }
        );
        // The count starts again with the new window.
        assert_eq!(flood.admit_at("a", S + WINDOW + S), Verdict::Quiet);
        assert_eq!(
            flood.admit_at("a", S + 3 * WINDOW),
            Verdict::Log { suppressed: 1 }
        );
        assert_eq!(
            flood.admit_at("b", 3 * WINDOW),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn past_the_key_limit_the_stalest_key_is_forgotten() {
        let flood = Flood::new();
        for i in 0..MAX_KEYS {
            let at = S * u32::try_from(i).unwrap() / 1000;
            assert_eq!(
                flood.admit_at(&i.to_string(), at),
                Verdict::Log { suppressed: 0 }
            );
        }
        let now = S;
        assert_eq!(flood.admit_at("new", now), Verdict::Log { suppressed: 0 });
        assert_eq!(flood.keys.lock().unwrap().len(), MAX_KEYS);
        // Key "0" was the stalest: forgotten, so its next line is logged.
        assert_eq!(flood.admit_at("0", now), Verdict::Log { suppressed: 0 });
        // The others are remembered and still in their window.
        assert_eq!(flood.admit_at("200", now), Verdict::Quiet);
        assert_eq!(flood.admit_at("new", now), Verdict::Quiet);
    }

    #[test]
    fn concurrent_callers_log_one_line_per_window() {
        let flood = std::sync::Arc::new(Flood::new());
        let logged: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let flood = flood.clone();
                    s.spawn(move || {
                        (0..1000)
                            .filter(|_| matches!(flood.admit_at("k", S), Verdict::Log { .. }))
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(logged, 1);
        assert_eq!(
            flood.admit_at("k", S + WINDOW),
            Verdict::Log { suppressed: 3999 }
        );
    }
}
