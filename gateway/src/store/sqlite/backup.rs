//! `hookgate backup` and `hookgate restore`: a consistent copy of a SQLite
//! store, taken while a gateway runs on it, and putting one back.
//!
//! Copying `hookgate.db` with `cp` while a gateway runs copies a file
//! whose latest commits are still in `hookgate.db-wal`, and a page may
//! change under the copy: the copy can be stale or torn. A backup here is
//! `VACUUM INTO` on a read-only connection: one read transaction, so one
//! commit's view of the whole database, written compacted to a new file,
//! while the gateway goes on writing (WAL readers never block the writer).
//! It needs no lock on `data_dir`: it reads as the gateway's own readers
//! do.
//!
//! Restoring by hand has a trap of its own: a `hookgate.db-wal` left
//! beside a restored file holds the old database's pages, and SQLite would
//! apply them to it. `restore` takes the `data_dir` lock (so no gateway
//! runs), checks the copy, moves the current database and its WAL aside
//! (nothing is deleted) and puts the copy in place.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, DB_FILE, LockError, schema, take_lock};

/// Why a backup or a restore failed; nothing is left half-written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No store where one was expected.
    #[error(
        "no SQLite store at {0} (data_dir is read relative to the current directory, as `hookgate serve` reads it; or give --data-dir)"
    )]
    NoStore(PathBuf),
    /// The output exists and `--force` was not given.
    #[error("{0} exists; give --force to replace it")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// SQLite refused.
    #[error("{path}: {message}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// The copy is not a hookgate store this build can run on.
    #[error("{path} is not a usable hookgate store: {why}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What its check found.
        why: String,
    },
    /// A gateway runs on the `data_dir` (restore only).
    #[error("{0}")]
    InUse(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn sql(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |e| BackupError::Sqlite {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// What a backup or a restore holds, checked on the copy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The copy's file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its schema version (`PRAGMA user_version`).
    pub schema: i64,
    /// Events stored.
    pub events: u64,
    /// Deliveries not yet finished (pending or parked).
    pub unfinished: u64,
    /// Subscriptions of the subscription API.
    pub subscriptions: u64,
}

/// Writes a consistent copy of the store in `data_dir` to `out`, while a
/// gateway may be running on it. `out` appears whole or not at all (a
/// temporary file beside it, synced, then renamed), readable by its owner
/// only: it holds subscriptions' signing secrets as the store does.
pub fn backup(data_dir: &Path, out: &Path, replace: bool) -> Result<Contents, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoStore(db));
    }
    if out.exists() && !replace {
        return Err(BackupError::Exists(out.to_owned()));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(BackupError::Io {
            path: dir.to_owned(),
            message: "no such directory".into(),
        });
    }
    let partial = partial_path(out);
    let written = (|| {
        create_private(&partial)?;
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(&db))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql(&db))?;
        let target = partial.to_str().ok_or_else(|| BackupError::Io {
            path: partial.clone(),
            message: "the path is not UTF-8".into(),
        })?;
        // One read transaction: every table as of one commit.
        conn.execute("VACUUM INTO ?1", [target]).map_err(sql(&db))?;
        drop(conn);
        let contents = inspect(&partial)?;
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io(&partial))?;
        Ok(contents)
    })();
    let contents = match written {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, out) {
        let _ = std::fs::remove_file(&partial);
        return Err(io(out)(e));
    }
    sync_dir(out);
    Ok(Contents {
        path: out.to_owned(),
        ..contents
    })
}

/// Puts the backup `from` in place as the store of `data_dir`, which no
/// gateway may be running on. The database there, with its WAL and
/// shared-memory files, is moved aside to `hookgate.db.before-restore-…`
/// (the suffix the time in milliseconds), never deleted. Returns what the
/// restored store holds and where the old one went, if there was one.
pub fn restore(data_dir: &Path, from: &Path) -> Result<(Contents, Option<PathBuf>), BackupError> {
    if !from.is_file() {
        return Err(BackupError::Io {
            path: from.to_owned(),
            message: "no such file".into(),
        });
    }
    // Checked before anything moves: a file that is not a store, or one
    // from a newer hookgate, leaves the current store as it is.
    let checked = inspect(from)?;
    if checked.schema > schema::VERSION {
        return Err(BackupError::NotAStore {
            path: from.to_owned(),
            why: format!(
                "its schema version {} is newer than this hookgate's {}; restore it with the hookgate that wrote it",
                checked.schema,
                schema::VERSION
            ),
        });
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let _lock = take_lock(data_dir).map_err(|e| match e {
        LockError::Held => BackupError::InUse(format!(
            "a gateway is running on {}: stop it before restoring (it would go on writing to the file it has open)",
            data_dir.display()
        )),
        LockError::Io(path, e) => io(&path)(e),
    })?;
    let db = data_dir.join(DB_FILE);
    let partial = partial_path(&db);
    let copied = (|| {
        create_private(&partial)?;
        std::fs::copy(from, &partial).map_err(io(&partial))?;
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io(&partial))
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let aside = if db.exists() {
        let stamp = crate::clock::now_ms();
        let aside = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}"));
        // The WAL first: once the database has moved, a WAL left under the
        // old name would be applied to the restored file.
        for suffix in ["-wal", "-shm"] {
            let file = data_dir.join(format!("{DB_FILE}{suffix}"));
            if file.exists() {
                let to = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}{suffix}"));
                std::fs::rename(&file, &to).map_err(io(&file))?;
            }
        }
        std::fs::rename(&db, &aside).map_err(io(&db))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&partial, &db) {
        // Never leave data_dir without a store: the old one goes back.
        if let Some(aside) = &aside {
            let _ = std::fs::rename(aside, &db);
        }
        let _ = std::fs::remove_file(&partial);
        return Err(io(&db)(e));
    }
    sync_dir(&db);
    Ok((
        Contents {
            path: db,
            ..checked
        },
        aside,
    ))
}

/// Opens `path` read-only and checks that it is a whole SQLite database
/// with hookgate's tables, counting what it holds.
fn inspect(path: &Path) -> Result<Contents, BackupError> {
    let not_a_store = |why: String| BackupError::NotAStore {
        path: path.to_owned(),
        why,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| not_a_store(e.to_string()))?;
    if check != "ok" {
        return Err(not_a_store(format!("quick_check: {check}")));
    }
    let schema: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql(path))?;
    let count = |q: &str| -> Result<u64, BackupError> {
        conn.query_row(q, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| not_a_store(e.to_string()))
    };
    let events = count("SELECT count(*) FROM events")?;
    let unfinished = count("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'parked')")?;
    let subscriptions = count("SELECT count(*) FROM subscriptions")?;
    let bytes = std::fs::metadata(path).map_err(io(path))?.len();
    Ok(Contents {
        path: path.to_owned(),
        bytes,
        schema,
        events,
        unfinished,
        subscriptions,
    })
}

/// `.NAME.partial-PID` beside `path`: never taken for a finished file.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// A new empty file readable by its owner only (`VACUUM INTO` writes into
/// an empty file, keeping its mode).
fn create_private(path: &Path) -> Result<(), BackupError> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(io(path))
}

/// Makes a rename in `path`'s directory durable (best effort: not every
/// file system syncs a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
