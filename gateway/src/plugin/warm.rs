//! Warm instances: one use of a plugin (a route's `verify:`, one of its
//! `transform:` steps, its `route:`) keeps a few instantiated components
//! between calls, so a call is a function call rather than an
//! instantiation, and a plugin can parse its `with:` block once (the
//! `template` plugin compiles its template once per instance).
//!
//! What this gives up, and why it is acceptable: a guest's memory now
//! outlives one webhook, but only within the same use of the same plugin
//! on the same route, whose webhooks come from the same provider and go to
//! the same destinations. Routes, plugins and the uses of one plugin stay
//! apart (the pool lives in the use's [`PluginConfig`](super::PluginConfig)),
//! as in proxy-wasm hosts, where a VM lives across requests of one filter.
//!
//! An instance is parked again only after a call that returned normally
//! (a trap, a timeout or an out-of-memory ends it), while it uses at most
//! half of its memory cap (so a leaking guest gets a fresh instance before
//! the leak fails a webhook), and for at most [`MAX_CALLS`] calls. Each
//! use parks at most [`PER_USE`] instances, the engine at most [`TOTAL`]:
//! a parked instance holds a slot of the pooling allocator, and the rest
//! of the pool is for calls in flight.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::Store;
use wasmtime::component::Instance;

use super::host::CallState;

/// Calls one instance serves before it is dropped. Bounds what a guest can
/// accumulate, and the host-side handles wasmtime keeps per exported
/// function looked up in a store (one per call, freed with the store).
pub const MAX_CALLS: u32 = 1000;

/// Instances one use of a plugin keeps parked: one per runtime thread
/// serves the steady state of a small machine.
pub const PER_USE: usize = 4;

/// Instances parked across the whole engine: a quarter of the pool.
pub const TOTAL: usize = 32;

/// An instance between two calls.
pub(super) struct Warm {
    /// Which [`LoadedPlugin`](super::LoadedPlugin) it is an instance of: a
    /// reload that replaces the plugin must not be served the old code.
    pub plugin: u64,
    pub store: Store<CallState>,
    pub instance: Instance,
    /// Calls served so far.
    pub calls: u32,
    _count: Counted,
}

/// One unit of the engine's parked-instance count, given back on drop.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Warm {
    /// Parks `store` and `instance`, or hands them back when the engine
    /// already has [`TOTAL`] parked.
    pub fn new(
        total: &Arc<AtomicUsize>,
        plugin: u64,
        store: Store<CallState>,
        instance: Instance,
        calls: u32,
    ) -> Option<Warm> {
        let taken = total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < TOTAL).then_some(n + 1)
        });
        taken.ok().map(|_| Warm {
            plugin,
            store,
            instance,
            calls,
            _count: Counted(total.clone()),
        })
    }
}

/// The parked instances of one use of a plugin.
#[derive(Default)]
pub struct WarmPool {
    slots: Mutex<Vec<Warm>>,
    /// Off for one-off calls (`describe`, `validate-config`, `hookgate
    /// plugin test`, the fresh-instance benchmark).
    off: bool,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parked = self.slots.lock().map_or(0, |s| s.len());
        f.debug_struct("WarmPool")
            .field("parked", &parked)
            .field("off", &self.off)
            .finish()
    }
}

impl WarmPool {
    /// A pool that never parks anything: every call instantiates afresh.
    pub fn off() -> Self {
        WarmPool {
            slots: Mutex::default(),
            off: true,
        }
    }

    /// Whether calls may park their instance here.
    pub(super) fn enabled(&self) -> bool {
        !self.off
    }

    /// A parked instance of `plugin`, if there is one. Instances of another
    /// plugin (the use was compiled against code a reload has replaced)
    /// are dropped.
    pub(super) fn take(&self, plugin: u64) -> Option<Warm> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(w) = slots.pop() {
            if w.plugin == plugin {
                return Some(w);
            }
        }
        None
    }

    /// Parks `warm` unless [`PER_USE`] are parked already.
    pub(super) fn put(&self, warm: Warm) {
        if self.off {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() < PER_USE {
            slots.push(warm);
        }
    }

    /// Parked instances (tests).
    pub fn parked(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.len())
    }
}
