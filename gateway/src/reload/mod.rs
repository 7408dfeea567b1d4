//! Hot reload: builds a whole new [`Snapshot`] off to the side and swaps it
//! in, or keeps the old one and records why not.
//!
//! Triggers are the file [`watcher`] (the config file and `plugins.dir`,
//! debounced), SIGHUP and `POST /admin/reload`. They all queue a request on
//! one channel, and one task, the reloader, serves them in turn, so two
//! reloads never race and requests that arrive while one runs share the
//! next. A reload does what `hookgate check` does ([`config::from_path`],
//! then [`pipeline::compile`], which reuses every plugin whose bytes did not
//! change), and only a snapshot that compiled whole replaces the live one.
//! Requests in flight keep the snapshot they loaded, so each request runs
//! every plugin from one generation.
//!
//! Settings that are fixed at start (the listener, the plugin engine's
//! limits, the delivery workers, …) keep their running values; a change to
//! one is logged at warn and listed in the status as needing a restart.
//!
//! Deliberately not here: compiling (that is `pipeline` and `plugin`) and
//! HTTP (the admin handlers in `admin::status` read [`Control`]).

mod watcher;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, ConfigErrors, GatewayConfig};
use crate::pipeline::{self, Snapshot};
use crate::plugin::PluginSource;
use crate::state::AppState;
use crate::store::SUBSCRIBER_PREFIX;

/// Reload requests that may wait while one reload runs. More are pointless:
/// the next reload reads the files as they are then, for every waiter.
const QUEUE: usize = 16;

/// Refused reloads kept for the status, newest first.
const RECENT_ERRORS: usize = 10;

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The config file or a plugin file changed.
    Watch,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
    /// The console's Reload button.
    Console,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
            Trigger::Console => "console",
        })
    }
}

/// A reload that went live.
#[derive(Clone, Debug, Serialize)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    /// Plugins compiled for this generation (new or changed); the others
    /// were reused.
    pub plugins_loaded: Vec<String>,
    /// Changed settings that only a restart applies.
    pub restart_required: Vec<String>,
}

/// Why a reload was refused. The previous generation keeps serving.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config (or a plugin it names) does not parse, validate or
    /// compile: what `hookgate check` would report.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// A plugin file a route uses was deleted.
    #[error(
        "plugins.dir/{plugin}.wasm ({path}) was deleted but {used_by} still uses it; put it back or stop using it (a restart falls back to a built-in of that name)"
    )]
    PluginDeleted {
        /// Plugin name.
        plugin: String,
        /// The file that was there.
        path: String,
        /// Config path of a use, e.g. `routes.github.verify`.
        used_by: String,
    },
    /// No reloader is running (the gateway is shutting down).
    #[error("the reloader is not running")]
    NotRunning,
}

impl ReloadError {
    /// Each problem with the config path it is about.
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            ReloadError::Invalid(errors) => errors.0.clone(),
            ReloadError::PluginDeleted { used_by, .. } => vec![ConfigError {
                path: format!("{used_by}.plugin"),
                message: self.to_string(),
            }],
            ReloadError::NotRunning => vec![ConfigError {
                path: String::new(),
                message: self.to_string(),
            }],
        }
    }
}

/// A reload that went live, for the status.
#[derive(Clone, Debug, Serialize)]
pub struct Success {
    /// When (RFC 3339).
    pub at: String,
    /// What asked for it.
    pub trigger: Trigger,
    /// What it did.
    #[serde(flatten)]
    pub reloaded: Reloaded,
}

/// A refused reload, for the status.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// When (RFC 3339).
    pub at: String,
    /// What asked for it.
    pub trigger: Trigger,
    /// The generation that kept serving.
    pub generation: u64,
    /// Every problem, with the config path it is about.
    pub errors: Vec<ErrorEntry>,
}

/// One problem of a refused reload.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorEntry {
    /// Config path (`routes.github.verify.plugin`), `""` for the file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What the reloader has done, for `GET /admin/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    /// The config file reloads read (none: plugins only).
    pub config: Option<PathBuf>,
    /// Whether files are watched (`plugins.watch`).
    pub watching: bool,
    /// Reloads that went live.
    pub reloads: u64,
    /// Reloads refused.
    pub failures: u64,
    /// The last reload that went live.
    pub last_reload: Option<Success>,
    /// The last refused reload.
    pub last_error: Option<Failure>,
    /// Recent refused reloads, newest first.
    pub recent_errors: VecDeque<Failure>,
    /// Changed settings that only a restart applies (as of the last
    /// reload that went live).
    pub restart_required: Vec<String>,
}

type Reply = oneshot::Sender<Result<Reloaded, ReloadError>>;

struct Request {
    trigger: Trigger,
    reply: Option<Reply>,
}

/// The handle on the reloader that [`AppState`] carries: ask for a reload,
/// read what happened.
#[derive(Debug)]
pub struct Control {
    tx: mpsc::Sender<Request>,
    /// Taken by the reloader task when it starts.
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
    record: Mutex<Record>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

impl Default for Control {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Control {
            tx,
            rx: Mutex::new(Some(rx)),
            record: Mutex::new(Record::default()),
        }
    }
}

impl Control {
    /// Reloads now (after any reload already running) and answers with the
    /// outcome.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request {
                trigger,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        answer.await.map_err(|_| ReloadError::NotRunning)?
    }

    /// Asks for a reload without waiting for it. A full queue already holds
    /// a reload that will see the same files.
    pub fn request(&self, trigger: Trigger) {
        let _ = self.tx.try_send(Request {
            trigger,
            reply: None,
        });
    }

    /// What the reloader has done so far.
    pub fn record(&self) -> Record {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        // A panic while holding this lock leaves a record that is still
        // well-formed, so poisoning is ignored.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the reloader (and, with `plugins.watch`, the file watcher and,
/// on Unix, the SIGHUP listener) until `shutdown`. `config_path` is the
/// file reloads read; without one, a reload re-reads only the plugins.
pub fn spawn(
    state: AppState,
    config_path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let rx = state
        .reload()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let config = state.snapshot().config.clone();
    let config_path = config_path.map(|p| std::path::absolute(&p).unwrap_or(p));
    {
        let mut record = state.reload().lock();
        record.config = config_path.clone();
        record.watching = config.plugins.watch;
    }
    // Watching starts before this returns, so before the gateway serves: a
    // write right after start-up is not missed.
    let watcher = config
        .plugins
        .watch
        .then(|| {
            watcher::start(
                config_path.as_deref(),
                config.plugins.dir.as_deref(),
                state.clone(),
                shutdown.clone(),
            )
        })
        .flatten();
    if watcher.is_some() && plugin_files_changed(&state.snapshot()) {
        // Changed while the first snapshot compiled, before watching began.
        state.reload().request(Trigger::Watch);
    }
    tokio::spawn(async move {
        // Held for as long as the reloader runs: dropping it stops watching.
        let _watcher = watcher;
        let Some(mut rx) = rx else {
            tracing::error!("a reloader is already running for this state");
            return;
        };
        #[cfg(unix)]
        tokio::spawn(on_sighup(state.clone(), shutdown.clone()));

        let reloader = Reloader { state, config_path };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            // Everyone who asked while the last reload ran gets this one.
            let trigger = first.trigger;
            let mut replies: Vec<Reply> = first.reply.into_iter().collect();
            while let Ok(more) = rx.try_recv() {
                replies.extend(more.reply);
            }
            let outcome = reloader.reload(trigger).await;
            for reply in replies {
                let _ = reply.send(outcome.clone());
            }
        }
    })
}

/// Builds and swaps snapshots. Only the reloader task has one, so at most
/// one reload runs at a time and nothing else swaps the snapshot.
struct Reloader {
    state: AppState,
    config_path: Option<PathBuf>,
}

impl Reloader {
    /// One reload: record it, log it, count it.
    async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let outcome = self.build_and_swap().await;
        let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let control = self.state.reload();
        match &outcome {
            Ok(reloaded) => {
                for change in &reloaded.restart_required {
                    tracing::warn!(%trigger, "{change}");
                }
                tracing::info!(
                    %trigger,
                    generation = reloaded.generation,
                    plugins_loaded = ?reloaded.plugins_loaded,
                    "reloaded"
                );
                self.state.metrics().reload("ok");
                let mut record = control.lock();
                record.reloads += 1;
                record.restart_required = reloaded.restart_required.clone();
                record.last_reload = Some(Success {
                    at,
                    trigger,
                    reloaded: reloaded.clone(),
                });
            }
            Err(error) => {
                let generation = self.state.snapshot().generation;
                tracing::error!(
                    %trigger,
                    generation,
                    "reload refused, still serving generation {generation}:\n{error}"
                );
                self.state.metrics().reload("refused");
                let failure = Failure {
                    at,
                    trigger,
                    generation,
                    errors: error
                        .errors()
                        .into_iter()
                        .map(|e| ErrorEntry {
                            path: e.path,
                            message: e.message,
                        })
                        .collect(),
                };
                let mut record = control.lock();
                record.failures += 1;
                record.recent_errors.push_front(failure.clone());
                record.recent_errors.truncate(RECENT_ERRORS);
                record.last_error = Some(failure);
            }
        }
        outcome
    }

    async fn build_and_swap(&self) -> Result<Reloaded, ReloadError> {
        let current = self.state.snapshot();
        let mut next_config = match &self.config_path {
            Some(path) => config::from_path(path).map_err(ReloadError::Invalid)?,
            None => (*current.config).clone(),
        };
        let restart_required = keep_fixed_settings(&current.config, &mut next_config);
        let next = pipeline::compile(
            &next_config,
            self.state.engine(),
            Some(&current),
            current.generation + 1,
        )
        .await
        .map_err(ReloadError::Invalid)?;
        refuse_deleted_plugins(&current, &next)?;
        let plugins_loaded = next
            .plugins
            .iter()
            .filter(|(name, p)| {
                current
                    .plugins
                    .get(*name)
                    .is_none_or(|old| !Arc::ptr_eq(old, p))
            })
            .map(|(name, _)| name.clone())
            .collect();
        let generation = next.generation;
        let back = returned_destinations(&current, &next);
        // Subscriber deliveries are postponed alike while the config has
        // no `subscriptions:` block.
        let subscriptions_back = current.subscriptions.is_none() && next.subscriptions.is_some();
        self.state.swap(next);
        if !back.is_empty() || subscriptions_back {
            hasten(self.state.clone(), back, subscriptions_back);
        }
        Ok(Reloaded {
            generation,
            plugins_loaded,
            restart_required,
        })
    }
}

/// Destinations `next` has and `current` had not: deliveries to them
/// waited as missing (postponed a minute at a time), or were stranded by
/// an earlier rename.
fn returned_destinations(current: &Snapshot, next: &Snapshot) -> Vec<String> {
    let mut back: Vec<String> = next
        .destinations
        .keys()
        .filter(|name| !current.destinations.contains_key(*name))
        .cloned()
        .collect();
    back.sort();
    back
}

/// Makes what waits for the destinations a reload brought back due now
/// (with `subscribers`, every subscription's too: the `subscriptions:`
/// block is back), then wakes delivery; in the background, so that a long
/// backlog does not hold the reload's answer. A store that fails leaves
/// them to come due at their own time.
fn hasten(state: AppState, mut destinations: Vec<String>, subscribers: bool) {
    tokio::spawn(async move {
        if subscribers {
            // The subscriptions with something waiting, by name.
            match state.store().backlog().await {
                Ok(backlog) => destinations.extend(
                    backlog
                        .into_iter()
                        .map(|b| b.destination)
                        .filter(|d| d.starts_with(SUBSCRIBER_PREFIX)),
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "the subscription API is back: its waiting deliveries stay due at their own time"
                ),
            }
        }
        if destinations.is_empty() {
            return;
        }
        match state.store().hasten(destinations.clone()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    destinations = destinations.len(),
                    deliveries = n,
                    "destinations back in the config: their waiting deliveries are due now"
                );
                state.delivery().wake();
            }
            Err(e) => tracing::warn!(
                destinations = destinations.len(),
                error = %e,
                "destinations back in the config: their waiting deliveries stay due at their own time"
            ),
        }
    });
}

/// Whether a plugin file the snapshot uses no longer has the bytes it was
/// compiled from.
fn plugin_files_changed(snapshot: &Snapshot) -> bool {
    use sha2::{Digest, Sha256};
    snapshot.plugins.values().any(|p| match p.source() {
        PluginSource::File(path) => std::fs::read(path)
            .map(|bytes| hex::encode(Sha256::digest(&bytes)) != p.hash())
            .unwrap_or(true),
        PluginSource::Builtin => false,
    })
}

/// Puts back the settings that only apply at start-up (so the new snapshot
/// describes what really runs) and says which ones changed.
fn keep_fixed_settings(running: &GatewayConfig, next: &mut GatewayConfig) -> Vec<String> {
    fn keep<T: Serialize + Clone>(key: &str, running: &T, next: &mut T, out: &mut Vec<String>) {
        let (was, now) = (json(running), json(next));
        if was != now {
            out.push(format!(
                "{key} changed to {now} but needs a restart; still using {was}"
            ));
            *next = running.clone();
        }
    }
    fn json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
    let mut out = Vec::new();
    keep("listen", &running.listen, &mut next.listen, &mut out);
    keep("data_dir", &running.data_dir, &mut next.data_dir, &mut out);
    keep(
        "plugins.dir",
        &running.plugins.dir,
        &mut next.plugins.dir,
        &mut out,
    );
    keep(
        "plugins.watch",
        &running.plugins.watch,
        &mut next.plugins.watch,
        &mut out,
    );
    keep(
        "plugins.timeout",
        &running.plugins.timeout,
        &mut next.plugins.timeout,
        &mut out,
    );
    keep(
        "plugins.memory",
        &running.plugins.memory,
        &mut next.plugins.memory,
        &mut out,
    );
    keep("delivery", &running.delivery, &mut next.delivery, &mut out);
    keep(
        "admin.listen",
        &running.admin.listen,
        &mut next.admin.listen,
        &mut out,
    );
    // The door's limits are fixed when the listener starts; the body size
    // limit is read per request and reloads.
    let mut door = running.limits.clone();
    door.max_body_size = next.limits.max_body_size;
    keep("limits", &door, &mut next.limits, &mut out);
    keep("log", &running.log, &mut next.log, &mut out);
    // The store is opened once; its other settings (retention, dedup
    // window) are read per use and do reload.
    keep(
        "store.engine",
        &running.store.engine,
        &mut next.store.engine,
        &mut out,
    );
    if running.admin.token.is_none() && next.admin.token.is_some() {
        // The admin API is mounted at start only when a token is set.
        out.push("admin.token was set, but the admin API only starts with a restart".into());
    }
    if running.subscriptions.is_none() && next.subscriptions.is_some() {
        // Like /admin, /v1 is mounted at start only when configured.
        out.push("subscriptions were added, but the /v1 API only starts with a restart".into());
    }
    out
}

/// A plugin file that a route uses and that disappeared is refused even
/// when a built-in of the same name exists: the operator chose the file,
/// and silently running different code (a different verifier!) is worse
/// than keeping the old one.
fn refuse_deleted_plugins(current: &Snapshot, next: &Snapshot) -> Result<(), ReloadError> {
    for (name, old) in &current.plugins {
        let PluginSource::File(path) = old.source() else {
            continue;
        };
        let Some(new) = next.plugins.get(name) else {
            continue;
        };
        if matches!(new.source(), PluginSource::Builtin) {
            return Err(ReloadError::PluginDeleted {
                plugin: name.clone(),
                path: path.clone(),
                used_by: first_use(&next.config, name),
            });
        }
    }
    Ok(())
}

/// `routes.R.STAGE` of the first use of plugin `name`.
fn first_use(config: &GatewayConfig, name: &str) -> String {
    config
        .routes
        .iter()
        .find_map(|(route, r)| {
            r.uses()
                .find(|(_, u)| u.plugin == name)
                .map(|(stage, _)| format!("routes.{route}.{stage}"))
        })
        .unwrap_or_else(|| "a route".into())
}

/// Reloads on every SIGHUP until `shutdown`.
#[cfg(unix)]
async fn on_sighup(state: AppState, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, reload with POST /admin/reload: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading");
                state.reload().request(Trigger::Signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> GatewayConfig {
        config::from_str(yaml, &|_| None).unwrap()
    }

    #[test]
    fn a_changed_listen_is_kept_and_reported() {
        let running = config("listen: 127.0.0.1:8080\n");
        let mut next = config("listen: 127.0.0.1:9090\nplugins: { timeout: 1s }\n");
        let changes = keep_fixed_settings(&running, &mut next);
        assert_eq!(next.listen, "127.0.0.1:8080");
        assert_eq!(next.plugins.timeout, running.plugins.timeout);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[0].starts_with("listen changed to \"127.0.0.1:9090\" but needs a restart"),
            "{changes:?}"
        );
    }

    #[test]
    fn routes_and_destinations_are_not_fixed() {
        let running = config("destinations:\n  d: { kind: log }\n");
        let mut next = config(
            "destinations:\n  d: { kind: log }\n  e: { kind: log }\nroutes:\n  r: { to: [e] }\n",
        );
        assert!(keep_fixed_settings(&running, &mut next).is_empty());
        assert!(next.routes.contains_key("r"));
    }
}
