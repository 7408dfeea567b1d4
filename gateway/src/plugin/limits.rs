//! Per-call resource limits: the memory cap and the deadline ticker.

use std::time::Duration;

use wasmtime::{EngineWeak, ResourceLimiter};

/// Memory a plugin may use unless the config says otherwise. Verifying and
/// reshaping a webhook needs a few MiB at most; a plugin past this is broken.
pub const DEFAULT_PLUGIN_MEMORY: usize = 16 << 20;

/// Wall-clock time one plugin call may take unless the config says
/// otherwise. Providers time out after a few seconds (Slack: 3 s) and a
/// verify or transform is microseconds of work, so 100 ms is generous.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_millis(100);

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

/// Caps linear memory and records whether the cap was hit, so a trap that
/// follows a refused `memory.grow` is reported as out-of-memory rather than
/// as a generic trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    pub(super) hit: bool,
}

impl MemoryLimiter {
    pub(super) fn new(limit: usize) -> Self {
        MemoryLimiter { limit, hit: false }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
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
