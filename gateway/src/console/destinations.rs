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
use crate::config::{DestinationConfig, DestinationKind, SigningScheme};
use crate::pipeline::CompiledDestination;
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
    /// What the config says about how it is sent (no secret in them).
    settings: Vec<(&'static str, String)>,
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

/// How a destination is sent, as the config says, for the card: what an
/// operator asks first when deliveries are slow or refused. Nothing that
/// is a credential: a URL shows its origin only (a Teams or Slack webhook
/// URL's path is its secret, and a query may carry a token), headers their
/// names only, signing its scheme only.
fn settings(d: &DestinationConfig, compiled: &CompiledDestination) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let kind = match d.kind {
        DestinationKind::Http => "http",
        DestinationKind::Log => "log (written to the gateway's log, not sent)",
        DestinationKind::Subscribers => "subscribers (the subscription API's subscriptions)",
        DestinationKind::Teams => "teams",
    };
    out.push(("Kind", kind.to_owned()));
    if d.kind == DestinationKind::Subscribers {
        if let Some(t) = &d.tenant {
            out.push(("Tenant", t.clone()));
        }
        if let Some(t) = &d.object_type {
            out.push(("Object type", t.clone()));
        }
        return out;
    }
    if let Some(url) = d.url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
        out.push(("Target", origin(&url)));
    }
    if d.kind == DestinationKind::Log {
        return out;
    }
    out.push(("Timeout", d.timeout.to_string()));
    out.push(("Concurrency", d.concurrency.to_string()));
    let rate = match (d.kind, d.rate) {
        (DestinationKind::Teams, Some(r)) => format!("{r}, and at most Teams' 4/s"),
        (DestinationKind::Teams, None) => "4/s (Teams' limit)".to_owned(),
        (_, Some(r)) => r.to_string(),
        (_, None) => "unlimited".to_owned(),
    };
    out.push(("Rate", rate));
    out.push(("Retries", compiled.retry.summary()));
    if d.kind == DestinationKind::Http {
        let signing = match &d.signing {
            None => "unsigned".to_owned(),
            Some(s) => {
                let scheme = match s.scheme {
                    SigningScheme::StandardWebhooks => "standard-webhooks",
                    SigningScheme::MsSignature => "ms-signature",
                };
                if s.previous_secret.is_some() {
                    format!("{scheme}, rotating (the previous secret signs too)")
                } else {
                    scheme.to_owned()
                }
            }
        };
        out.push(("Signing", signing));
    }
    if let Some(tls) = &d.tls {
        out.push(("TLS", tls_summary(tls)));
    }
    if !d.headers.is_empty() {
        let names: Vec<&str> = d.headers.keys().map(String::as_str).collect();
        out.push(("Headers", format!("{} (values hidden)", names.join(", "))));
    }
    out
}

/// A destination's `tls:` in words: whom it trusts and whether it shows a
/// client certificate. File names, not contents.
fn tls_summary(tls: &crate::config::DestinationTlsConfig) -> String {
    let file = |p: &Option<std::path::PathBuf>| {
        p.as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let trust = match (&tls.ca_file, tls.public_roots) {
        (Some(_), true) => format!("the public roots and {}", file(&tls.ca_file)),
        (Some(_), false) => format!("{} only", file(&tls.ca_file)),
        (None, _) => "the public roots".to_owned(),
    };
    match &tls.client_cert_file {
        Some(_) => format!(
            "trusts {trust}; client certificate {}",
            file(&tls.client_cert_file)
        ),
        None => format!("trusts {trust}"),
    }
}

/// `scheme://host[:port]/…`: where a URL goes, without what may be its
/// credential (path, query, user info).
fn origin(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        shown.push_str("/…");
    }
    shown
}

fn card(
    s: &DestinationStats,
    name: String,
    configured: bool,
    paused: bool,
    settings: Vec<(&'static str, String)>,
    now: u64,
) -> Card {
    let (bars, latency, max_count, max_latency) = chart(&s.series);
    let ms = |v: Option<u64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v} ms"));
    Card {
        name,
        configured,
        paused,
        settings,
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
            let compiled = snapshot.destinations.get(*name);
            let paused = compiled.is_some_and(|d| d.paused);
            let shown = match (snapshot.config.destinations.get(*name), compiled) {
                (Some(d), Some(c)) => settings(d, c),
                _ => Vec::new(),
            };
            card(&s, (*name).clone(), true, paused, shown, now)
        })
        .collect();
    // Destinations that have deliveries but are no longer configured.
    for s in stats.iter().filter(|s| {
        !s.destination.starts_with(SUBSCRIBER_PREFIX)
            && !snapshot.destinations.contains_key(&s.destination)
    }) {
        cards.push(card(
            s,
            s.destination.clone(),
            false,
            false,
            Vec::new(),
            now,
        ));
    }
    let subs: Vec<&DestinationStats> = stats
        .iter()
        .filter(|s| s.destination.starts_with(SUBSCRIBER_PREFIX))
        .collect();
    let subscriptions = merge_subscriptions(&subs)
        .map(|m| card(&m, "all subscriptions".into(), true, false, Vec::new(), now));
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

#[cfg(test)]
mod tests {
    use super::tls_summary;

    #[test]
    fn a_destinations_tls_is_summed_up_by_file_names() {
        let tls = |yaml: &str| -> crate::config::DestinationTlsConfig {
            serde_saphyr::from_str(yaml).unwrap()
        };
        assert_eq!(
            tls_summary(&tls("ca_file: ca.pem")),
            "trusts the public roots and ca.pem"
        );
        assert_eq!(
            tls_summary(&tls(
                "ca_file: /etc/ca.pem\npublic_roots: false\nclient_cert_file: me.pem\nclient_key_file: me.key"
            )),
            "trusts /etc/ca.pem only; client certificate me.pem"
        );
    }
}
