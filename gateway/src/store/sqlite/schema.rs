//! The SQLite schema and its versioned migrations.
//!
//! The version is SQLite's `PRAGMA user_version`. Each migration runs once,
//! in its own transaction with the version bump, so a crash mid-way leaves
//! the previous version intact. A database from a newer hookgate is refused
//! rather than guessed at.

use rusqlite::Connection;

use super::db_err;
use crate::store::StoreError;

/// Migrations in order; migration `i` takes the schema to version `i + 1`.
/// Only append: a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: wave-1's schema. `IF NOT EXISTS`, because databases made before
    // versioning have these tables at version 0.
    r#"
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    route       TEXT NOT NULL,
    source_id   TEXT,
    received_at INTEGER NOT NULL,
    status      TEXT NOT NULL,
    event_type  TEXT
);
CREATE INDEX IF NOT EXISTS events_source ON events(route, source_id, received_at)
    WHERE source_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status ON events(status, id);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);

CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    message_id   TEXT,
    event_type   TEXT,
    content_type TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_event ON messages(event_id);

CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    message_id      INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed         INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries(message_id);
CREATE INDEX IF NOT EXISTS deliveries_destination ON deliveries(destination, state);

CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    status       INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    response     TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    object_id       TEXT NOT NULL,
    object_type     TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    callback_url    TEXT NOT NULL,
    callback_token  TEXT,
    context         TEXT,
    validity        INTEGER NOT NULL,
    active          INTEGER NOT NULL,
    secret          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    failing_since   INTEGER,
    disabled_reason TEXT
);
CREATE INDEX IF NOT EXISTS subscriptions_object ON subscriptions(object_type, object_id);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions(tenant);
"#,
    // 2: the store contract of many writers. Claims carry a lease token
    // (the old claimed flag goes: a lease is its token plus
    // next_attempt_at); dedup is a unique key with an expiry instead of a
    // look-up in events. Keys already in events get the default 24 h window.
    r#"
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER;
ALTER TABLE deliveries DROP COLUMN claimed;

CREATE TABLE dedup (
    route      TEXT NOT NULL,
    source_id  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (route, source_id)
) WITHOUT ROWID;
CREATE INDEX dedup_expiry ON dedup(expires_at);
INSERT OR IGNORE INTO dedup (route, source_id, event_id, expires_at)
    SELECT route, source_id, id, received_at + 86400000 FROM events
    WHERE source_id IS NOT NULL ORDER BY received_at;
DROP INDEX IF EXISTS events_source;
"#,
    // 3: the sending side's extra subscription columns (issue 13).
    super::super::subscription_columns::MIGRATION,
    // 4: the operator console's inbound requests and indexes (issue 17).
    super::console::MIGRATION,
    // 5: cheaper writes. An index on random values (provider delivery
    // ids) dirties one page per insert at every commit, and every dirty
    // page is written to the WAL and again at the checkpoint: the source-id
    // and message-id indexes were a third of the bytes written per event.
    // The dedup key now leads with the provider id and lives as long as its
    // event, so it serves the console's search by provider id as well; a
    // key still inside its window when its event is pruned is kept, marked
    // orphaned, until the window ends. Keys of events stored before this
    // version are added (already expired) so that search finds them.
    r#"
CREATE TABLE dedup_v5 (
    source_id  TEXT NOT NULL,
    route      TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    orphaned   INTEGER,
    PRIMARY KEY (source_id, route)
) WITHOUT ROWID;
INSERT OR IGNORE INTO dedup_v5 (source_id, route, event_id, expires_at)
    SELECT source_id, route, event_id, expires_at FROM dedup;
INSERT OR IGNORE INTO dedup_v5 (source_id, route, event_id, expires_at)
    SELECT source_id, route, id, received_at FROM events
    WHERE source_id IS NOT NULL ORDER BY received_at DESC;
UPDATE dedup_v5 SET orphaned = 1
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = dedup_v5.event_id);
DROP TABLE dedup;
ALTER TABLE dedup_v5 RENAME TO dedup;
CREATE INDEX dedup_orphans ON dedup(expires_at) WHERE orphaned IS NOT NULL;
DROP INDEX IF EXISTS events_source_id;
DROP INDEX IF EXISTS messages_message_id;
"#,
    // 6: subscriptions whose waiting deliveries are still being settled
    // after a re-enable or a delete (in batches; see `settle_batch`), so
    // that a crash between two batches leaves a note to finish from.
    r#"
CREATE TABLE subscription_settlements (
    subscription_id TEXT PRIMARY KEY
) WITHOUT ROWID;
"#,
    // 7: a lane's due deliveries in due order. A claim that passes over a
    // full lane's long backlog looks destination by destination instead
    // (see `claim`). Replaces `(destination, state)`, which it extends:
    // claimed in the insert, a delivery's `next_attempt_at` is written
    // with the row, so the hot path moves no more index entries than
    // before.
    r#"
CREATE INDEX deliveries_lane ON deliveries(destination, state, next_attempt_at, id);
DROP INDEX IF EXISTS deliveries_destination;
"#,
    // 8: `deliveries(message_id)` served no query: nothing looks a
    // delivery up by its message (claims read the message by its key, and
    // prune deletes an event's deliveries by event), and with foreign keys
    // off no cascade needs it either. Every webhook still wrote an entry
    // and dirtied its last leaf at each commit: measured with
    // `hookgate-bench --only delivery`, 2 % of the bytes the gateway wrote
    // per request (17,870 -> 17,513). PostgreSQL dropped its copy with its
    // foreign keys (its schema 8).
    r#"
DROP INDEX IF EXISTS deliveries_message;
"#,
    // 9: the console's search finds a message id by its base (the id
    // without a `.N` suffix: the provider's id or the event's), through
    // the dedup key or the event's key. An id a transform chose unlike
    // both was found by nothing; such a message is marked and indexed,
    // and only it: the pipeline's own ids, every webhook's, add no index
    // entry. Messages stored before this version are marked by 10.
    r#"
ALTER TABLE messages ADD COLUMN chosen_id INTEGER;
CREATE INDEX messages_chosen_id ON messages(message_id) WHERE chosen_id IS NOT NULL;
"#,
    // 10: messages stored before version 9 marked as the insert marks them
    // (`ingest::chosen_id`), so the search finds every message by its id
    // whenever it was stored. Known ids: the event's, the provider's, and
    // either with a `.N` suffix (`console::message_id_base`: the part
    // after the last dot, non-empty and all digits, after a non-empty
    // base). One pass over the messages, once; a test holds it to the
    // insert's rule.
    r#"
UPDATE messages SET chosen_id = 1 WHERE id IN (
    SELECT m.id FROM messages m JOIN events e ON e.id = m.event_id
    WHERE m.message_id IS NOT NULL AND m.chosen_id IS NULL
      AND m.message_id IS NOT e.id AND m.message_id IS NOT e.source_id
      AND NOT (length(e.id) > 0 AND length(m.message_id) > length(e.id) + 1
               AND substr(m.message_id, 1, length(e.id) + 1) = e.id || '.'
               AND substr(m.message_id, length(e.id) + 2) NOT GLOB '*[^0-9]*')
      AND NOT (e.source_id IS NOT NULL AND length(e.source_id) > 0
               AND length(m.message_id) > length(e.source_id) + 1
               AND substr(m.message_id, 1, length(e.source_id) + 1) = e.source_id || '.'
               AND substr(m.message_id, length(e.source_id) + 2) NOT GLOB '*[^0-9]*')
);
"#,
    // 11: the lanes index only undelivered deliveries (pending, parked,
    // dead). Nearly every delivery ends delivered, and its entry in
    // `deliveries_lane` (whose key holds the state) moved when it did: a
    // delete and an insert, and a page dirtied at the commit, per
    // delivered webhook. The delivered entries were most of the index,
    // and a claim past a backlog, which seeks lane by lane, visited every
    // destination ever delivered to, not only those with work. Queries
    // on it spell out its condition (`state <> 'delivered'`): SQLite uses
    // a partial index only for a query whose terms imply its condition
    // (test `the_lane_queries_use_the_lane_index`).
    r#"
DROP INDEX IF EXISTS deliveries_lane;
CREATE INDEX deliveries_lane ON deliveries(destination, state, next_attempt_at, id)
    WHERE state <> 'delivered';
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn`'s schema to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err)?;
    if current > VERSION {
        return Err(StoreError::Open {
            path: "schema".into(),
            message: format!(
                "the database has schema version {current}, newer than this hookgate's {VERSION}; \
                 run the newer hookgate or restore a backup"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_reaches_the_current_version_and_migrating_again_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn a_version_0_database_with_wave_1_rows_keeps_its_dedup_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO events (id, route, source_id, received_at, status) \
             VALUES ('evt_1', 'r', 'g1', 1000, 'delivered')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (event, expires): (String, i64) = conn
            .query_row(
                "SELECT event_id, expires_at FROM dedup WHERE source_id = 'g1' AND route = 'r'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(event, "evt_1");
        assert_eq!(expires, 1000 + 86_400_000);
    }

    /// Schema 10 marks the messages stored before schema 9 exactly as the
    /// insert marks new ones (`ingest::is_chosen`), for ids made to probe
    /// the rule's edges: suffixes of either known id, empty and non-digit
    /// suffixes, dotted bases, an empty provider id, none at all.
    #[test]
    fn messages_stored_before_schema_9_are_marked_as_the_insert_marks_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        let events: [(&str, Option<&str>); 4] = [
            ("evt_1", Some("gh-1.2")),
            ("evt_2", None),
            ("evt_3", Some("")),
            ("evt.4", Some("x.y")),
        ];
        let ids = [
            "evt_1",
            "evt_1.0",
            "evt_1.12",
            "evt_1.",
            "evt_1.x",
            "evt_1.1.2",
            "evt_1x.3",
            "gh-1.2",
            "gh-1",
            "gh-1.2.3",
            "gh-1.2.",
            "gh-1.2.3a",
            "custom",
            ".5",
            "5",
            "evt_2",
            "evt_2.7",
            "evt_3.1",
            "evt.4",
            "evt.4.9",
            "evt",
            "x.y.1",
            "x.y",
            "x",
            "ünï.1",
            "",
        ];
        let mut expected = Vec::new();
        for (event_id, source_id) in events {
            conn.execute(
                "INSERT INTO events (id, route, source_id, received_at, status) \
                 VALUES (?1, 'r', ?2, 1000, 'delivered')",
                rusqlite::params![event_id, source_id],
            )
            .unwrap();
            for (idx, id) in ids.iter().enumerate() {
                conn.execute(
                    "INSERT INTO messages (event_id, idx, message_id, content_type, headers, body) \
                     VALUES (?1, ?2, ?3, 'text/plain', '{}', x'')",
                    rusqlite::params![event_id, idx as i64, id],
                )
                .unwrap();
                let chosen = super::super::ingest::is_chosen(id, event_id, source_id);
                expected.push((event_id.to_owned(), (*id).to_owned(), chosen));
            }
            // A message with no id is never marked.
            conn.execute(
                "INSERT INTO messages (event_id, idx, message_id, content_type, headers, body) \
                 VALUES (?1, 99, NULL, 'text/plain', '{}', x'')",
                [event_id],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let mut marked = conn
            .prepare("SELECT event_id, message_id, chosen_id IS NOT NULL FROM messages WHERE idx < 99 ORDER BY id")
            .unwrap();
        let got: Vec<(String, String, bool)> = marked
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expected);
        assert!(expected.iter().any(|e| e.2) && expected.iter().any(|e| !e.2));
        let unmarked: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages WHERE message_id IS NULL AND chosen_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unmarked, 0);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
