//! Shared state: a cheap-to-clone [`AppState`] around one `ArcSwap` of the
//! current [`Snapshot`]. The snapshot is immutable; a reload builds a new
//! one off to the side and swaps it in whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::delivery::Dispatcher;
use crate::metrics::Metrics;
use crate::pipeline::Snapshot;
use crate::plugin::PluginEngine;

/// Everything handlers need.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshot: ArcSwap<Snapshot>,
    engine: PluginEngine,
    metrics: Metrics,
    dispatcher: Dispatcher,
    reload: crate::reload::Control,
}

impl AppState {
    /// Bundles the running parts.
    pub fn new(
        snapshot: Snapshot,
        engine: PluginEngine,
        metrics: Metrics,
        dispatcher: Dispatcher,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(snapshot),
                engine,
                metrics,
                dispatcher,
                reload: Default::default(),
            }),
        }
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Replaces the snapshot (reload).
    pub fn swap(&self, snapshot: Snapshot) {
        self.inner.snapshot.store(Arc::new(snapshot));
    }

    /// The plugin engine.
    pub fn engine(&self) -> &PluginEngine {
        &self.inner.engine
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The delivery hand-off.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// Asks for reloads and tells what they did.
    pub fn reload(&self) -> &crate::reload::Control {
        &self.inner.reload
    }
}
