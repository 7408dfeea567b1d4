//! Per-call resource limits: the memory cap and the deadline ticker.

use std::time::Duration;

use wasmtime::{EngineWeak, ResourceLimiter};

/// Memory a plugin may use unless the config says otherwise. Verifying and
/// reshaping a webhook needs a few MiB at most; a plugin past this is broken.
pub const DEFAULT_PLUGIN_MEMORY: usize = 16 << 20;

/// The most memory a route may give one use of a plugin (`memory:` on the
/// use) when `plugins.memory` is smaller. Plugins built with an embedded
/// language runtime start big (a componentize-js component with about
/// 9 MiB of linear memory, a componentize-py one with about 13 MiB) and
/// need room for large bodies; they get it per use, without raising
/// `plugins.memory` for every plugin. The pool's slots are sized to this
/// (virtual address space only: a slot reserves the engine's 4 GiB memory
/// reservation whatever its size), and each call's limiter still holds
/// the instance to its own cap.
pub const MAX_USE_MEMORY: usize = 256 << 20;

/// Wall-clock time one plugin call may take unless the config says
/// otherwise. Providers time out after a few seconds (Slack: 3 s) and a
/// verify or transform is microseconds of work, so 100 ms is generous.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The least deadline of a one-off call at load (`describe`,
/// `validate-config`), whatever the use's `timeout`. Such a call needs a
/// fresh instance, runs once per (re)load and is on no request's path, so
/// the per-request deadline (100 ms by default) only made a config check or
/// a reload fail when the machine was busy (seen in CI: `validate-config`
/// of `github-teams` over 100 ms beside many gateways on 2 cores). It is
/// still a deadline: a plugin that never returns fails the load.
pub const LOAD_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Granularity of deadlines: the ticker bumps the engine's epoch this often,
/// and at every tick a running plugin yields to the async runtime and its
/// deadline is checked. A call is interrupted between `timeout` and
/// `timeout + EPOCH_TICK`.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Requests of one route that may run plugins at once unless the route says
/// otherwise. A plugin call holds a pooled instance for its whole duration,
/// and the pool has `POOL_INSTANCES` (128) of them: a quarter per route lets
/// a route whose plugin hangs until its deadline fill only its own share.
/// Healthy calls take microseconds, so a route rarely has more than one per
/// runtime thread in flight.
pub const DEFAULT_ROUTE_IN_FLIGHT: usize = 32;

/// Table elements a plugin may grow to (function references).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Linear memories one component may have. A Rust component has one; a
/// few more leave room for other toolchains' adapters. Each is a pool
/// slot, so a component with dozens would starve the pool.
pub const MAX_MEMORIES: usize = 4;

/// Tables one component may have (the component model's glue adds a few).
pub const MAX_TABLES: usize = 32;

/// Core instances one component may create: a Rust component needs about
/// five (its module plus the canonical-ABI glue).
pub const MAX_CORE_INSTANCES: usize = 32;

/// Handles (streams, pollables, HTTP bodies) live at once in one call's
/// resource table. A verify needs a handful; this stops a guest from
/// growing host memory by opening handles in a loop.
pub const MAX_RESOURCES: usize = 256;

/// Random bytes one call may draw from the host (a `HashMap`'s seed is 16).
/// Past this the call traps: a plugin has no business draining entropy.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Messages one request may become after every transform: fan-out past
/// this is refused (500) rather than written to the store.
pub const MAX_MESSAGES_PER_REQUEST: usize = 256;

/// Plugin time one request may use across all its calls, unless the route
/// says otherwise: a chain of transforms each just under its deadline
/// must not hold the provider's request for a multiple of it.
pub const DEFAULT_REQUEST_PLUGIN_TIME: Duration = Duration::from_secs(1);

/// Caps linear memory (summed over every memory of the component) and the
/// number of memories, tables and core instances, and records whether the
/// memory cap was hit, so a trap that follows a refused `memory.grow` is
/// reported as out-of-memory rather than as a generic trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    used: usize,
    pub(super) hit: bool,
}

impl MemoryLimiter {
    pub(super) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            hit: false,
        }
    }
}

impl MemoryLimiter {
    /// A new call on the same instance: its own cap, no hit yet.
    pub(super) fn renew(&mut self, limit: usize) {
        self.limit = limit;
        self.hit = false;
    }

    /// Memory in use, summed over the instance's memories.
    pub(super) fn used(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called for every memory, including at instantiation (current 0),
        // so `used` is the component's total.
        let total = self.used - current.min(self.used) + desired;
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`].
/// It holds only a weak reference and exits once the engine is dropped.
pub fn spawn_ticker(engine: EngineWeak) {
    std::thread::Builder::new()
        .name("hookgate-epoch".into())
        .spawn(move || {
            loop {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a dedicated OS thread, not an async worker"
                )]
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_summed_across_memories() {
        let mut l = MemoryLimiter::new(10);
        assert!(l.memory_growing(0, 4, None).unwrap());
        assert!(l.memory_growing(0, 4, None).unwrap());
        // A third memory of 4 would make 12.
        assert!(!l.memory_growing(0, 4, None).unwrap());
        assert!(l.hit);
        // Growing the first memory from 4 to 6 makes 10: allowed.
        assert!(l.memory_growing(4, 6, None).unwrap());
        assert!(!l.memory_growing(6, 7, None).unwrap());
    }
}
