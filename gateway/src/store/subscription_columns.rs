//! The sending side's extra subscription columns (issue 13): extra headers,
//! properties, signature scheme and the previous secret of a rotation.
//!
//! Kept apart from the engine so it ports as one piece: the columns are
//! nullable and added with `ALTER TABLE` when missing, so a database made
//! before them opens unchanged and its rows read back with the defaults
//! (no headers, no properties, Standard Webhooks, no rotation).

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::{SignatureScheme, StoreError, Subscription};

/// Adds the columns to an existing `subscriptions` table that lacks them.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('subscriptions')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, ty) in [
        ("headers", "TEXT"),
        ("properties", "TEXT"),
        ("signature_scheme", "TEXT"),
        ("previous_secret", "TEXT"),
        ("previous_secret_expires", "INTEGER"),
    ] {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE subscriptions ADD COLUMN {name} {ty}"))?;
        }
    }
    Ok(())
}

/// Fills the extra fields of `s` from the row's columns starting at `at`.
pub(super) fn read(r: &rusqlite::Row<'_>, at: usize, s: &mut Subscription) -> rusqlite::Result<()> {
    let headers: Option<String> = r.get(at)?;
    let properties: Option<String> = r.get(at + 1)?;
    let scheme: Option<String> = r.get(at + 2)?;
    let expires: Option<i64> = r.get(at + 4)?;
    s.headers = headers
        .and_then(|h| serde_json::from_str::<BTreeMap<String, String>>(&h).ok())
        .unwrap_or_default();
    s.properties = properties.and_then(|p| serde_json::from_str(&p).ok());
    s.signature_scheme = scheme
        .as_deref()
        .and_then(SignatureScheme::parse)
        .unwrap_or_default();
    s.previous_secret = r.get(at + 3)?;
    s.previous_secret_expires_ms = expires.map(|e| e.max(0) as u64);
    Ok(())
}

/// The extra fields as column values: `headers, properties,
/// signature_scheme, previous_secret, previous_secret_expires`.
pub(super) type Values = (
    Option<String>,
    Option<String>,
    &'static str,
    Option<String>,
    Option<i64>,
);

/// The values to write for `s`.
pub(super) fn values(s: &Subscription) -> Result<Values, StoreError> {
    let headers = (!s.headers.is_empty())
        .then(|| serde_json::to_string(&s.headers))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let properties = s
        .properties
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((
        headers,
        properties,
        s.signature_scheme.as_str(),
        s.previous_secret.clone(),
        s.previous_secret_expires_ms
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::Store as _;
    use super::super::sqlite::SqliteStore;
    use super::*;

    /// A database written before the columns existed opens, and its rows
    /// read back with the defaults; the new fields then round-trip.
    #[tokio::test]
    async fn an_older_database_gains_the_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("hookgate.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE subscriptions (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, \
                 object_id TEXT NOT NULL, object_type TEXT NOT NULL, event_types TEXT NOT NULL, \
                 callback_url TEXT NOT NULL, callback_token TEXT, context TEXT, validity INTEGER NOT NULL, \
                 active INTEGER NOT NULL, secret TEXT NOT NULL, created_at INTEGER NOT NULL, \
                 failing_since INTEGER, disabled_reason TEXT);
                 INSERT INTO subscriptions VALUES ('wh_old', 't', 'o', 'Group', '[\"*\"]', \
                 'https://example.com/cb', NULL, NULL, 9999999999999, 1, 'whsec_x', 1, NULL, NULL);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut old = store
            .get_subscription(None, "wh_old".into())
            .await
            .unwrap()
            .unwrap();
        assert!(old.headers.is_empty());
        assert_eq!(old.properties, None);
        assert_eq!(old.signature_scheme, SignatureScheme::StandardWebhooks);
        assert_eq!(old.previous_secret, None);

        old.headers.insert("X-A".into(), "1".into());
        old.properties = Some(serde_json::Map::from_iter([("k".to_owned(), 2.into())]));
        old.signature_scheme = SignatureScheme::MsSignature;
        old.previous_secret = Some("whsec_prev".into());
        old.previous_secret_expires_ms = Some(42);
        assert!(store.update_subscription(old.clone()).await.unwrap());
        let back = store
            .get_subscription(None, "wh_old".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, old);
    }
}
