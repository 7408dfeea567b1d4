//! The route's `with:` block for this plugin.
//!
//! Values arrive with `${VAR}` references already replaced by the gateway.

use std::cell::RefCell;

use serde::de::DeserializeOwned;

use crate::bindings::hookgate::plugin::host;
use crate::{ConfigError, Error};

/// The whole `with:` block parsed into `T` (a `#[derive(Deserialize)]`
/// struct). A block that does not fit is an [`Error::Config`] that names
/// the key at fault (`` `with.algorithm` unknown variant `sha999`, ...``),
/// which [`export!`](crate::export)'s `check:` reports at that key.
pub fn parse<T: DeserializeOwned>() -> Result<T, Error> {
    parse_block(&host::config())
}

/// [`parse`] of a given block.
fn parse_block<T: DeserializeOwned>(raw: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = String::new();
        for segment in e.path() {
            match segment {
                serde_path_to_error::Segment::Map { key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                serde_path_to_error::Segment::Seq { index } => {
                    path.push_str(&format!("[{index}]"));
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = e.into_inner();
        // The block is JSON the gateway made from the route's YAML: its
        // line and column mean nothing to whoever wrote the YAML.
        let mut what = inner.to_string();
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        if inner.line() > 0 && what.ends_with(&position) {
            what.truncate(what.len() - position.len());
        }
        if path.is_empty() {
            Error::config(format!("invalid `with:` block: {what}"))
        } else {
            Error::config(format!("`with.{path}` {what}"))
        }
    })
}

/// One top-level key as a string (numbers and booleans as their JSON text).
pub fn get(key: &str) -> Option<String> {
    lookup(key)
}

/// How many keys an instance remembers; past that (a plugin that builds
/// key names) each further key is asked of the host every time.
const REMEMBERED_KEYS: usize = 32;

thread_local! {
    /// The `with:` keys this instance has asked the host for, and what it
    /// said. An instance serves one use of one plugin (one route step's
    /// `with:` block) for its whole life: the gateway parks warm instances
    /// in the use's own pool, and a reload makes new uses. So a key's value
    /// never changes under an instance, and a verifier that reads its
    /// secret on every webhook asks the host once (each ask is a call out
    /// of the guest, the key lifted and the value lowered into guest
    /// memory).
    static KEYS: RefCell<Vec<(String, Option<String>)>> = const { RefCell::new(Vec::new()) };
}

/// `config-get`, once per key per instance (see [`KEYS`]).
fn lookup(key: &str) -> Option<String> {
    KEYS.with_borrow_mut(|keys| {
        if let Some((_, value)) = keys.iter().find(|(k, _)| k == key) {
            return value.clone();
        }
        let value = host::config_get(key);
        if keys.len() < REMEMBERED_KEYS {
            keys.push((key.to_owned(), value.clone()));
        }
        value
    })
}

/// One top-level key as a string, or an [`Error::Config`] naming the key.
pub fn require_str(key: &str) -> Result<String, Error> {
    match lookup(key) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Error::config(format!("`with.{key}` is empty"))),
        None => Err(Error::config(format!("`with.{key}` is required"))),
    }
}

/// `with.secret`, required: the shared secret of nearly every verifier.
pub fn secret() -> Result<String, Error> {
    require_str("secret")
}

/// The settings of a signature scheme with a signed timestamp.
pub struct SecretAndTolerance {
    /// `with.secret`, required.
    pub secret: String,
    /// `with.tolerance`: how far, in seconds, the timestamp may be from now.
    pub tolerance: u64,
}

/// `with.secret` (required) and `with.tolerance` (whole seconds, default
/// `default_secs`).
pub fn secret_and_tolerance(default_secs: u64) -> Result<SecretAndTolerance, Error> {
    Ok(SecretAndTolerance {
        secret: secret()?,
        tolerance: get_u64("tolerance", default_secs)?,
    })
}

/// One top-level key that may be absent but, when given, must not be empty:
/// an empty value is almost always an unset `${VAR}`, and silently treating
/// it as absent would turn a check off.
pub fn optional_str(key: &str) -> Result<Option<String>, Error> {
    match lookup(key) {
        Some(v) if v.is_empty() => Err(Error::config(format!("`with.{key}` is empty"))),
        value => Ok(value),
    }
}

/// A boolean key; absent means `default`.
pub fn get_bool(key: &str, default: bool) -> Result<bool, Error> {
    match lookup(key).as_deref() {
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
    match lookup(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("`with.{key}` must be a whole number, not {v:?}"))),
    }
}

/// Checks a `with:` block (JSON text) for the gateway's `validate-config`:
/// it must be an object, and with `keys`, have no other top-level key.
/// [`export!`](crate::export)'s `config:` list calls this.
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

/// Runs a plugin's own check of its `with:` block for the gateway's
/// `validate-config` ([`export!`](crate::export)'s `check:`), after the key
/// list. `settings` is the function the plugin reads its settings with when
/// it serves a request, so the check at load and the use at run time cannot
/// disagree: the gateway's `validate-config` call sees the same `with:`
/// block through [`get`] and [`parse`].
///
/// An [`Error::Config`] becomes one config error at the key its message
/// names (`` `with.tolerance` must be a whole number`` is reported at
/// `tolerance`); any other error applies to the block as a whole.
#[doc(hidden)]
pub fn run_check<T>(settings: impl FnOnce() -> Result<T, Error>) -> Result<(), Vec<ConfigError>> {
    match settings() {
        Ok(_) => Ok(()),
        Err(Error::Config(message)) => Err(vec![config_error(&message)]),
        Err(Error::InvalidInput(message) | Error::Other(message)) => Err(vec![ConfigError {
            path: String::new(),
            message,
        }]),
    }
}

/// A config error from an [`Error::Config`] message: the SDK's getters and
/// the first-party plugins start theirs with the key in backquotes
/// (`` `with.secret` is required``), which becomes the error's path.
fn config_error(message: &str) -> ConfigError {
    // "`with:` ..." is about the block as a whole, which the gateway's
    // path already names.
    let message = message.strip_prefix("`with:` ").unwrap_or(message);
    let named = message.strip_prefix("`with.").and_then(|rest| {
        let (key, what) = rest.split_once('`')?;
        let what = what.trim_start_matches([':', ' ']);
        (!key.is_empty()).then(|| (key.to_owned(), what))
    });
    match named {
        Some((path, what)) => ConfigError {
            path,
            message: if what.is_empty() {
                "is not valid".to_owned()
            } else {
                what.to_owned()
            },
        },
        None => ConfigError {
            path: String::new(),
            message: message.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_is_reported_at_the_key_its_message_names() {
        let e = run_check(|| -> Result<(), Error> {
            Err(Error::config(
                "`with.tolerance` must be a whole number, not \"soon\"",
            ))
        })
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "tolerance");
        assert_eq!(e[0].message, "must be a whole number, not \"soon\"");

        let e = run_check(|| -> Result<(), Error> {
            Err(Error::config("`with.rules[2].event`: is required"))
        })
        .unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            ("rules[2].event", "is required")
        );

        let e = run_check(|| -> Result<(), Error> {
            Err(Error::config(
                "`with.secret` does not decode with `with.secret_encoding`",
            ))
        })
        .unwrap_err();
        assert_eq!(e[0].path, "secret");
        assert_eq!(e[0].message, "does not decode with `with.secret_encoding`");
    }

    #[test]
    fn other_errors_apply_to_the_whole_block_and_ok_passes() {
        let e =
            run_check(|| -> Result<(), Error> { Err(Error::config("invalid `with:` block: x")) })
                .unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            ("", "invalid `with:` block: x")
        );
        let e = run_check(|| -> Result<(), Error> { Err(Error::other("boom")) }).unwrap_err();
        assert_eq!((e[0].path.as_str(), e[0].message.as_str()), ("", "boom"));
        assert!(run_check(|| Ok::<_, Error>(42)).is_ok());
    }

    #[test]
    fn a_block_that_does_not_parse_names_the_key_at_fault() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only the errors are tested")]
        struct With {
            secret: String,
            #[serde(default)]
            algorithm: Algo,
            #[serde(default)]
            rules: Vec<Rule>,
        }
        #[derive(serde::Deserialize, Debug, Default)]
        #[serde(rename_all = "lowercase")]
        enum Algo {
            #[default]
            Sha256,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only the errors are tested")]
        struct Rule {
            to: String,
        }
        let err = |raw: &str| match parse_block::<With>(raw).unwrap_err() {
            Error::Config(m) => config_error(&m),
            other => panic!("{other:?}"),
        };
        let e = err(r#"{"secret":"s","algorithm":"sha999"}"#);
        assert_eq!(e.path, "algorithm");
        assert!(
            e.message.starts_with("unknown variant `sha999`"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = err(r#"{"secret":"s","rules":[{"to":"a"},{"to":3}]}"#);
        assert_eq!(e.path, "rules[1].to");
        assert!(
            e.message.starts_with("invalid type: integer `3`"),
            "{}",
            e.message
        );
        let e = err(r#"{"algorithm":"sha256"}"#);
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("", "invalid `with:` block: missing field `secret`")
        );
        assert!(parse_block::<With>(r#"{"secret":"s"}"#).is_ok());
    }

    #[test]
    fn keys_outside_the_list_are_refused_by_name() {
        let e = validate_keys(r#"{"secret":"s","secert":"t"}"#, Some(&["secret"])).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "secert");
        assert!(validate_keys(r#"{"anything":1}"#, None).is_ok());
        assert!(validate_keys("[1]", None).is_err());
    }
}
