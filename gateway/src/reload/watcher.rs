//! Watches the config file and `plugins.dir/*.wasm` with `notify`, and asks
//! the reloader for one reload once the files have been quiet for
//! [`DEBOUNCE`]: editors and `cp` write a file in several steps, and a
//! reload in the middle would read half a file.
//!
//! Directories are watched rather than files, so a file replaced by a
//! rename (how many editors save) is still seen. Only events that change a
//! file count: the reloader's own reads must not trigger reloads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Trigger;
use crate::state::AppState;

/// How long the watched files must be quiet before a reload. Long enough
/// for `cp` or an editor to finish a small file, short enough that a
/// change is live well within a second.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A reload happens at the latest this long after the first change, even
/// if changes keep coming.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Keeps watching until dropped.
pub struct Watcher {
    _inner: RecommendedWatcher,
}

/// Files the reloader reads.
#[derive(Debug)]
struct Interest {
    /// The config file, as `canonical dir/file name`.
    config: Option<PathBuf>,
    /// `plugins.dir`, canonical.
    plugin_dir: Option<PathBuf>,
}

impl Interest {
    fn matches(&self, path: &Path) -> bool {
        self.config.as_deref() == Some(path)
            || (self.plugin_dir.is_some()
                && path.parent() == self.plugin_dir.as_deref()
                && path.extension().is_some_and(|e| e == "wasm"))
    }
}

/// Changes seen and not yet handed to the reloader.
#[derive(Debug, Default)]
struct Pending {
    first: Option<Instant>,
    last: Option<Instant>,
    paths: BTreeSet<PathBuf>,
}

/// Starts watching; `None` (logged) when nothing can be watched.
pub fn start(
    config_path: Option<&Path>,
    plugin_dir: Option<&Path>,
    state: AppState,
    shutdown: CancellationToken,
) -> Option<Watcher> {
    let config = config_path.and_then(|p| {
        let dir = std::fs::canonicalize(p.parent()?).ok()?;
        Some(dir.join(p.file_name()?))
    });
    let plugin_dir = plugin_dir.and_then(|d| match std::fs::canonicalize(d) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(dir = %d.display(), "not watching plugins.dir: {e}");
            None
        }
    });
    let interest = Interest { config, plugin_dir };
    let dirs: BTreeSet<PathBuf> = interest
        .config
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .into_iter()
        .chain(interest.plugin_dir.clone())
        .collect();
    if dirs.is_empty() {
        return None;
    }

    let pending = Arc::new((Mutex::new(Pending::default()), Notify::new()));
    let seen = pending.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let paths: Vec<PathBuf> = match event {
            Ok(event) if is_change(&event.kind) => event
                .paths
                .into_iter()
                .filter(|p| interest.matches(p))
                .collect(),
            Ok(_) => return,
            Err(e) => {
                // Lost events (queue overflow): reload to be safe.
                tracing::warn!("file watcher: {e}");
                vec![PathBuf::new()]
            }
        };
        if paths.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut p = seen.0.lock().unwrap_or_else(|e| e.into_inner());
        p.first.get_or_insert(now);
        p.last = Some(now);
        p.paths.extend(paths);
        drop(p);
        seen.1.notify_one();
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch files, reload with SIGHUP or POST /admin/reload: {e}");
            return None;
        }
    };
    let mut watching = 0;
    for dir in &dirs {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watching += 1;
                tracing::info!(dir = %dir.display(), "watching for changes");
            }
            Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
        }
    }
    if watching == 0 {
        return None;
    }
    tokio::spawn(debounce(pending, state, shutdown));
    Some(Watcher { _inner: watcher })
}

/// Access events other than "closed after writing" are reads, including
/// the reloader's own.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Waits for a change, then for quiet, then asks for a reload; forever.
async fn debounce(
    pending: Arc<(Mutex<Pending>, Notify)>,
    state: AppState,
    shutdown: CancellationToken,
) {
    let lock = || pending.0.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pending.1.notified() => {}
        }
        loop {
            let (first, last) = {
                let p = lock();
                (p.first, p.last)
            };
            let (Some(first), Some(last)) = (first, last) else {
                break;
            };
            let at = (last + DEBOUNCE).min(first + MAX_DELAY);
            if Instant::now() >= at {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        let batch = std::mem::take(&mut *lock());
        if batch.first.is_none() {
            continue;
        }
        tracing::debug!(paths = ?batch.paths, "files changed");
        state.reload().request(Trigger::Watch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_config_file_and_wasm_files_in_the_plugin_dir_count() {
        let interest = Interest {
            config: Some(PathBuf::from("/etc/hookgate/hookgate.yaml")),
            plugin_dir: Some(PathBuf::from("/etc/hookgate/plugins")),
        };
        assert!(interest.matches(Path::new("/etc/hookgate/hookgate.yaml")));
        assert!(interest.matches(Path::new("/etc/hookgate/plugins/a.wasm")));
        assert!(!interest.matches(Path::new("/etc/hookgate/plugins/.a.wasm.swp")));
        assert!(!interest.matches(Path::new("/etc/hookgate/plugins/sub/a.wasm")));
        assert!(!interest.matches(Path::new("/etc/hookgate/gateway.log")));
    }

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(
            notify::event::ModifyKind::Any
        )));
    }
}
