//! Shared state: a cheap-to-clone [`AppState`] around one `ArcSwap` of the
//! current [`Snapshot`]. The snapshot is immutable; a reload builds a new
//! one off to the side and swaps it in whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::delivery::DeliveryHandle;
use crate::metrics::Metrics;
use crate::pipeline::Snapshot;
use crate::plugin::PluginEngine;
use crate::store::Store;

/// Everything handlers need.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshots: Arc<ArcSwap<Snapshot>>,
    engine: PluginEngine,
    metrics: Metrics,
    store: Arc<dyn Store>,
    delivery: DeliveryHandle,
    reload: crate::reload::Control,
}

impl AppState {
    /// Bundles the running parts.
    pub fn new(
        snapshots: Arc<ArcSwap<Snapshot>>,
        engine: PluginEngine,
        metrics: Metrics,
        store: Arc<dyn Store>,
        delivery: DeliveryHandle,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                snapshots,
                engine,
                metrics,
                store,
                delivery,
                reload: Default::default(),
            }),
        }
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshots.load_full()
    }

    /// Replaces the snapshot (reload), and has the poller look at once:
    /// a destination the new config resumes (`paused:` removed) or brings
    /// back (deliveries to a name the old one lacked wait in the store)
    /// would otherwise wait for the next idle poll, up to a second.
    pub fn swap(&self, snapshot: Snapshot) {
        self.inner.snapshots.store(Arc::new(snapshot));
        self.inner.delivery.wake();
    }

    /// The plugin engine.
    pub fn engine(&self) -> &PluginEngine {
        &self.inner.engine
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Wakes the delivery workers.
    pub fn delivery(&self) -> &DeliveryHandle {
        &self.inner.delivery
    }

    /// Asks for reloads and tells what they did.
    pub fn reload(&self) -> &crate::reload::Control {
        &self.inner.reload
    }
}
