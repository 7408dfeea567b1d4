//! The route's `with:` block for this plugin.
//!
//! Values arrive with `${VAR}` references already replaced by the gateway.

use serde::de::DeserializeOwned;

use crate::bindings::hookgate::plugin::host;
use crate::{ConfigError, Error};

/// The whole `with:` block parsed into `T` (a `#[derive(Deserialize)]`
/// struct). A block that does not fit is an [`Error::Config`].
pub fn parse<T: DeserializeOwned>() -> Result<T, Error> {
    let raw = host::config();
    serde_json::from_str(&raw).map_err(|e| Error::config(format!("invalid `with:` block: {e}")))
}

/// One top-level key as a string (numbers and booleans as their JSON text).
pub fn get(key: &str) -> Option<String> {
    host::config_get(key)
}

/// One top-level key as a string, or an [`Error::Config`] naming the key.
pub fn require_str(key: &str) -> Result<String, Error> {
    match host::config_get(key) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Error::config(format!("`with.{key}` is empty"))),
        None => Err(Error::config(format!("`with.{key}` is required"))),
    }
}

/// One top-level key that may be absent but, when given, must not be empty:
/// an empty value is almost always an unset `${VAR}`, and silently treating
/// it as absent would turn a check off.
pub fn optional_str(key: &str) -> Result<Option<String>, Error> {
    match host::config_get(key) {
        Some(v) if v.is_empty() => Err(Error::config(format!("`with.{key}` is empty"))),
        value => Ok(value),
    }
}

/// A boolean key; absent means `default`.
pub fn get_bool(key: &str, default: bool) -> Result<bool, Error> {
    match host::config_get(key).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Error::config(format!(
            "`with.{key}` must be true or false, not {other:?}"
        ))),
    }
}

/// An unsigned integer key; absent means `default`.
pub fn get_u64(key: &str, default: u64) -> Result<u64, Error> {
    match host::config_get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("`with.{key}` must be a whole number, not {v:?}"))),
    }
}

/// Checks a `with:` block (JSON text) for the gateway's `validate-config`:
/// it must be an object, and with `keys`, have no other top-level key.
#[doc(hidden)]
pub fn validate_keys(config: &str, keys: Option<&[&str]>) -> Result<(), Vec<ConfigError>> {
    let value: serde_json::Value = serde_json::from_str(config).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("is not JSON: {e}"),
        }]
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(vec![ConfigError {
            path: String::new(),
            message: "must be a mapping of keys to values".to_owned(),
        }]);
    };
    let Some(keys) = keys else { return Ok(()) };
    let errors: Vec<ConfigError> = map
        .keys()
        .filter(|k| !keys.contains(&k.as_str()))
        .map(|k| ConfigError {
            path: k.clone(),
            message: if keys.is_empty() {
                "unknown key (this plugin takes no settings)".to_owned()
            } else {
                format!("unknown key (expected one of: {})", keys.join(", "))
            },
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
