//! hookgate: a WebAssembly-extensible webhook gateway.
//!
//! A webhook arrives at `/hooks/{route}` ([`ingress`]), runs through the
//! route's verify → transform → route plugins ([`pipeline`], on the wasmtime
//! host in [`plugin`]), and is handed to [`delivery`]. [`config`] turns YAML
//! into checked types; [`state`] holds the one swappable snapshot.
//!
//! `main.rs` parses the command line, sets up logging and calls [`run`];
//! tests call [`run`] or the binary with a port-0 listener.

pub mod admin;
pub mod authoring;
pub mod clock;
pub mod config;
pub mod console;
pub mod delivery;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress;
pub mod metrics;
pub mod observability;
pub mod openapi;
#[cfg(feature = "otel")]
pub mod otel;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod retry;
pub mod signing;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::GatewayConfig;
use plugin::{PluginEngine, PluginLimits};

/// The plugin limits a config asks for.
pub fn plugin_limits(config: &GatewayConfig) -> PluginLimits {
    PluginLimits {
        timeout: config.plugins.timeout.0,
        memory: usize::try_from(config.plugins.memory.0).unwrap_or(usize::MAX),
    }
}

/// Where under `data_dir` compiled plugins are cached.
pub const PLUGIN_CACHE_DIR: &str = "plugin-cache";

/// Compiles `config` into a first snapshot (slow: compiles plugins, on
/// blocking threads, or takes them from `cache_dir`). Used by `serve` and
/// `check` alike.
pub async fn prepare(
    config: GatewayConfig,
    cache_dir: Option<&Path>,
) -> Result<(PluginEngine, pipeline::Snapshot), config::ConfigErrors> {
    let engine = PluginEngine::with_cache(plugin_limits(&config), cache_dir).map_err(|e| {
        config::ConfigErrors(vec![config::ConfigError {
            path: "plugins".into(),
            message: format!("cannot start the plugin engine: {e:#}"),
        }])
    })?;
    let snapshot = pipeline::compile(&config, &engine, None, 1).await?;
    Ok((engine, snapshot))
}

/// Runs the gateway on `listener` until `shutdown` fires: stops accepting,
/// finishes requests in flight, then lets delivery drain. Reloads read
/// `config_path` (see [`reload`]).
pub async fn run(
    config: GatewayConfig,
    config_path: Option<PathBuf>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cache_dir = config.data_dir.join(PLUGIN_CACHE_DIR);
    let (engine, snapshot) = prepare(config.clone(), Some(&cache_dir))
        .await
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let metrics = metrics::Metrics::default();
    let store: Arc<dyn store::Store> = match config.store.engine {
        config::StoreEngine::Sqlite => {
            Arc::new(store::sqlite::SqliteStore::open(&config.data_dir)?)
        }
        config::StoreEngine::Memory => Arc::new(store::memory::open()?),
        config::StoreEngine::Postgres => {
            let url = config.store.url.as_deref().unwrap_or_default();
            Arc::new(store::postgres::PostgresStore::open(url, config.store.pool_size).await?)
        }
    };
    let routes = snapshot.routes.len();
    let plugins = snapshot.plugins.len();
    let snapshots = Arc::new(ArcSwap::from_pointee(snapshot));
    // Delivery stops only after the server has finished its requests, so
    // every event accepted during shutdown is stored first.
    let delivery_stop = CancellationToken::new();
    let (delivery, delivery_task) = delivery::start(
        store.clone(),
        snapshots.clone(),
        metrics.clone(),
        &config.delivery,
        delivery_stop.clone(),
    )?;
    tokio::spawn(retention(
        store.clone(),
        snapshots.clone(),
        delivery_stop.clone(),
    ));
    let state = state::AppState::new(snapshots, engine, metrics, store, delivery);
    reload::spawn(state.clone(), config_path, shutdown.clone());
    serve(&config, state, listener, shutdown, routes, plugins).await?;
    tracing::info!("stopped accepting; finishing deliveries in flight");
    delivery_stop.cancel();
    delivery_task.await.ok();
    Ok(())
}

/// Serves the public listener, and the operator's (`admin.listen`) when
/// configured, through the door's limits until `shutdown` fires and the
/// requests in flight have finished (or `limits.shutdown_timeout` passed).
async fn serve(
    config: &GatewayConfig,
    state: state::AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
    routes: usize,
    plugins: usize,
) -> anyhow::Result<()> {
    let door = ingress::server::Door::new(&config.limits);
    let operator = match &config.admin.listen {
        Some(listen) => {
            let l = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on admin.listen {listen}"))?;
            let addr = l
                .local_addr()
                .context("reading the admin listener's address")?;
            // A plain line on stdout for scripts and tests, like `serve`'s.
            println!("hookgate admin listening on http://{addr}");
            tracing::info!(%addr, "admin and metrics listening");
            let app = error::catch_panics(ingress::operator_router(state.clone()));
            Some(tokio::spawn({
                let door = door.clone();
                let shutdown = shutdown.clone();
                async move { door.serve(l, app, shutdown).await }
            }))
        }
        None => None,
    };
    let app = error::catch_panics(ingress::router(state));
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    // The runtime's workers and scheduler (see `main.rs`): the log says
    // what an operator's `TOKIO_WORKER_THREADS` or the default came to.
    let runtime = tokio::runtime::Handle::current();
    let workers = runtime.metrics().num_workers();
    let scheduler = match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current-thread",
        _ => "multi-thread",
    };
    tracing::info!(%addr, routes, plugins, workers, scheduler, "hookgate listening");
    door.serve(listener, app, shutdown)
        .await
        .context("serving HTTP")?;
    if let Some(task) = operator {
        task.await
            .context("the admin listener's task")?
            .context("serving the admin listener")?;
    }
    Ok(())
}

/// Prunes finished events past their retention, periodically (in bounded
/// batches: see `Store::prune`).
async fn retention(
    store: Arc<dyn store::Store>,
    snapshots: Arc<ArcSwap<pipeline::Snapshot>>,
    stop: CancellationToken,
) {
    loop {
        let config = &snapshots.load().config.store;
        let retention = config.retention.0;
        let keep = store::Retention {
            delivered: retention,
            dead: config.dead_retention.0,
        };
        // Often enough that the store stays near its bound, rarely enough
        // to cost nothing.
        let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        match store.prune(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned finished events past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
