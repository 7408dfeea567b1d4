//! The sending side's extra subscription columns (issue 13): extra headers,
//! properties, signature scheme and the previous secret of a rotation.
//!
//! Kept apart from the engine so it ports as one piece. The columns are
//! nullable (schema migration [`MIGRATION`]), so rows written before them
//! read back with the defaults: no headers, no properties, Standard
//! Webhooks, no rotation.

use std::collections::BTreeMap;

use rusqlite::types::Value;

use super::{SignatureScheme, StoreError, Subscription, SubscriptionPatch};

/// The schema migration that adds the columns.
pub(super) const MIGRATION: &str = r#"
ALTER TABLE subscriptions ADD COLUMN headers TEXT;
ALTER TABLE subscriptions ADD COLUMN properties TEXT;
ALTER TABLE subscriptions ADD COLUMN signature_scheme TEXT;
ALTER TABLE subscriptions ADD COLUMN previous_secret TEXT;
ALTER TABLE subscriptions ADD COLUMN previous_secret_expires INTEGER;
"#;

/// Decodes the JSON text stored in column `idx` (`name`). A value that
/// does not decode fails as a conversion of that column, which the engine reports
/// as [`StoreError::Corrupt`]: a subscription read with defaults in place
/// of what was stored (no event types, no headers) would be sent wrong.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    idx: usize,
    name: &str,
    text: &str,
) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(idx, format!("subscriptions.{name}: {e}")))
}

/// Column `idx` holds text that does not decode: `why`.
fn corrupt(idx: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, why.into())
}

/// Fills the extra fields of `s` from the row's columns starting at `at`.
pub(super) fn read(r: &rusqlite::Row<'_>, at: usize, s: &mut Subscription) -> rusqlite::Result<()> {
    let headers: Option<String> = r.get(at)?;
    let properties: Option<String> = r.get(at + 1)?;
    let scheme: Option<String> = r.get(at + 2)?;
    let expires: Option<i64> = r.get(at + 4)?;
    s.headers = headers
        .map(|h| json_column::<BTreeMap<String, String>>(at, "headers", &h))
        .transpose()?
        .unwrap_or_default();
    s.properties = properties
        .map(|p| json_column(at + 1, "properties", &p))
        .transpose()?;
    s.signature_scheme = match scheme.as_deref() {
        None => SignatureScheme::default(),
        Some(name) => SignatureScheme::parse(name).ok_or_else(|| {
            corrupt(
                at + 2,
                format!("subscriptions.signature_scheme: unknown scheme {name:?}"),
            )
        })?,
    };
    s.previous_secret = r.get(at + 3)?;
    s.previous_secret_expires_ms = expires.map(|e| e.max(0) as u64);
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn ms(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The values of `headers, properties, signature_scheme, previous_secret,
/// previous_secret_expires` for a new row `s`.
pub(super) fn values(s: &Subscription) -> Result<[Value; 5], StoreError> {
    Ok([
        if s.headers.is_empty() {
            Value::Null
        } else {
            Value::Text(json(&s.headers)?)
        },
        s.properties
            .as_ref()
            .map(json)
            .transpose()?
            .map_or(Value::Null, Value::Text),
        Value::Text(s.signature_scheme.as_str().to_owned()),
        s.previous_secret.clone().map_or(Value::Null, Value::Text),
        s.previous_secret_expires_ms.map_or(Value::Null, ms),
    ])
}

/// The `SET` clauses (each with one `?`) and their values for the extra
/// fields `patch` names. A rotation moves the current secret to
/// `previous_secret` in the same statement (SQLite evaluates every right
/// side against the row as it was).
pub(super) fn patch_sets(
    patch: &SubscriptionPatch,
) -> Result<Vec<(&'static str, Value)>, StoreError> {
    let mut sets = Vec::new();
    if let Some(h) = &patch.headers {
        let v = if h.is_empty() {
            Value::Null
        } else {
            Value::Text(json(h)?)
        };
        sets.push(("headers = ?", v));
    }
    if let Some(p) = &patch.properties {
        let v = p
            .as_ref()
            .map(json)
            .transpose()?
            .map_or(Value::Null, Value::Text);
        sets.push(("properties = ?", v));
    }
    if let Some(scheme) = patch.signature_scheme {
        sets.push((
            "signature_scheme = ?",
            Value::Text(scheme.as_str().to_owned()),
        ));
    }
    if let Some(r) = &patch.rotation {
        sets.push((
            "previous_secret = secret, secret = ?",
            Value::Text(r.secret.clone()),
        ));
        sets.push(("previous_secret_expires = ?", ms(r.previous_expires_ms)));
    }
    Ok(sets)
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
            let conn = rusqlite::Connection::open(dir.path().join("hookgate.db")).unwrap();
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

        let patch = SubscriptionPatch {
            headers: Some(BTreeMap::from([("X-A".to_owned(), "1".to_owned())])),
            properties: Some(Some(serde_json::Map::from_iter([(
                "k".to_owned(),
                2.into(),
            )]))),
            signature_scheme: Some(SignatureScheme::MsSignature),
            rotation: Some(super::super::SecretRotation {
                secret: "whsec_new".into(),
                previous_expires_ms: 42,
            }),
            ..Default::default()
        };
        let back = store
            .update_subscription("t".into(), "wh_old".into(), patch)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.headers["X-A"], "1");
        assert_eq!(back.properties.as_ref().unwrap()["k"], 2);
        assert_eq!(back.signature_scheme, SignatureScheme::MsSignature);
        assert_eq!(back.secret, "whsec_new");
        assert_eq!(
            back.previous_secret.as_deref(),
            Some("whsec_x"),
            "the old secret moved"
        );
        assert_eq!(back.previous_secret_expires_ms, Some(42));
        assert_eq!(
            store
                .get_subscription(None, "wh_old".into())
                .await
                .unwrap()
                .unwrap(),
            back
        );
        old.secret = back.secret.clone();
        assert_ne!(back, old);
    }
}
