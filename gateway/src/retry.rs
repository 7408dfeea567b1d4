//! When to try again: the retry policy of a destination and the decision
//! taken after each attempt.

use std::time::Duration;

use rand::Rng as _;

use crate::config::RetryConfig;

/// Default waits between retries: 6 retries over about 1.7 days, following
/// Kaizala's "up to 6 retries, exponential, within 2 days".
pub const DEFAULT_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(12 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
];

/// Longest wait a `Retry-After` header can impose: a destination must not
/// park a delivery for weeks.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest wait any policy yields, whatever its numbers: an exponential
/// policy without `max_delay` would otherwise schedule attempts past year
/// 9999, which no timestamp can hold. Config validation caps every
/// configured wait at this too.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A destination's retry policy, compiled from its config.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    waits: Waits,
    jitter: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum Waits {
    Schedule(Vec<Duration>),
    Exponential {
        initial: Duration,
        factor: f64,
        max: Option<Duration>,
        retries: u32,
    },
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            waits: Waits::Schedule(DEFAULT_SCHEDULE.to_vec()),
            jitter: 0.1,
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, Default)]
pub struct AttemptResult {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// `Retry-After`, if the response carried one.
    pub retry_after: Option<Duration>,
    /// Transport error, if no response arrived.
    pub error: Option<String>,
}

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// 2xx: done.
    Delivered,
    /// Failed; try again after this wait.
    Retry(Duration),
    /// Failed for good.
    Dead(String),
}

impl DeliveryOutcome {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry(_) => "retry",
            DeliveryOutcome::Dead(_) => "dead",
        }
    }
}

impl RetryPolicy {
    /// Compiles a destination's `retry:` block.
    pub fn from_config(c: &RetryConfig) -> Self {
        // `scale` (validated to (0, 1]) shrinks every wait alike, so a test
        // sees the configured schedule's shape in milliseconds.
        let scale = |d: Duration| {
            if c.scale == 1.0 {
                d
            } else {
                d.mul_f64(c.scale)
            }
        };
        let waits = match (&c.schedule, &c.exponential) {
            (Some(s), _) => Waits::Schedule(s.iter().map(|d| scale(d.0)).collect()),
            (None, Some(e)) => Waits::Exponential {
                initial: scale(e.initial.0),
                factor: e.factor,
                max: e.max_delay.map(|d| scale(d.0)),
                retries: e.retries,
            },
            (None, None) => Waits::Schedule(DEFAULT_SCHEDULE.iter().copied().map(scale).collect()),
        };
        RetryPolicy {
            waits,
            jitter: c.jitter,
        }
    }

    /// The wait before retry number `n` (1-based), before jitter; `None`
    /// when the policy allows no retry `n`. Never more than [`MAX_WAIT`].
    pub fn wait(&self, n: u32) -> Option<Duration> {
        self.uncapped_wait(n).map(|d| d.min(MAX_WAIT))
    }

    fn uncapped_wait(&self, n: u32) -> Option<Duration> {
        match &self.waits {
            Waits::Schedule(s) => s.get(usize::try_from(n.checked_sub(1)?).ok()?).copied(),
            Waits::Exponential {
                initial,
                factor,
                max,
                retries,
            } => {
                if n == 0 || n > *retries {
                    return None;
                }
                let exponent = i32::try_from(n - 1).unwrap_or(i32::MAX);
                let secs = initial.as_secs_f64() * factor.powi(exponent);
                // Overflow (inf) and nonsense (NaN, negative) saturate.
                let d = if secs.is_nan() || secs <= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::try_from_secs_f64(secs).unwrap_or(MAX_WAIT)
                };
                Some(max.map_or(d, |m| d.min(m)))
            }
        }
    }

    /// Decides what follows an attempt, given the retries already used.
    pub fn decide(&self, result: &AttemptResult, retries_used: u32) -> DeliveryOutcome {
        match result.status {
            Some(s) if (200..300).contains(&s) => return DeliveryOutcome::Delivered,
            // The Standard Webhooks convention: the endpoint is gone.
            Some(410) => {
                return DeliveryOutcome::Dead("410 Gone: the destination asked to stop".into());
            }
            _ => {}
        }
        let Some(wait) = self.wait(retries_used.saturating_add(1)) else {
            let last = match (&result.status, &result.error) {
                (Some(s), _) => format!("HTTP {s}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "failed".into(),
            };
            return DeliveryOutcome::Dead(format!(
                "retries exhausted after {} attempt(s); last: {last}",
                u64::from(retries_used) + 1
            ));
        };
        let mut wait = self.jittered(wait);
        if matches!(result.status, Some(429 | 503))
            && let Some(after) = result.retry_after
        {
            wait = wait.max(after.min(MAX_RETRY_AFTER));
        }
        DeliveryOutcome::Retry(wait)
    }

    /// The policy in words, for operators (the console's destination
    /// card): `6 retries: 1m, 10m, 1h, 4h, 12h, 1day (±10 %)`. Waits are
    /// shown as they run, `scale` applied.
    pub fn summary(&self) -> String {
        let show = |d: Duration| humantime::format_duration(d.min(MAX_WAIT)).to_string();
        let plural = |n: u64| if n == 1 { "retry" } else { "retries" };
        let body = match &self.waits {
            Waits::Schedule(s) if s.is_empty() => return "no retries: one attempt".into(),
            Waits::Schedule(s) => format!(
                "{} {}: {}",
                s.len(),
                plural(s.len() as u64),
                s.iter().map(|d| show(*d)).collect::<Vec<_>>().join(", ")
            ),
            Waits::Exponential { retries: 0, .. } => return "no retries: one attempt".into(),
            Waits::Exponential {
                initial,
                factor,
                max,
                retries,
            } => {
                let cap = max.map_or(String::new(), |m| format!(", at most {}", show(m)));
                format!(
                    "{retries} {}: {} growing ×{factor}{cap}",
                    plural(u64::from(*retries)),
                    show(*initial)
                )
            }
        };
        if self.jitter.is_nan() || self.jitter <= 0.0 {
            body
        } else {
            format!("{body} (±{:.0} %)", self.jitter.min(1.0) * 100.0)
        }
    }

    fn jittered(&self, d: Duration) -> Duration {
        // NaN would make `random_range` panic.
        if self.jitter.is_nan() || self.jitter <= 0.0 || d.is_zero() {
            return d;
        }
        let jitter = self.jitter.min(1.0);
        let f = rand::rng().random_range(1.0 - jitter..=1.0 + jitter);
        Duration::try_from_secs_f64(d.as_secs_f64() * f)
            .unwrap_or(d)
            .min(MAX_WAIT)
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        // Capped here too: the value is the destination's to choose.
        return Some(Duration::from_secs(secs).min(MAX_WAIT));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Duration as CfgDuration, ExponentialConfig};

    fn status(s: u16) -> AttemptResult {
        AttemptResult {
            status: Some(s),
            ..Default::default()
        }
    }

    #[test]
    fn default_schedule_is_six_retries_within_two_days() {
        let p = RetryPolicy::default();
        let total: Duration = (1..=6).map(|n| p.wait(n).unwrap()).sum();
        assert!(total < Duration::from_secs(2 * 86_400), "{total:?}");
        assert!(total > Duration::from_secs(86_400), "{total:?}");
        assert_eq!(p.wait(7), None);
    }

    #[test]
    fn a_policy_reads_as_its_waits() {
        assert_eq!(
            RetryPolicy::default().summary(),
            "6 retries: 1m, 10m, 1h, 4h, 12h, 1day (±10 %)"
        );
        let exp = |retries, max_delay: Option<CfgDuration>, jitter| {
            RetryPolicy::from_config(&RetryConfig {
                schedule: None,
                exponential: Some(ExponentialConfig {
                    initial: CfgDuration::from_secs(5),
                    factor: 3.0,
                    max_delay,
                    retries,
                }),
                jitter,
                scale: 1.0,
            })
            .summary()
        };
        assert_eq!(
            exp(4, Some(CfgDuration::from_secs(3600)), 0.0),
            "4 retries: 5s growing ×3, at most 1h"
        );
        assert_eq!(exp(1, None, 0.25), "1 retry: 5s growing ×3 (±25 %)");
        assert_eq!(exp(0, None, 0.1), "no retries: one attempt");
        let scaled = RetryPolicy::from_config(&RetryConfig {
            schedule: Some(vec![CfgDuration::from_secs(60)]),
            exponential: None,
            jitter: 0.0,
            scale: 0.001,
        });
        assert_eq!(scaled.summary(), "1 retry: 60ms", "as it runs, scaled");
        let none = RetryPolicy::from_config(&RetryConfig {
            schedule: Some(vec![]),
            exponential: None,
            jitter: 0.1,
            scale: 1.0,
        });
        assert_eq!(none.summary(), "no retries: one attempt");
    }

    #[test]
    fn schedule_decides_retry_then_dead() {
        let p = RetryPolicy::from_config(&RetryConfig {
            schedule: Some(vec![
                CfgDuration::from_millis(10),
                CfgDuration::from_millis(20),
            ]),
            exponential: None,
            jitter: 0.0,
            scale: 1.0,
        });
        assert_eq!(
            p.decide(&status(500), 0),
            DeliveryOutcome::Retry(Duration::from_millis(10))
        );
        assert_eq!(
            p.decide(&status(404), 1),
            DeliveryOutcome::Retry(Duration::from_millis(20))
        );
        assert!(matches!(
            p.decide(&status(500), 2),
            DeliveryOutcome::Dead(_)
        ));
        assert_eq!(p.decide(&status(204), 5), DeliveryOutcome::Delivered);
        assert!(matches!(p.decide(&status(410), 0), DeliveryOutcome::Dead(r) if r.contains("410")));
        // 3xx is a failure: signed deliveries never follow redirects.
        assert!(matches!(
            p.decide(&status(302), 0),
            DeliveryOutcome::Retry(_)
        ));
    }

    #[test]
    fn scale_shrinks_the_default_schedule_alike() {
        let p = RetryPolicy::from_config(&RetryConfig {
            scale: 0.001,
            ..RetryConfig::default()
        });
        let waits: Vec<Duration> = (1..=7).filter_map(|n| p.wait(n)).collect();
        assert_eq!(
            waits,
            DEFAULT_SCHEDULE
                .iter()
                .map(|d| *d / 1000)
                .collect::<Vec<_>>(),
            "six retries, each a thousandth"
        );
        assert_eq!(p.jitter, 0.1, "the default jitter stays");
    }

    #[test]
    fn retry_after_on_429_and_503_is_honoured() {
        let p = RetryPolicy::from_config(&RetryConfig {
            schedule: Some(vec![CfgDuration::from_millis(10)]),
            exponential: None,
            jitter: 0.0,
            scale: 1.0,
        });
        let r = AttemptResult {
            status: Some(429),
            retry_after: Some(Duration::from_secs(3)),
            error: None,
        };
        assert_eq!(
            p.decide(&r, 0),
            DeliveryOutcome::Retry(Duration::from_secs(3))
        );
        let r500 = AttemptResult {
            status: Some(500),
            ..r
        };
        assert_eq!(
            p.decide(&r500, 0),
            DeliveryOutcome::Retry(Duration::from_millis(10))
        );
        assert_eq!(
            parse_retry_after("120", std::time::SystemTime::now()),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn exponential_grows_and_caps() {
        let p = RetryPolicy::from_config(&RetryConfig {
            schedule: None,
            exponential: Some(ExponentialConfig {
                initial: CfgDuration::from_secs(1),
                factor: 10.0,
                max_delay: Some(CfgDuration::from_secs(50)),
                retries: 3,
            }),
            jitter: 0.0,
            scale: 1.0,
        });
        assert_eq!(p.wait(1), Some(Duration::from_secs(1)));
        assert_eq!(p.wait(2), Some(Duration::from_secs(10)));
        assert_eq!(p.wait(3), Some(Duration::from_secs(50)));
        assert_eq!(p.wait(4), None);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy {
            waits: Waits::Schedule(vec![Duration::from_secs(100)]),
            jitter: 0.1,
        };
        for _ in 0..100 {
            let DeliveryOutcome::Retry(w) = p.decide(&status(500), 0) else {
                panic!()
            };
            assert!(
                w >= Duration::from_secs(90) && w <= Duration::from_secs(110),
                "{w:?}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn exponential(
            initial_ms: u64,
            factor: f64,
            max_ms: Option<u64>,
            retries: u32,
        ) -> RetryPolicy {
            RetryPolicy::from_config(&RetryConfig {
                schedule: None,
                exponential: Some(ExponentialConfig {
                    initial: CfgDuration::from_millis(initial_ms),
                    factor,
                    max_delay: max_ms.map(CfgDuration::from_millis),
                    retries,
                }),
                jitter: 0.0,
                scale: 1.0,
            })
        }

        proptest! {
            /// Any numbers at all (even ones validation refuses): no panic,
            /// and never a wait past MAX_WAIT.
            #[test]
            fn waits_never_panic_and_never_exceed_the_cap(
                initial_ms in any::<u64>(),
                factor in any::<f64>(),
                max_ms in proptest::option::of(any::<u64>()),
                retries in any::<u32>(),
                n in any::<u32>(),
                jitter in any::<f64>(),
                used in any::<u32>(),
                status in proptest::option::of(any::<u16>()),
                retry_after_s in proptest::option::of(any::<u64>()),
            ) {
                let mut p = exponential(initial_ms, factor, max_ms, retries);
                p.jitter = jitter;
                if let Some(w) = p.wait(n) {
                    prop_assert!(w <= MAX_WAIT);
                }
                let result = AttemptResult {
                    status,
                    retry_after: retry_after_s.map(Duration::from_secs),
                    error: None,
                };
                if let DeliveryOutcome::Retry(w) = p.decide(&result, used) {
                    prop_assert!(w <= MAX_WAIT.max(MAX_RETRY_AFTER));
                }
            }

            /// With a sane factor, waits grow and stay under `max_delay`.
            #[test]
            fn exponential_waits_grow_up_to_their_cap(
                initial_ms in 0u64..=86_400_000,
                factor in 1.0f64..=1000.0,
                max_ms in proptest::option::of(0u64..=31_536_000_000),
                retries in 1u32..=1000,
            ) {
                let p = exponential(initial_ms, factor, max_ms, retries);
                let mut last = Duration::ZERO;
                for n in 1..=retries.min(64) {
                    let w = p.wait(n).expect("a retry within `retries`");
                    prop_assert!(w >= last, "retry {n}: {w:?} < {last:?}");
                    if let Some(max) = max_ms {
                        prop_assert!(w <= Duration::from_millis(max));
                    }
                    last = w;
                }
                prop_assert_eq!(p.wait(retries.saturating_add(1)), None);
                prop_assert_eq!(p.wait(0), None);
            }

            /// Jitter keeps a wait within its fraction.
            #[test]
            fn jitter_stays_within_its_fraction_for_any_wait(
                wait_ms in 1u64..=31_536_000_000,
                jitter in 0.0f64..=1.0,
            ) {
                let p = RetryPolicy {
                    waits: Waits::Schedule(vec![Duration::from_millis(wait_ms)]),
                    jitter,
                };
                let DeliveryOutcome::Retry(w) = p.decide(&status(500), 0) else {
                    panic!("a schedule of one wait retries once");
                };
                let base = Duration::from_millis(wait_ms).as_secs_f64();
                let w = w.as_secs_f64();
                // A microsecond of slack for float rounding.
                prop_assert!(w >= base * (1.0 - jitter) - 1e-6, "{w} < {base} * (1 - {jitter})");
                prop_assert!(w <= (base * (1.0 + jitter)).min(MAX_WAIT.as_secs_f64()) + 1e-6);
            }

            /// `Retry-After` text never panics and is capped.
            #[test]
            fn retry_after_parses_without_panicking(value in ".*") {
                if let Some(d) = parse_retry_after(&value, std::time::SystemTime::now()) {
                    prop_assert!(d <= MAX_WAIT || httpdate::parse_http_date(value.trim()).is_ok());
                }
            }
        }
    }
}
