//! The wasmtime host: one [`PluginEngine`] compiles components once into
//! [`LoadedPlugin`]s (pre-instantiated), and every stage call runs with a
//! deadline and a memory cap, on a warm instance of the same use of the
//! plugin or a fresh one ([`warm`]).
//!
//! Deliberately not here: which plugin a route uses (that is `pipeline`),
//! HTTP (that is `ingress`), and file watching (that is `reload`). Nothing
//! in this module reads or compiles wasm on the request path.

mod bindings;
pub mod builtin;
mod host;
mod limits;
mod types;
mod warm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use bindings::v2::exports::hookgate::plugin as v2x;

pub use host::{CallContext, HashAlgorithm, PluginConfig, constant_time_eq, hmac_of};
pub use limits::{
    DEFAULT_PLUGIN_MEMORY, DEFAULT_PLUGIN_TIMEOUT, DEFAULT_REQUEST_PLUGIN_TIME,
    DEFAULT_ROUTE_IN_FLIGHT, EPOCH_TICK, LOAD_CALL_TIMEOUT, MAX_MESSAGES_PER_REQUEST,
    MAX_USE_MEMORY,
};
pub use types::{GuestError, HeaderPair, InboundRequest, Message, PluginResponse, Verdict};

use host::CallState;
use warm::Warm;

/// Numbers each [`LoadedPlugin`], so a warm instance is only ever handed
/// back to the plugin it is an instance of.
static NEXT_PLUGIN_ID: AtomicU64 = AtomicU64::new(1);

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
///
/// Measured again once calls ran on warm instances (teardown then happens
/// once per instance, not per call; `cpu/stage/*`, thread CPU time,
/// medians of 6 runs each, idle machine): 1 MiB: no-op 13.6–16.5 µs
/// (median 15.1), `github` 2 KB verify 15.5–21.7 (17.7); 512 KiB: no-op
/// 11.9–14.9 (12.3), `github` 16.3–24.0 (21.4). 512 KiB: the scan is
/// cheaper for small guests; a guest dirtying more than the window pays a
/// page fault per extra page on its slot's next instantiation.
const KEEP_RESIDENT_SCANNED: usize = 512 << 10;

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

impl Stage {
    /// The stage's name, as in the WIT and the metrics' `stage` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Transform => "transform",
            Stage::Route => "route",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

impl PluginLimits {
    /// These limits for a one-off call at load: the same memory cap, and a
    /// deadline of at least [`LOAD_CALL_TIMEOUT`](limits::LOAD_CALL_TIMEOUT).
    fn for_load(self) -> PluginLimits {
        PluginLimits {
            timeout: self.timeout.max(limits::LOAD_CALL_TIMEOUT),
            ..self
        }
    }
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
    /// Declares stages it does not export, or exports stages it does not
    /// declare.
    #[error("plugin `{name}` {message}")]
    Stages {
        /// Plugin name.
        name: String,
        /// Which stages disagree.
        message: String,
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
    /// Warm instances parked across every use (see [`warm`]).
    warm: Arc<AtomicUsize>,
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
            // Room for per-use `memory:` overrides above the default; the
            // limiter holds every call to its own cap.
            .max_memory_size(limits.memory.max(MAX_USE_MEMORY))
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
        host::add_minimal_wasi(&mut linker)?;
        bindings::v1::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
        bindings::v2::HostView::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
        host::add_random_budget(&mut linker)?;

        limits::spawn_ticker(engine.weak());
        Ok(PluginEngine {
            engine,
            linker: Arc::new(linker),
            limits,
            cache,
            warm: Arc::new(AtomicUsize::new(0)),
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
        self.load_with(name, wasm, source, self.limits).await
    }

    /// Like [`load`](Self::load), calling `describe` with `limits`: the
    /// largest any use of the plugin gets, so a plugin that needs more
    /// than the defaults to start (an embedded JS or Python runtime) loads
    /// where a route gives it that much. The deadline is at least
    /// [`LOAD_CALL_TIMEOUT`]: loading is on no request's path.
    pub async fn load_with(
        &self,
        name: &str,
        wasm: Vec<u8>,
        source: PluginSource,
        limits: PluginLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let hash = hex::encode(Sha256::digest(&wasm));
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let owned_name = name.to_owned();
        let (pre, api) = tokio::task::spawn_blocking(move || {
            let component = Component::new(&engine, &wasm).map_err(|e| LoadError::Compile {
                name: owned_name.clone(),
                message: format!("{e:#}"),
            })?;
            let link = |e: wasmtime::Error| LoadError::Link {
                name: owned_name.clone(),
                message: format!("{e:#}"),
            };
            // WASI the host does not link (sockets, HTTP: a component
            // using `std::net`, or a JS runtime, imports them) becomes
            // traps, so such a component loads and reaches nothing.
            // Anything else the host does not know stays an error, so a
            // component of another world is refused at load.
            if let Some(name) = foreign_import(&engine, &component) {
                return Err(link(wasmtime::format_err!(
                    "it imports `{name}`, which the host does not provide"
                )));
            }
            let mut linker = (*linker).clone();
            host::stub_unlinked_wasi(&mut linker, &engine, &component).map_err(link)?;
            let pre = linker.instantiate_pre(&component).map_err(link)?;
            let api = Api::of(&pre).map_err(link)?;
            Ok::<_, LoadError>((pre, api))
        })
        .await
        .map_err(|e| LoadError::Compile {
            name: name.to_owned(),
            message: format!("compiler task failed: {e}"),
        })??;
        let mut plugin = LoadedPlugin {
            id: NEXT_PLUGIN_ID.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(name),
            engine: self.clone(),
            pre,
            api,
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
            config: Arc::new(PluginConfig::single_use(None)),
            limits: limits.for_load(),
            http: None,
        };
        let describe_error = |e| LoadError::Describe {
            name: name.to_owned(),
            source: Box::new(e),
        };
        let (version, stages) = match &plugin.api {
            Api::V1(indices) => {
                let info = plugin
                    .call(&ctx, async |store, instance| {
                        let p = indices.load(&mut *store, instance)?;
                        p.hookgate_plugin_metadata().call_describe(store).await
                    })
                    .await
                    .map_err(describe_error)?;
                let stages = info.stages.into_iter().map(Stage::from_v1).collect();
                (info.version, stages)
            }
            Api::V2(api) => {
                let info = plugin
                    .call(&ctx, async |store, instance| {
                        // Loading every exported stage type-checks it now,
                        // not at a webhook.
                        api.load_stages(&mut *store, instance)?;
                        api.metadata
                            .load(&mut *store, instance)?
                            .call_describe(store)
                            .await
                    })
                    .await
                    .map_err(describe_error)?;
                let declared: Vec<Stage> = info.stages.into_iter().map(Stage::from_v2).collect();
                let exported = api.exported();
                if let Some(s) = declared.iter().find(|s| !exported.contains(s)) {
                    return Err(LoadError::Stages {
                        name: name.to_owned(),
                        message: format!(
                            "declares stage {s} but does not export hookgate:plugin/{}@0.2.0",
                            s.interface()
                        ),
                    });
                }
                if let Some(s) = exported.iter().find(|s| !declared.contains(s)) {
                    return Err(LoadError::Stages {
                        name: name.to_owned(),
                        message: format!(
                            "exports hookgate:plugin/{}@0.2.0 but does not declare stage {s}",
                            s.interface()
                        ),
                    });
                }
                (info.version, declared)
            }
        };
        plugin.version = version;
        plugin.stages = stages;
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }
}

/// Which WIT version a component speaks, with the export indices looked up
/// once at load.
enum Api {
    /// 0.1.0: every stage exported; `describe` says which are real.
    V1(bindings::v1::PluginIndices),
    /// 0.2.0: only the implemented stages exported.
    V2(Box<V2Api>),
}

/// A 0.2.0 component's exports.
struct V2Api {
    metadata: v2x::metadata::GuestIndices,
    verifier: Option<v2x::verifier::GuestIndices>,
    transformer: Option<v2x::transformer::GuestIndices>,
    router: Option<v2x::router::GuestIndices>,
}

impl Api {
    /// Reads the version and the stages from the component's exports.
    fn of(pre: &InstancePre<CallState>) -> wasmtime::Result<Self> {
        let component = pre.component();
        if component
            .get_export_index(None, "hookgate:plugin/metadata@0.2.0")
            .is_some()
        {
            return Ok(Api::V2(Box::new(V2Api {
                metadata: v2x::metadata::GuestIndices::new(pre)?,
                verifier: v2x::verifier::GuestIndices::new(pre).ok(),
                transformer: v2x::transformer::GuestIndices::new(pre).ok(),
                router: v2x::router::GuestIndices::new(pre).ok(),
            })));
        }
        if component
            .get_export_index(None, "hookgate:plugin/metadata@0.1.0")
            .is_some()
        {
            return Ok(Api::V1(bindings::v1::PluginIndices::new(pre)?));
        }
        Err(wasmtime::format_err!(
            "it exports neither hookgate:plugin/metadata@0.2.0 nor hookgate:plugin/metadata@0.1.0"
        ))
    }
}

impl V2Api {
    fn exported(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        if self.verifier.is_some() {
            stages.push(Stage::Verify);
        }
        if self.transformer.is_some() {
            stages.push(Stage::Transform);
        }
        if self.router.is_some() {
            stages.push(Stage::Route);
        }
        stages
    }

    fn load_stages(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        if let Some(v) = &self.verifier {
            v.load(&mut *store, instance)?;
        }
        if let Some(t) = &self.transformer {
            t.load(&mut *store, instance)?;
        }
        if let Some(r) = &self.router {
            r.load(&mut *store, instance)?;
        }
        Ok(())
    }
}

impl Stage {
    fn from_v1(s: bindings::v1::hookgate::plugin::types::Stage) -> Self {
        use bindings::v1::hookgate::plugin::types::Stage as W;
        match s {
            W::Verify => Stage::Verify,
            W::Transform => Stage::Transform,
            W::Route => Stage::Route,
        }
    }

    fn from_v2(s: bindings::v2::hookgate::plugin::types::Stage) -> Self {
        use bindings::v2::hookgate::plugin::types::Stage as W;
        match s {
            W::Verify => Stage::Verify,
            W::Transform => Stage::Transform,
            W::Route => Stage::Route,
        }
    }

    /// The WIT interface that implements the stage.
    fn interface(self) -> &'static str {
        match self {
            Stage::Verify => "verifier",
            Stage::Transform => "transformer",
            Stage::Route => "router",
        }
    }
}

/// One problem a plugin found in a `with:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithError {
    /// Path inside `with:` (`secert`, `rules[1].event`); empty for the
    /// whole block.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A compiled, pre-instantiated plugin. Cheap to share (`Arc`). A call
/// runs on a warm instance of the same use when one is parked (see
/// [`warm`]), else on a fresh one.
pub struct LoadedPlugin {
    id: u64,
    name: Arc<str>,
    engine: PluginEngine,
    pre: InstancePre<CallState>,
    api: Api,
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

    /// The WIT version the component speaks (`0.1.0` or `0.2.0`).
    pub fn wit_version(&self) -> &'static str {
        match self.api {
            Api::V1(_) => "0.1.0",
            Api::V2(_) => "0.2.0",
        }
    }

    /// Asks the plugin whether `with` suits it (0.2.0 `validate-config`).
    /// 0.1.0 plugins cannot say, so everything suits them here and a bad
    /// key shows at the first request.
    pub async fn validate_config(
        &self,
        with: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Vec<WithError>> {
        self.validate_config_with(with, self.engine.limits).await
    }

    /// Like [`validate_config`](Self::validate_config), with the limits of
    /// the use whose `with:` it is (its deadline raised to the load-time
    /// floor, [`LOAD_CALL_TIMEOUT`]).
    pub async fn validate_config_with(
        &self,
        with: &serde_json::Map<String, serde_json::Value>,
        limits: PluginLimits,
    ) -> Result<(), Vec<WithError>> {
        let Api::V2(api) = &self.api else {
            return Ok(());
        };
        let ctx = CallContext {
            plugin: self.name.clone(),
            route: Arc::from(""),
            config: Arc::new(PluginConfig::single_use(Some(with))),
            limits: limits.for_load(),
            http: None,
        };
        let json = serde_json::Value::Object(with.clone()).to_string();
        let result = self
            .call(&ctx, async |store, instance| {
                api.metadata
                    .load(&mut *store, instance)?
                    .call_validate_config(store, &json)
                    .await
            })
            .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(errors)) => Err(errors
                .into_iter()
                .map(|e| WithError {
                    path: e.path,
                    message: e.message,
                })
                .collect()),
            Err(e) => Err(vec![WithError {
                path: String::new(),
                message: format!("could not be checked: {e}"),
            }]),
        }
    }

    /// Runs the verifier on the raw request.
    pub async fn verify(
        &self,
        ctx: &CallContext,
        req: &InboundRequest,
    ) -> Result<Verdict, PluginError> {
        match &self.api {
            Api::V1(indices) => {
                let headers = types::v1::headers_to_wit(&req.headers);
                let req = types::v1::request(req, &headers);
                self.call(ctx, async |store, instance| {
                    let p = indices.load(&mut *store, instance)?;
                    p.hookgate_plugin_verifier().call_verify(store, req).await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v1::error_from)))
                .map(types::v1::verdict_from)
            }
            Api::V2(api) => {
                let indices = self.exported_stage(api.verifier.as_ref(), Stage::Verify)?;
                let headers = types::v2::headers_to_wit(&req.headers);
                let req = types::v2::request(req, &headers);
                self.call(ctx, async |store, instance| {
                    let g = indices.load(&mut *store, instance)?;
                    g.call_verify(store, req).await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v2::error_from)))
                .map(types::v2::verdict_from)
            }
        }
    }

    /// Runs the transformer on one message.
    pub async fn transform(
        &self,
        ctx: &CallContext,
        msg: &Message,
    ) -> Result<Vec<Message>, PluginError> {
        match &self.api {
            Api::V1(indices) => {
                let headers = types::v1::headers_to_wit(&msg.headers);
                let msg = types::v1::message(msg, &headers);
                self.call(ctx, async |store, instance| {
                    let p = indices.load(&mut *store, instance)?;
                    p.hookgate_plugin_transformer()
                        .call_transform(store, msg)
                        .await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v1::error_from)))
                .map(|msgs| msgs.into_iter().map(types::v1::message_from).collect())
            }
            Api::V2(api) => {
                let indices = self.exported_stage(api.transformer.as_ref(), Stage::Transform)?;
                let headers = types::v2::headers_to_wit(&msg.headers);
                let msg = types::v2::message(msg, &headers);
                self.call(ctx, async |store, instance| {
                    let g = indices.load(&mut *store, instance)?;
                    g.call_transform(store, msg).await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v2::error_from)))
                .map(|msgs| msgs.into_iter().map(types::v2::message_from).collect())
            }
        }
    }

    /// Runs the router on one message.
    pub async fn route(
        &self,
        ctx: &CallContext,
        msg: &Message,
        defaults: &[String],
    ) -> Result<Vec<String>, PluginError> {
        let defaults: Vec<&str> = defaults.iter().map(String::as_str).collect();
        match &self.api {
            Api::V1(indices) => {
                let headers = types::v1::headers_to_wit(&msg.headers);
                let msg = types::v1::message(msg, &headers);
                self.call(ctx, async |store, instance| {
                    let p = indices.load(&mut *store, instance)?;
                    p.hookgate_plugin_router()
                        .call_route(store, msg, &defaults)
                        .await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v1::error_from)))
            }
            Api::V2(api) => {
                let indices = self.exported_stage(api.router.as_ref(), Stage::Route)?;
                let headers = types::v2::headers_to_wit(&msg.headers);
                let msg = types::v2::message(msg, &headers);
                self.call(ctx, async |store, instance| {
                    let g = indices.load(&mut *store, instance)?;
                    g.call_route(store, msg, &defaults).await
                })
                .await
                .and_then(|r| self.guest(r.map_err(types::v2::error_from)))
            }
        }
    }

    /// The indices of an exported stage. The pipeline only binds a plugin
    /// to stages it has, so a miss is the gateway's bug, reported as an
    /// instantiation failure rather than a panic.
    fn exported_stage<'a, T>(
        &self,
        indices: Option<&'a T>,
        stage: Stage,
    ) -> Result<&'a T, PluginError> {
        indices.ok_or_else(|| PluginError::Instantiate {
            plugin: self.name.clone(),
            message: format!("does not export the {stage} stage"),
        })
    }

    fn guest<T>(&self, r: Result<T, GuestError>) -> Result<T, PluginError> {
        r.map_err(|error| PluginError::Guest {
            plugin: self.name.clone(),
            error,
        })
    }

    /// One bounded call: a warm instance of this use when one is parked,
    /// else a fresh store and instance; a memory cap; a deadline checked
    /// at every epoch tick (where the guest also yields to the runtime);
    /// and a wall-clock timer around the whole call.
    ///
    /// The epoch check alone only fires while wasm code runs: a guest
    /// blocked in a host call (a WASI `poll` on a sleep, say) runs none, so
    /// the outer timer is what makes the deadline hold. Dropping the call's
    /// future on timeout unwinds the guest's fiber; the store goes with it
    /// (a store is parked again only after a call that returned).
    async fn call<R>(
        &self,
        ctx: &CallContext,
        f: impl AsyncFnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = ctx.limits;
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let pool = &ctx.config.warm;
        let (mut store, warm, calls) = match pool.take(self.id) {
            Some(w) => {
                let Warm {
                    mut store,
                    instance,
                    calls,
                    ..
                } = w;
                store.data_mut().begin(ctx.clone(), limits.memory);
                (store, Some(instance), calls)
            }
            None => {
                let mut store = Store::new(
                    &self.engine.engine,
                    CallState::new(ctx.clone(), limits.memory),
                );
                store.limiter(|s| &mut s.limiter);
                (store, None, 0)
            }
        };
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let work = async {
            let instance = match warm {
                Some(i) => i,
                None => match self.pre.instantiate_async(&mut store).await {
                    Ok(i) => i,
                    Err(e) => return Err((e, true)),
                },
            };
            match f(&mut store, &instance).await {
                Ok(r) => Ok((r, instance)),
                Err(e) => Err((e, false)),
            }
        };
        // The epoch callback ends running wasm at the first tick past the
        // deadline; this timer is the backstop for a guest that runs none,
        // one tick later so that the two do not race over running code.
        let span = tracing::debug_span!(target: crate::observability::STAGE_TARGET, "plugin",
            plugin = &*self.name, route = &*ctx.route);
        let timed = tokio::time::timeout_at((deadline + EPOCH_TICK).into(), work);
        match tracing::Instrument::instrument(timed, span).await {
            Ok(Ok((r, instance))) => {
                self.park(pool, store, instance, calls + 1);
                Ok(r)
            }
            Ok(Err((e, instantiating))) => Err(self.classify(e, &store, started, instantiating)),
            Err(_elapsed) => Err(PluginError::Timeout {
                plugin: self.name.clone(),
                timeout: limits.timeout,
            }),
        }
    }

    /// Parks an instance whose call returned, when it is still fit to
    /// serve (see [`warm`] for the rules).
    fn park(
        &self,
        pool: &warm::WarmPool,
        mut store: Store<CallState>,
        instance: Instance,
        calls: u32,
    ) {
        let state = store.data();
        let fit = pool.enabled()
            && calls < warm::MAX_CALLS
            && !state.limiter.hit
            && state.memory_used() <= state.limits().memory / 2;
        if !fit {
            return;
        }
        store.data_mut().park();
        if let Some(w) = Warm::new(&self.engine.warm, self.id, store, instance, calls) {
            pool.put(w);
        }
    }

    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<CallState>,
        started: Instant,
        instantiating: bool,
    ) -> PluginError {
        let plugin = self.name.clone();
        let limits = store.data().limits();
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
            Some(_) => {
                // The backtrace, for `hookgate plugin test` and debugging.
                tracing::debug!(plugin = %plugin, "plugin trapped: {e:?}");
                PluginError::Trap {
                    plugin,
                    message: trap_message(&e),
                }
            }
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

/// The first import of `component` that is neither WASI (linked, or a
/// trap) nor a `hookgate:plugin` interface of a version the host serves.
fn foreign_import(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| {
            let hookgate = name.starts_with("hookgate:plugin/")
                && (name.ends_with("@0.1.0") || name.ends_with("@0.2.0"));
            !(name.starts_with("wasi:") || hookgate)
        })
        .map(str::to_owned)
}

/// wasmtime's cache in `dir` (made absolute, as wasmtime requires).
fn open_cache(dir: &Path) -> anyhow::Result<Cache> {
    let mut config = CacheConfig::new();
    config.with_directory(std::path::absolute(dir)?);
    Ok(Cache::new(config)?)
}

/// What went wrong, in one line: the root cause (`wasm trap: wasm
/// \`unreachable\` instruction executed`). wasmtime wraps it in a context
/// whose first line is only `error while executing at wasm backtrace:`;
/// the backtrace itself is for logs at debug level, not for error bodies.
fn trap_message(e: &wasmtime::Error) -> String {
    let root = e.root_cause().to_string();
    root.lines().next().unwrap_or("trap").to_owned()
}
