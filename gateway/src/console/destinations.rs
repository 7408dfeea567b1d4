//! Destinations: success rate, latency p50/p99, backlog, oldest pending
//! and last error per destination, with charts of the attempts over the
//! last hour or day drawn as inline SVG (no script, no image requests).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::session::Session;
use super::{Layout, html, show_age, show_time, store_failed};
use crate::clock::now_ms;
use crate::state::AppState;
use crate::store::SUBSCRIBER_PREFIX;
use crate::store::stats::{DestinationStats, SeriesPoint};

/// Chart size in SVG user units.
const CHART_W: f64 = 360.0;
const CHART_H: f64 = 64.0;

#[derive(Debug, Default, Deserialize)]
pub struct WindowQuery {
    window: Option<String>,
}

/// One bar of a chart: delivered (bottom) and failed (stacked on top).
struct Bar {
    x: String,
    w: String,
    ok_y: String,
    ok_h: String,
    fail_y: String,
    fail_h: String,
    title: String,
}

struct Card {
    name: String,
    configured: bool,
    /// `paused:` in the config: its backlog waits, unsent.
    paused: bool,
    attempts: u64,
    success: String,
    p50: String,
    p99: String,
    backlog: u64,
    oldest: String,
    last_error: Option<(String, String)>,
    bars: Vec<Bar>,
    latency: String,
    max_count: u64,
    max_latency: String,
}

#[derive(Template)]
#[template(path = "console/destinations.html")]
struct DestinationsPage {
    layout: Layout,
    window: &'static str,
    since: String,
    cards: Vec<Card>,
    subscriptions: Option<Card>,
}

fn chart(series: &[SeriesPoint]) -> (Vec<Bar>, String, u64, f64) {
    let max = series
        .iter()
        .map(|p| p.ok + p.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let max_latency = series
        .iter()
        .map(|p| p.mean_latency_ms)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let w = CHART_W / series.len().max(1) as f64;
    let scale = |n: u64| n as f64 / max as f64 * CHART_H;
    let bars = series
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ok_h = scale(p.ok);
            let fail_h = scale(p.failed);
            Bar {
                x: format!("{:.1}", i as f64 * w),
                w: format!("{:.1}", (w - 1.0).max(0.5)),
                ok_y: format!("{:.1}", CHART_H - ok_h),
                ok_h: format!("{ok_h:.1}"),
                fail_y: format!("{:.1}", CHART_H - ok_h - fail_h),
                fail_h: format!("{fail_h:.1}"),
                title: format!(
                    "{}: {} delivered, {} failed, mean {:.0} ms",
                    show_time(p.start_ms),
                    p.ok,
                    p.failed,
                    p.mean_latency_ms
                ),
            }
        })
        .collect();
    let latency = series
        .iter()
        .enumerate()
        .filter(|(_, p)| p.ok + p.failed > 0)
        // A step per bucket (its start and end), so one busy bucket still
        // draws a line.
        .map(|(i, p)| {
            let y = CHART_H - p.mean_latency_ms / max_latency * CHART_H;
            format!(
                "{:.1},{y:.1} {:.1},{y:.1}",
                i as f64 * w,
                (i as f64 + 1.0) * w
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    (bars, latency, max, max_latency)
}

fn card(s: &DestinationStats, name: String, configured: bool, paused: bool, now: u64) -> Card {
    let (bars, latency, max_count, max_latency) = chart(&s.series);
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v} ms"));
    Card {
        name,
        configured,
        paused,
        attempts: s.attempts,
        success: if s.attempts == 0 {
            "–".into()
        } else {
            format!("{:.1}%", s.ok as f64 * 100.0 / s.attempts as f64)
        },
        p50: ms(s.p50_ms),
        p99: ms(s.p99_ms),
        backlog: s.backlog,
        oldest: s
            .oldest_pending_ms
            .map_or_else(|| "–".into(), |o| show_age(now.saturating_sub(o))),
        last_error: s
            .last_error
            .as_ref()
            .map(|(at, why)| (show_time(*at), why.clone())),
        bars,
        latency,
        max_count,
        max_latency: format!("{max_latency:.0}"),
    }
}

/// Every subscription's deliveries as one line (one per subscription is
/// on the subscriptions page).
fn merge_subscriptions(all: &[&DestinationStats]) -> Option<DestinationStats> {
    let first = all.first()?;
    let mut m = (*first).clone();
    m.destination = "subscriptions".into();
    for s in &all[1..] {
        m.attempts += s.attempts;
        m.ok += s.ok;
        m.backlog += s.backlog;
        m.oldest_pending_ms = match (m.oldest_pending_ms, s.oldest_pending_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if s.last_error.as_ref().map(|e| e.0) > m.last_error.as_ref().map(|e| e.0) {
            m.last_error = s.last_error.clone();
        }
        for (p, q) in m.series.iter_mut().zip(&s.series) {
            let n = (p.ok + p.failed + q.ok + q.failed).max(1) as f64;
            p.mean_latency_ms = (p.mean_latency_ms * (p.ok + p.failed) as f64
                + q.mean_latency_ms * (q.ok + q.failed) as f64)
                / n;
            p.ok += q.ok;
            p.failed += q.failed;
        }
        // Percentiles do not merge; the worst of them is shown.
        m.p50_ms = m.p50_ms.max(s.p50_ms);
        m.p99_ms = m.p99_ms.max(s.p99_ms);
    }
    Some(m)
}

/// `GET /ui/destinations?window=hour|day`.
pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let (window, span_ms, buckets) = match q.window.as_deref() {
        Some("day") => ("day", 86_400_000, 48),
        _ => ("hour", 3_600_000, 60),
    };
    let now = now_ms();
    let since = now.saturating_sub(span_ms);
    let stats = match state.store().destination_stats(since, now, buckets).await {
        Ok(s) => s,
        Err(e) => return store_failed(e),
    };
    let snapshot = state.snapshot();
    let mut names: Vec<&String> = snapshot.destinations.keys().collect();
    names.sort();
    let mut cards: Vec<Card> = names
        .iter()
        .map(|name| {
            let s = stats
                .iter()
                .find(|s| &s.destination == *name)
                .cloned()
                .unwrap_or_else(|| DestinationStats::empty(name, since, now, buckets));
            let paused = snapshot.destinations.get(*name).is_some_and(|d| d.paused);
            card(&s, (*name).clone(), true, paused, now)
        })
        .collect();
    // Destinations that have deliveries but are no longer configured.
    for s in stats.iter().filter(|s| {
        !s.destination.starts_with(SUBSCRIBER_PREFIX)
            && !snapshot.destinations.contains_key(&s.destination)
    }) {
        cards.push(card(s, s.destination.clone(), false, false, now));
    }
    let subs: Vec<&DestinationStats> = stats
        .iter()
        .filter(|s| s.destination.starts_with(SUBSCRIBER_PREFIX))
        .collect();
    let subscriptions =
        merge_subscriptions(&subs).map(|m| card(&m, "all subscriptions".into(), true, false, now));
    html(
        StatusCode::OK,
        &DestinationsPage {
            layout: Layout::new(&session, "destinations", None),
            window,
            since: show_time(since),
            cards,
            subscriptions,
        },
    )
}
