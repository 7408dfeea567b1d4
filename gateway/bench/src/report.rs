//! The results: one table on stdout, the same as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::load::{LoadResult, quantile};

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// Short key (`baseline`, `plugins`, …).
    pub key: &'static str,
    /// What the row measures.
    pub title: String,
    /// Successful requests in the window.
    pub requests: u64,
    /// Successful requests per second.
    pub per_second: f64,
    /// Latency quantiles.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Non-2xx answers and I/O errors.
    pub errors: u64,
    /// A few of them.
    pub error_samples: Vec<String>,
    /// The server's peak RSS (VmHWM), bytes.
    pub peak_rss: u64,
    /// The server's CPU time over the window, seconds.
    pub cpu_seconds: f64,
    /// `per_second` over the baseline's.
    pub ratio: Option<f64>,
}

impl Row {
    /// A row from a load result and the server's numbers.
    pub fn new(
        key: &'static str,
        title: String,
        mut load: LoadResult,
        peak_rss: u64,
        cpu_seconds: f64,
    ) -> Self {
        load.latencies_ns.sort_unstable();
        let q = |p| Duration::from_nanos(quantile(&load.latencies_ns, p));
        Row {
            key,
            title,
            requests: load.ok,
            per_second: load.per_second(),
            p50: q(0.50),
            p99: q(0.99),
            p999: q(0.999),
            errors: load.errors,
            error_samples: load.error_samples,
            peak_rss,
            cpu_seconds,
            ratio: None,
        }
    }

    /// Server CPU time per successful request.
    pub fn cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64(self.cpu_seconds / (self.requests.max(1) as f64))
    }
}

/// A delivery row's own numbers, per `webhook-id` (see `delivery.rs`).
#[derive(Debug)]
pub struct DeliveryStats {
    /// Deliveries the gateway owes: `copies` for every request answered
    /// 2xx, warm-up and the window's edges included.
    pub owed: u64,
    /// Events the gateway accepted in the measured window.
    pub accepted: u64,
    /// Deliveries each webhook owes (the route's destinations, all at the
    /// sink).
    pub copies: u64,
    /// Of their `accepted × copies` deliveries, how many the sink saw (the
    /// latencies are theirs).
    pub delivered: u64,
    /// Owed (any 2xx, warm-up included) and never seen at the sink within
    /// the drain limit.
    pub missing: u64,
    /// Extra copies the sink saw of an id it had already seen, up to
    /// `watched` after the drain.
    pub duplicates: u64,
    /// Ids the sink saw that no 2xx answered (a request that failed or
    /// timed out after the gateway had stored it): not an error.
    pub unowed: u64,
    /// How long the sink was watched for duplicates after the drain.
    pub watched: Duration,
    /// Deliveries per second at the sink while the load ran.
    pub per_second_while_loading: f64,
    /// Answered → delivered, median.
    pub p50: Duration,
    /// Answered → delivered, 99th percentile.
    pub p99: Duration,
    /// Answered → delivered, worst.
    pub max: Duration,
    /// Deliveries the sink saw before the client had read the 202 (counted
    /// as zero latency).
    pub before_answer: u64,
    /// Accepted events not yet delivered when the load ended.
    pub backlog_at_end: u64,
    /// From the end of the load to the last delivery (`None`: not all
    /// arrived within the limit).
    pub drained_after: Option<Duration>,
}

/// The drain measurement: the delivery side alone, sending a stored
/// backlog with no ingest running (see `drain_backlog` in `main.rs`).
#[derive(Debug)]
pub struct DrainStats {
    /// Webhooks accepted while the destination was paused: the backlog.
    pub backlog: u64,
    /// Of those, how many the sink saw.
    pub delivered: u64,
    /// Sink arrivals beyond the first of each id (watched one lease and a
    /// second after the drain).
    pub duplicates: u64,
    /// From the reload that unpaused the destination to the first delivery.
    pub first_after: Option<Duration>,
    /// From the first delivery of the backlog to the last.
    pub span: Option<Duration>,
    /// The gateway's CPU time from the reload to the last delivery, seconds.
    pub cpu_seconds: f64,
}

impl DrainStats {
    /// Deliveries per second from the first to the last.
    pub fn per_second(&self) -> Option<f64> {
        let span = self.span?.as_secs_f64();
        (span > 0.0).then(|| self.delivered as f64 / span)
    }

    /// The gateway's CPU time per delivery.
    pub fn cpu_per_delivery(&self) -> Duration {
        Duration::from_secs_f64(self.cpu_seconds / (self.delivered.max(1) as f64))
    }
}

/// Rows 1, 5 and 9 run again one right after the other (see `ratio_round`
/// in `main.rs`). This VM's speed drifts by tens of percent over minutes,
/// and the table's rows 1, 5 and 9 run minutes apart, so one table's
/// ratios can be off by as much as the margin they are judged by; a
/// round's three ran within a minute of each other, and the median over
/// rounds is what row 5's ratios are judged by.
#[derive(Debug)]
pub struct Round {
    /// The order was peer, delivery, baseline (else baseline, delivery,
    /// peer).
    pub peer_first: bool,
    /// Row 1 again.
    pub baseline: Row,
    /// Row 5 again.
    pub delivery: Row,
    /// Row 5's delivery numbers (every owed delivery checked, as in row 5).
    pub delivery_stats: DeliveryStats,
    /// Row 9 again, when adnanh/webhook is installed.
    pub peer: Option<Row>,
}

impl Round {
    /// Row 5's req/s over the baseline's.
    pub fn to_baseline(&self) -> Option<f64> {
        over(&self.delivery, &self.baseline)
    }

    /// Row 5's req/s over the peer's.
    pub fn to_peer(&self) -> Option<f64> {
        over(&self.delivery, self.peer.as_ref()?)
    }

    /// Non-2xx answers and I/O errors of the three rows.
    pub fn row_errors(&self) -> u64 {
        self.baseline.errors + self.delivery.errors + self.peer.as_ref().map_or(0, |p| p.errors)
    }

    /// [`row_errors`](Self::row_errors) and row 5's missing and duplicate
    /// deliveries.
    pub fn errors(&self) -> u64 {
        self.row_errors() + self.delivery_stats.missing + self.delivery_stats.duplicates
    }
}

fn over(a: &Row, b: &Row) -> Option<f64> {
    (b.per_second > 0.0).then(|| a.per_second / b.per_second)
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Everything one run produced.
#[derive(Debug)]
pub struct Report {
    /// Smoke run (not a measurement).
    pub smoke: bool,
    /// Settings, as text, for the header and the JSON.
    pub settings: Value,
    /// Rows in order.
    pub rows: Vec<Row>,
    /// The delivery rows' numbers, by row key.
    pub delivery: Vec<(&'static str, DeliveryStats)>,
    /// The drain measurement, when it ran.
    pub drain: Option<DrainStats>,
    /// Rounds of rows 1, 5 and 9 again, when they ran.
    pub rounds: Vec<Round>,
    /// Notes printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// Fills in each row's ratio to the baseline row.
    pub fn compute_ratios(&mut self) {
        let base = self
            .rows
            .iter()
            .find(|r| r.key == "baseline")
            .map(|r| r.per_second);
        for row in &mut self.rows {
            row.ratio = base.filter(|b| *b > 0.0).map(|b| row.per_second / b);
        }
    }

    /// Total errors, delivery losses and duplicates included.
    pub fn total_errors(&self) -> u64 {
        self.rows.iter().map(|r| r.errors).sum::<u64>()
            + self
                .delivery
                .iter()
                .map(|(_, d)| d.missing + d.duplicates)
                .sum::<u64>()
            + self
                .drain
                .as_ref()
                .map_or(0, |d| d.backlog - d.delivered.min(d.backlog) + d.duplicates)
            + self.rounds.iter().map(Round::errors).sum::<u64>()
    }

    /// The median over the rounds of row 5's ratio to the baseline.
    pub fn median_to_baseline(&self) -> Option<f64> {
        median(self.rounds.iter().filter_map(Round::to_baseline).collect())
    }

    /// The median over the rounds of row 5's ratio to the peer.
    pub fn median_to_peer(&self) -> Option<f64> {
        median(self.rounds.iter().filter_map(Round::to_peer).collect())
    }

    /// `per_second` of row `a` over row `b`'s, when both ran.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let row = |k: &str| self.rows.iter().find(|r| r.key == k);
        over(row(a)?, row(b)?)
    }

    /// The table.
    pub fn table(&self) -> String {
        let header = [
            "row", "req/s", "p50", "p99", "p99.9", "errors", "peak RSS", "CPU s", "CPU/req",
            "× base",
        ];
        let mut lines: Vec<[String; 10]> = vec![header.map(str::to_owned)];
        for (i, r) in self.rows.iter().enumerate() {
            lines.push([
                format!("{} {}", i + 1, r.title),
                format!("{:.0}", r.per_second),
                ms(r.p50),
                ms(r.p99),
                ms(r.p999),
                r.errors.to_string(),
                format!("{:.1} MiB", r.peak_rss as f64 / (1 << 20) as f64),
                format!("{:.2}", r.cpu_seconds),
                format!("{:.0} µs", r.cpu_per_request().as_secs_f64() * 1e6),
                r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            ]);
        }
        let widths: Vec<usize> = (0..10)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (n, l) in lines.iter().enumerate() {
            for (c, cell) in l.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    write!(out, "{cell}{}", " ".repeat(pad)).ok();
                } else {
                    write!(out, "  {}{cell}", " ".repeat(pad)).ok();
                }
            }
            out.push('\n');
            if n == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        for (key, d) in &self.delivery {
            let row = self
                .rows
                .iter()
                .position(|r| r.key == *key)
                .map_or(0, |i| i + 1);
            writeln!(
                out,
                "\ndelivery, row {row} ({key}): {} accepted in the window ({} each), {} of their deliveries made; \
                 {} owed (every 2xx, warm-up included), {} of them missing; {} duplicates \
                 (watched {:.0} s after the drain, one lease and a second){}; \
                 {:.0} deliveries/s at the sink while loading; answered → delivered p50 {}, p99 {}, \
                 max {} ({} before their 202 was read); backlog at the end of the load {}, drained {}",
                d.accepted,
                match d.copies {
                    1 => "one delivery".to_owned(),
                    n => format!("{n} deliveries"),
                },
                d.delivered,
                d.owed,
                d.missing,
                d.duplicates,
                d.watched.as_secs_f64(),
                if d.unowed > 0 {
                    format!("; {} delivered ids no 2xx answered", d.unowed)
                } else {
                    String::new()
                },
                d.per_second_while_loading,
                ms(d.p50),
                ms(d.p99),
                ms(d.max),
                d.before_answer,
                d.backlog_at_end,
                d.drained_after
                    .map_or("not within the limit".to_owned(), |t| format!("{} after", ms(t))),
            )
            .ok();
        }
        if let Some(d) = &self.drain {
            writeln!(
                out,
                "\ndrain (delivery alone, no ingest): a backlog of {} webhooks to a paused \
                 destination, unpaused by a reload: {} delivered, {} missing, {} duplicates; \
                 first delivery {} after the reload; {} deliveries/s from the first to the last; \
                 gateway CPU {:.2} s, {:.0} µs per delivery",
                d.backlog,
                d.delivered,
                d.backlog - d.delivered.min(d.backlog),
                d.duplicates,
                d.first_after.map_or("-".to_owned(), ms),
                d.per_second().map_or("-".to_owned(), |r| format!("{r:.0}")),
                d.cpu_seconds,
                d.cpu_per_delivery().as_secs_f64() * 1e6,
            )
            .ok();
        }
        if let Some(x) = self.ratio("delivery", "peer") {
            writeln!(out, "row delivery / row peer (adnanh/webhook): {x:.2} ×").ok();
        }
        if !self.rounds.is_empty() {
            writeln!(
                out,
                "\nrounds: rows 1, 5 and 9 again, one right after the other (row 5 in the middle)"
            )
            .ok();
            for (i, r) in self.rounds.iter().enumerate() {
                let cell = |row: &Row| {
                    format!(
                        "{:.0} req/s ({:.0} µs/req, p99 {})",
                        row.per_second,
                        row.cpu_per_request().as_secs_f64() * 1e6,
                        ms(row.p99)
                    )
                };
                writeln!(
                    out,
                    "round {} ({}): baseline {}; row 5 {}, {} missing, {} duplicates; peer {}; \
                     row 5 / baseline {}, row 5 / peer {}; {} errors",
                    i + 1,
                    if r.peer_first {
                        "peer first"
                    } else {
                        "baseline first"
                    },
                    cell(&r.baseline),
                    cell(&r.delivery),
                    r.delivery_stats.missing,
                    r.delivery_stats.duplicates,
                    r.peer.as_ref().map_or("-".to_owned(), cell),
                    times(r.to_baseline()),
                    times(r.to_peer()),
                    r.row_errors(),
                )
                .ok();
            }
            writeln!(
                out,
                "median over {} rounds: row 5 / baseline {}, row 5 / peer (adnanh/webhook) {}",
                self.rounds.len(),
                times(self.median_to_baseline()),
                times(self.median_to_peer()),
            )
            .ok();
        }
        for note in &self.notes {
            writeln!(out, "note: {note}").ok();
        }
        out
    }

    /// The same as JSON.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "row": i + 1,
                    "key": r.key,
                    "title": r.title,
                    "requests": r.requests,
                    "req_per_s": r.per_second,
                    "p50_ms": r.p50.as_secs_f64() * 1e3,
                    "p99_ms": r.p99.as_secs_f64() * 1e3,
                    "p999_ms": r.p999.as_secs_f64() * 1e3,
                    "errors": r.errors,
                    "error_samples": r.error_samples,
                    "peak_rss_bytes": r.peak_rss,
                    "cpu_seconds": r.cpu_seconds,
                    "cpu_us_per_request": r.cpu_per_request().as_secs_f64() * 1e6,
                    "ratio_to_baseline": r.ratio,
                })
            })
            .collect();
        let delivery: Vec<Value> = self
            .delivery
            .iter()
            .map(|(key, d)| {
                json!({
                    "row": key,
                    "owed": d.owed,
                    "accepted": d.accepted,
                    "copies": d.copies,
                    "delivered": d.delivered,
                    "missing": d.missing,
                    "duplicates": d.duplicates,
                    "unowed": d.unowed,
                    "watched_after_drain_ms": d.watched.as_secs_f64() * 1e3,
                    "deliveries_per_s_while_loading": d.per_second_while_loading,
                    "answered_to_delivered_p50_ms": d.p50.as_secs_f64() * 1e3,
                    "answered_to_delivered_p99_ms": d.p99.as_secs_f64() * 1e3,
                    "answered_to_delivered_max_ms": d.max.as_secs_f64() * 1e3,
                    "delivered_before_answer": d.before_answer,
                    "backlog_at_end_of_load": d.backlog_at_end,
                    "drained_after_ms": d.drained_after.map(|t| t.as_secs_f64() * 1e3),
                })
            })
            .collect();
        json!({
            "smoke": self.smoke,
            "settings": self.settings,
            "rows": rows,
            "delivery": delivery,
            "delivery_to_peer": self.ratio("delivery", "peer"),
            "drain": self.drain.as_ref().map(|d| json!({
                "backlog": d.backlog,
                "delivered": d.delivered,
                "missing": d.backlog - d.delivered.min(d.backlog),
                "duplicates": d.duplicates,
                "first_delivery_after_reload_ms": d.first_after.map(|t| t.as_secs_f64() * 1e3),
                "first_to_last_ms": d.span.map(|t| t.as_secs_f64() * 1e3),
                "deliveries_per_s": d.per_second(),
                "cpu_seconds": d.cpu_seconds,
                "cpu_us_per_delivery": d.cpu_per_delivery().as_secs_f64() * 1e6,
            })),
            "rounds": self.rounds.iter().enumerate().map(|(i, r)| json!({
                "round": i + 1,
                "order": if r.peer_first {
                    ["peer", "delivery", "baseline"]
                } else {
                    ["baseline", "delivery", "peer"]
                },
                "baseline": row_json(&r.baseline),
                "delivery": row_json(&r.delivery),
                "peer": r.peer.as_ref().map(row_json),
                "delivery_missing": r.delivery_stats.missing,
                "delivery_duplicates": r.delivery_stats.duplicates,
                "delivery_accepted": r.delivery_stats.accepted,
                "delivery_delivered": r.delivery_stats.delivered,
                "delivery_to_baseline": r.to_baseline(),
                "delivery_to_peer": r.to_peer(),
                "errors": r.errors(),
            })).collect::<Vec<_>>(),
            "rounds_median": {
                "delivery_to_baseline": self.median_to_baseline(),
                "delivery_to_peer": self.median_to_peer(),
            },
            "notes": self.notes,
        })
    }
}

/// A row's own numbers, as in a round.
fn row_json(r: &Row) -> Value {
    json!({
        "req_per_s": r.per_second,
        "p50_ms": r.p50.as_secs_f64() * 1e3,
        "p99_ms": r.p99.as_secs_f64() * 1e3,
        "errors": r.errors,
        "error_samples": r.error_samples,
        "cpu_us_per_request": r.cpu_per_request().as_secs_f64() * 1e6,
    })
}

fn times(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |x| format!("{x:.3} ×"))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_takes_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![1.9]), Some(1.9));
        assert_eq!(median(vec![2.1, 1.7, 1.9]), Some(1.9));
        assert_eq!(median(vec![2.0, 1.0, 4.0, 3.0]), Some(2.5));
    }

    fn row(key: &'static str, requests: u64, errors: u64) -> Row {
        let load = LoadResult {
            ok: requests,
            errors,
            window: Duration::from_secs(10),
            latencies_ns: vec![1_000_000; requests as usize],
            ..LoadResult::default()
        };
        Row::new(key, key.into(), load, 0, 1.0)
    }

    fn stats(missing: u64, duplicates: u64) -> DeliveryStats {
        DeliveryStats {
            owed: 10,
            accepted: 10,
            copies: 1,
            delivered: 10 - missing,
            missing,
            duplicates,
            unowed: 0,
            watched: Duration::ZERO,
            per_second_while_loading: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            before_answer: 0,
            backlog_at_end: 0,
            drained_after: None,
        }
    }

    #[test]
    fn rounds_are_judged_by_their_median_and_their_losses_are_errors() {
        let round = |base, delivery, peer: Option<u64>, missing| Round {
            peer_first: false,
            baseline: row("baseline", base, 0),
            delivery: row("delivery", delivery, 0),
            delivery_stats: stats(missing, 0),
            peer: peer.map(|p| row("peer", p, 1)),
        };
        let report = Report {
            smoke: false,
            settings: Value::Null,
            rows: Vec::new(),
            delivery: Vec::new(),
            drain: None,
            rounds: vec![
                round(1000, 130, Some(70), 0),
                round(1000, 120, Some(50), 2),
                round(1000, 150, Some(80), 0),
            ],
            notes: Vec::new(),
        };
        let to_base = report.median_to_baseline().unwrap();
        assert!((to_base - 0.13).abs() < 1e-9, "{to_base}");
        // 130/70 = 1.857, 120/50 = 2.4, 150/80 = 1.875.
        let to_peer = report.median_to_peer().unwrap();
        assert!((to_peer - 1.875).abs() < 1e-9, "{to_peer}");
        // A peer error in each round, two missing deliveries in one.
        assert_eq!(report.total_errors(), 5);
        let json = report.json();
        assert_eq!(json["rounds"].as_array().unwrap().len(), 3);
        assert_eq!(json["rounds"][1]["delivery_missing"], 2);
        assert!(report.table().contains("median over 3 rounds"));
        // No peer: the peer ratio is absent, not zero.
        let alone = Report {
            rounds: vec![round(1000, 130, None, 0)],
            ..report
        };
        assert_eq!(alone.median_to_peer(), None);
        assert_eq!(
            alone.json()["rounds_median"]["delivery_to_peer"],
            Value::Null
        );
    }
}
