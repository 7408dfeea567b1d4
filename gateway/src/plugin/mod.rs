//! The wasmtime host: one [`PluginEngine`] compiles components once into
//! [`LoadedPlugin`]s (pre-instantiated), and every stage call gets a fresh
//! `Store` with a deadline and a memory cap.
//!
//! Deliberately not here: which plugin a route uses (that is `pipeline`),
//! HTTP (that is `ingress`), and file watching (that is `reload`). Nothing
//! in this module reads or compiles wasm on the request path.

mod bindings;
pub mod builtin;
mod host;
mod limits;
mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use bindings::{Plugin, PluginPre};

pub use bindings::HashAlgorithm;
pub use host::{CallContext, PluginConfig, constant_time_eq, hmac_of};
pub use limits::{DEFAULT_PLUGIN_MEMORY, DEFAULT_PLUGIN_TIMEOUT, EPOCH_TICK};
pub use types::{GuestError, HeaderPair, InboundRequest, Message, PluginResponse, Verdict};

use host::CallState;

/// Concurrent plugin instances the pool has room for. Calls run to
/// completion on the thread that started them, so live instances never
/// exceed the number of threads running plugin code; this is headroom.
const POOL_INSTANCES: u32 = 128;

/// Guest memory kept resident in a pool slot after an instance is torn down,
/// when the kernel has `PAGEMAP_SCAN` (Linux 6.7+): wasmtime then finds the
/// pages the call dirtied within this window and restores only those
/// (memcpy from the image or memset), so there is no `madvise` and no page
/// fault on the slot's next call. The price is memory: each warm slot keeps
/// up to this much resident (only pages a call touched).
///
/// Measured with `cargo bench -p hookgate` (`stage/noop_verify`: the no-op
/// component on a fresh instance; criterion medians of thread CPU time /
/// wall time, 3 runs each, on a shared 2-core machine with other builds
/// running): 256 KiB without the scan (the previous setting) 36–47 µs /
/// 41–71 µs; scan + 512 KiB 17–24 / 25–39; scan + 1 MiB 16–17 / 17–25;
/// scan + 2 MiB 25–27 / 26–40; scan + 16 MiB 16–28 / 25–36 (the scan walks
/// the whole window).
const KEEP_RESIDENT_SCANNED: usize = 1 << 20;

/// Guest memory kept resident without `PAGEMAP_SCAN`. Wasmtime then
/// memsets the whole window on every teardown and `madvise`s the rest, so
/// the window must stay small: a 1 MiB memset would cost more than the
/// `madvise` it saves.
const KEEP_RESIDENT_UNSCANNED: usize = 256 << 10;

/// Table memory kept resident per slot. Measured as above: 0 (an `madvise`
/// per table, and a component has several) doubled the no-op call's cost.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Authenticate the raw request.
    Verify,
    /// Reshape a message.
    Transform,
    /// Choose destinations.
    Route,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Verify => "verify",
            Stage::Transform => "transform",
            Stage::Route => "route",
        })
    }
}

/// Limits applied to every plugin call.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Wall-clock deadline per call.
    pub timeout: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            memory: DEFAULT_PLUGIN_MEMORY,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component.
    #[error("plugin `{name}` is not a valid WebAssembly component: {message}")]
    Compile {
        /// Plugin name.
        name: String,
        /// Reason.
        message: String,
    },
    /// A component, but not one of the `hookgate:plugin/plugin` world.
    #[error("plugin `{name}` does not fit the hookgate:plugin world: {message}")]
    Link {
        /// Plugin name.
        name: String,
        /// Reason.
        message: String,
    },
    /// `describe` failed.
    #[error("plugin `{name}` failed to describe itself: {source}")]
    Describe {
        /// Plugin name.
        name: String,
        /// The call's failure.
        #[source]
        source: Box<PluginError>,
    },
    /// Could not read the file.
    #[error("cannot read plugin `{name}` from {path}: {source}")]
    Io {
        /// Plugin name.
        name: String,
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a plugin call failed. Each variant is a metric label
/// ([`PluginError::kind`]); none of them takes the gateway down.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its {timeout:?} deadline")]
    Timeout {
        /// Plugin name.
        plugin: Arc<str>,
        /// The deadline.
        timeout: Duration,
    },
    /// Tried to grow memory past its cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit} bytes")]
    OutOfMemory {
        /// Plugin name.
        plugin: Arc<str>,
        /// The cap.
        limit: usize,
    },
    /// Trapped (panic, unreachable, bad memory access).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: Arc<str>,
        /// Trap description.
        message: String,
    },
    /// Returned an error of its own.
    #[error("plugin `{plugin}`: {error}")]
    Guest {
        /// Plugin name.
        plugin: Arc<str>,
        /// What it said.
        error: GuestError,
    },
    /// Could not be instantiated (pool exhausted, start function failed).
    #[error("plugin `{plugin}` could not be instantiated: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: Arc<str>,
        /// Reason.
        message: String,
    },
}

impl PluginError {
    /// The plugin that failed.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Timeout { plugin, .. }
            | PluginError::OutOfMemory { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Guest { plugin, .. }
            | PluginError::Instantiate { plugin, .. } => plugin,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Timeout { .. } => "timeout",
            PluginError::OutOfMemory { .. } => "out_of_memory",
            PluginError::Trap { .. } => "trap",
            PluginError::Guest { error, .. } => match error {
                GuestError::Config(_) => "guest_config",
                GuestError::InvalidInput(_) => "guest_invalid_input",
                GuestError::Other(_) => "guest_error",
            },
            PluginError::Instantiate { .. } => "instantiate",
        }
    }
}

/// Where a plugin's code came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum PluginSource {
    /// Compiled into the binary.
    Builtin,
    /// `NAME.wasm` in `plugins.dir`.
    File(String),
}

/// The one wasmtime engine and linker of a gateway process.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    limits: PluginLimits,
    cache: Option<Cache>,
}

/// What the on-disk cache of compiled plugins has done since start-up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CacheStats {
    /// Where compiled code is kept.
    pub dir: PathBuf,
    /// Compilations answered from the cache.
    pub hits: usize,
    /// Compilations done and written to the cache.
    pub misses: usize,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Builds the engine (pooling allocator, epoch interruption) and starts
    /// its deadline ticker.
    pub fn new(limits: PluginLimits) -> anyhow::Result<Self> {
        Self::with_cache(limits, None)
    }

    /// Like [`new`](Self::new), keeping compiled code in `cache_dir` keyed by
    /// a hash of the component's bytes and the engine's settings, so a
    /// restart with unchanged plugins loads them without compiling. This is
    /// wasmtime's own cache (no `unsafe` deserialisation here). A cache that
    /// cannot be set up is logged and skipped: it only saves time.
    pub fn with_cache(limits: PluginLimits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(limits.memory)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_SCANNED);
        } else {
            pool.linear_memory_keep_resident(KEEP_RESIDENT_UNSCANNED);
        }

        let cache = cache_dir.and_then(|dir| match open_cache(dir) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "plugins will be compiled at every start: cannot use the plugin cache: {e:#}");
                None
            }
        });

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .cache(cache.clone());
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;

        limits::spawn_ticker(engine.weak());
        Ok(PluginEngine {
            engine,
            linker: Arc::new(linker),
            limits,
            cache,
        })
    }

    /// The limits every call gets.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Hits and misses of the on-disk cache, when there is one.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| CacheStats {
            dir: c.directory().clone(),
            hits: c.cache_hits(),
            misses: c.cache_misses(),
        })
    }

    /// Compiles `wasm`, links it against the host interface and asks it to
    /// describe itself. Compilation (milliseconds) runs on a blocking
    /// thread, off the request path.
    pub async fn load(
        &self,
        name: &str,
        wasm: Vec<u8>,
        source: PluginSource,
    ) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let hash = hex::encode(Sha256::digest(&wasm));
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let owned_name = name.to_owned();
        let pre = tokio::task::spawn_blocking(move || {
            let component = Component::new(&engine, &wasm).map_err(|e| LoadError::Compile {
                name: owned_name.clone(),
                message: format!("{e:#}"),
            })?;
            let link = |e: wasmtime::Error| LoadError::Link {
                name: owned_name.clone(),
                message: format!("{e:#}"),
            };
            let instance_pre = linker.instantiate_pre(&component).map_err(link)?;
            PluginPre::new(instance_pre).map_err(link)
        })
        .await
        .map_err(|e| LoadError::Compile {
            name: name.to_owned(),
            message: format!("compiler task failed: {e}"),
        })??;
        let mut plugin = LoadedPlugin {
            name: Arc::from(name),
            engine: self.clone(),
            pre,
            version: String::new(),
            stages: Vec::new(),
            hash,
            source,
            loaded_at: SystemTime::now(),
            load_time: Duration::ZERO,
        };
        let ctx = CallContext {
            plugin: plugin.name.clone(),
            route: Arc::from(""),
            config: Arc::new(PluginConfig::default()),
        };
        let info = plugin
            .call(&ctx, async |store, p| {
                p.hookgate_plugin_metadata().call_describe(store).await
            })
            .await
            .map_err(|e| LoadError::Describe {
                name: name.to_owned(),
                source: Box::new(e),
            })?;
        plugin.version = info.version;
        plugin.stages = info
            .stages
            .into_iter()
            .map(|s| match s {
                bindings::types::Stage::Verify => Stage::Verify,
                bindings::types::Stage::Transform => Stage::Transform,
                bindings::types::Stage::Route => Stage::Route,
            })
            .collect();
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }
}

/// A compiled, pre-instantiated plugin. Cheap to share (`Arc`); each call
/// instantiates it afresh, so no state survives between webhooks.
pub struct LoadedPlugin {
    name: Arc<str>,
    engine: PluginEngine,
    pre: PluginPre<CallState>,
    version: String,
    stages: Vec<Stage>,
    hash: String,
    source: PluginSource,
    loaded_at: SystemTime,
    load_time: Duration,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("stages", &self.stages)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The plugin's name (file stem or built-in name).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version string the plugin reported.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// SHA-256 of the component bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the code came from.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    /// When it was compiled.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// How long compiling (or fetching from the cache), linking and
    /// `describe` took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Whether the plugin says it implements `stage`.
    pub fn implements(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }

    /// The stages the plugin implements.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs the verifier on the raw request.
    pub async fn verify(
        &self,
        ctx: &CallContext,
        req: &InboundRequest,
    ) -> Result<Verdict, PluginError> {
        let req = req.to_wit();
        self.call(ctx, async |store, p| {
            p.hookgate_plugin_verifier().call_verify(store, &req).await
        })
        .await
        .and_then(|r| self.guest(r))
        .map(Verdict::from_wit)
    }

    /// Runs the transformer on one message.
    pub async fn transform(
        &self,
        ctx: &CallContext,
        msg: &Message,
    ) -> Result<Vec<Message>, PluginError> {
        let msg = msg.to_wit();
        self.call(ctx, async |store, p| {
            p.hookgate_plugin_transformer()
                .call_transform(store, &msg)
                .await
        })
        .await
        .and_then(|r| self.guest(r))
        .map(|msgs| msgs.into_iter().map(Message::from_wit).collect())
    }

    /// Runs the router on one message.
    pub async fn route(
        &self,
        ctx: &CallContext,
        msg: &Message,
        defaults: &[String],
    ) -> Result<Vec<String>, PluginError> {
        let msg = msg.to_wit();
        self.call(ctx, async |store, p| {
            p.hookgate_plugin_router()
                .call_route(store, &msg, defaults)
                .await
        })
        .await
        .and_then(|r| self.guest(r))
    }

    fn guest<T>(&self, r: Result<T, bindings::types::Error>) -> Result<T, PluginError> {
        r.map_err(|e| PluginError::Guest {
            plugin: self.name.clone(),
            error: e.into(),
        })
    }

    /// One bounded call: fresh store, memory cap, and a deadline checked at
    /// every epoch tick, where the guest also yields to the runtime.
    async fn call<R>(
        &self,
        ctx: &CallContext,
        f: impl AsyncFnOnce(&mut Store<CallState>, &Plugin) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = self.engine.limits;
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let mut store = Store::new(
            &self.engine.engine,
            CallState::new(ctx.clone(), limits.memory),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => return Err(self.classify(e, &store, started, true)),
        };
        let result = f(&mut store, &instance).await;
        result.map_err(|e| self.classify(e, &store, started, false))
    }

    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<CallState>,
        started: Instant,
        instantiating: bool,
    ) -> PluginError {
        let plugin = self.name.clone();
        let limits = self.engine.limits;
        if store.data().limiter.hit {
            return PluginError::OutOfMemory {
                plugin,
                limit: limits.memory,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                plugin,
                timeout: limits.timeout,
            },
            Some(_) => PluginError::Trap {
                plugin,
                message: trap_message(&e),
            },
            None if instantiating => PluginError::Instantiate {
                plugin,
                message: format!("{e:#}"),
            },
            None => {
                tracing::debug!(elapsed = ?started.elapsed(), "plugin call failed: {e:#}");
                PluginError::Trap {
                    plugin,
                    message: trap_message(&e),
                }
            }
        }
    }
}

/// wasmtime's cache in `dir` (made absolute, as wasmtime requires).
fn open_cache(dir: &Path) -> anyhow::Result<Cache> {
    let mut config = CacheConfig::new();
    config.with_directory(std::path::absolute(dir)?);
    Ok(Cache::new(config)?)
}

/// The first line of a trap's description: the backtrace that follows is
/// for logs at debug level, not for error bodies.
fn trap_message(e: &wasmtime::Error) -> String {
    let full = format!("{e:#}");
    full.lines().next().unwrap_or("trap").to_owned()
}
