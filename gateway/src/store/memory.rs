//! The `memory` engine: nothing survives the process.
//!
//! It is the SQLite engine on a scratch database in a temporary directory,
//! without fsync, so it keeps every promise of the store contract (and runs
//! the same conformance suite) except durability. The benchmark's
//! "durability off" row uses it to show what the fsync'd commit costs.

use super::StoreError;
use super::sqlite::SqliteStore;

/// Opens a fresh `memory` store.
pub fn open() -> Result<SqliteStore, StoreError> {
    SqliteStore::scratch()
}

#[cfg(test)]
mod tests {
    crate::store::conformance::suite!(|| (super::open().unwrap(), ()));
}
