//! Prometheus metrics, served at `GET /metrics`.
//!
//! Labels are low-cardinality by construction: configured route, plugin and
//! destination names, stages and fixed outcome words; never a URL, id or
//! status text from outside.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugin::Stage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: Arc<str>,
    stage: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    destination: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

/// The `destination` label of every subscription's deliveries together:
/// one label value per subscription would be unbounded.
pub const SUBSCRIPTIONS_LABEL: &str = "_subscriptions";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The gateway's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    plugin_calls: HistogramFamily<PluginLabels>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_latency: HistogramFamily<DeliveryLabels>,
    subscriptions_disabled: Counter,
    polls: Counter,
    handed_back: Counter,
    reloads: Family<ReloadLabels, Counter>,
    backlog: Family<DestinationLabels, Gauge>,
    oldest_pending: Family<DestinationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    paused: Family<DestinationLabels, Gauge>,
    /// No labels; empty for a store without local files.
    store_free: Family<Vec<(String, String)>, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn plugin_histogram() -> Histogram {
    // 5 µs .. ~1.3 s: plugin calls are microseconds; the top buckets catch
    // calls cut off at their deadline.
    Histogram::new(exponential_buckets(0.000_005, 2.0, 19))
}

fn delivery_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let plugin_calls: HistogramFamily<PluginLabels> =
            Family::new_with_constructor(plugin_histogram as fn() -> Histogram);
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let delivery_latency: HistogramFamily<DeliveryLabels> =
            Family::new_with_constructor(delivery_histogram as fn() -> Histogram);
        registry.register(
            "requests",
            "Webhook requests answered, by route and HTTP status",
            requests.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Plugin stage calls, by plugin, stage and outcome",
            plugin_calls.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts, by destination and outcome",
            deliveries.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Delivery attempt latency, by destination and outcome",
            delivery_latency.clone(),
        );
        let subscriptions_disabled = Counter::default();
        registry.register(
            "subscriptions_disabled",
            "Subscriptions set inactive after failing continuously or answering 410",
            subscriptions_disabled.clone(),
        );
        let polls = Counter::default();
        registry.register(
            "delivery_polls",
            "Polls of the store for due deliveries (one store round trip each)",
            polls.clone(),
        );
        let handed_back = Counter::default();
        registry.register(
            "delivery_claims_handed_back",
            "Claimed deliveries handed back to the store because their destination's lane was full",
            handed_back.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of config and plugins, by outcome (ok, refused)",
            reloads.clone(),
        );
        let backlog = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "delivery_backlog",
            "Pending deliveries, by destination (read from the store when scraped)",
            backlog.clone(),
        );
        let oldest_pending =
            Family::<DestinationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "delivery_oldest_pending_seconds",
            "Age of the oldest event with a pending delivery, by destination",
            oldest_pending.clone(),
        );
        let paused = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_paused",
            "1 for each destination `paused:` holds (its deliveries wait); set when scraped",
            paused.clone(),
        );
        let store_free = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "store_free_bytes",
            "Bytes free on the file system of the SQLite store's data_dir (below 128 MiB the WAL is kept to 4 MiB; at 0 webhooks get 503); set when scraped, absent for PostgreSQL",
            store_free.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                store_free,
                backlog,
                oldest_pending,
                paused,
                subscriptions_disabled,
                polls,
                handed_back,
                registry,
                requests,
                plugin_calls,
                deliveries,
                delivery_latency,
                reloads,
            }),
        }
    }
}

impl Metrics {
    /// Counts one answered webhook request. `route` must be a configured
    /// route name or a fixed placeholder.
    ///
    /// Labels on the per-webhook path are shared names (`Arc<str>`) and
    /// fixed words, so finding a webhook's series allocates nothing.
    pub fn request(&self, route: &Arc<str>, status: u16) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status,
            })
            .inc();
    }

    /// Records one plugin call.
    pub fn plugin_call(
        &self,
        plugin: &Arc<str>,
        stage: Stage,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.inner
            .plugin_calls
            .get_or_create(&PluginLabels {
                plugin: plugin.clone(),
                stage: stage.as_str(),
                outcome,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one delivery attempt.
    pub fn delivery(&self, destination: &str, outcome: &'static str, elapsed: Duration) {
        let labels = DeliveryLabels {
            destination: destination.to_owned(),
            outcome,
        };
        self.inner.deliveries.get_or_create(&labels).inc();
        self.inner
            .delivery_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a subscription disabled by its failures.
    pub fn subscription_disabled(&self) {
        self.inner.subscriptions_disabled.inc();
    }

    /// Counts one poll of the store for due deliveries.
    pub fn poll(&self) {
        self.inner.polls.inc();
    }

    /// Polls counted so far.
    #[cfg(test)]
    pub fn polls(&self) -> u64 {
        self.inner.polls.get()
    }

    /// Counts claimed deliveries handed back because their lane was full.
    pub fn handed_back(&self, n: usize) {
        self.inner.handed_back.inc_by(n as u64);
    }

    /// Counts one reload: `ok` or `refused`.
    pub fn reload(&self, outcome: &str) {
        self.inner
            .reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the backlog gauges from the store's backlog, replacing the
    /// previous values (a destination with nothing pending disappears).
    pub fn set_backlog(&self, backlog: &[crate::store::stats::Backlog], now_ms: u64) {
        let mut by_label: std::collections::BTreeMap<&str, (u64, Option<u64>)> = Default::default();
        for b in backlog {
            let label = if b.destination.starts_with(crate::store::SUBSCRIBER_PREFIX) {
                SUBSCRIPTIONS_LABEL
            } else {
                b.destination.as_str()
            };
            let entry = by_label.entry(label).or_default();
            entry.0 += b.pending;
            entry.1 = match (entry.1, b.oldest_pending_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.inner.backlog.clear();
        self.inner.oldest_pending.clear();
        for (label, (pending, oldest)) in by_label {
            let labels = DestinationLabels {
                destination: label.to_owned(),
            };
            self.inner
                .backlog
                .get_or_create(&labels)
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            let age = oldest.map_or(0.0, |o| now_ms.saturating_sub(o) as f64 / 1000.0);
            self.inner.oldest_pending.get_or_create(&labels).set(age);
        }
    }

    /// Sets the paused gauges: 1 for each of `names`, none for the rest
    /// (an alert on a destination left paused reads it).
    pub fn set_paused<'a>(&self, names: impl Iterator<Item = &'a str>) {
        self.inner.paused.clear();
        for name in names {
            let labels = DestinationLabels {
                destination: name.to_owned(),
            };
            self.inner.paused.get_or_create(&labels).set(1);
        }
    }

    /// Sets the store's free disk space, or removes it (an engine without
    /// local files).
    pub fn set_store_free(&self, bytes: Option<u64>) {
        self.inner.store_free.clear();
        if let Some(bytes) = bytes {
            self.inner
                .store_free
                .get_or_create(&Vec::new())
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_free_space_is_shown_only_when_the_store_has_one() {
        let m = Metrics::default();
        m.set_store_free(Some(5 << 20));
        assert!(
            m.render()
                .contains("\nhookgate_store_free_bytes{} 5242880\n"),
            "{}",
            m.render()
        );
        m.set_store_free(None);
        assert!(
            !m.render().contains("\nhookgate_store_free_bytes{}"),
            "{}",
            m.render()
        );
    }
}
