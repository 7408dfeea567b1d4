//! Reading `/v1` request bodies the way Kaizala's reference writes them.
//!
//! The reference mixes spellings: its create sample sends `callBackUrl`,
//! its GET answers `callbackUrl` and `events`, its PUT sample sends
//! `"Active": "true"` (PascalCase key, boolean as a string) and documents
//! `validity` as an epoch string. So keys are matched ignoring ASCII case
//! (camelCase and PascalCase both work), `events` is `eventTypes`, flags
//! take JSON booleans or the strings `"true"`/`"false"`, and epoch
//! milliseconds take a number or a string of digits. A key given twice
//! under two spellings is refused rather than guessed at.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// A refused body: the field at fault (when known) and why.
#[derive(Debug)]
pub struct BadInput {
    /// The key at fault, canonically spelt.
    pub field: Option<String>,
    /// Why.
    pub message: String,
}

/// Parses `body` as a JSON object and renames its keys to the canonical
/// spelling: the entry of `fields` equal ignoring ASCII case, or the
/// target of an `aliases` entry (whose source is lower case). Unknown keys
/// are kept as given, for serde to refuse by name.
pub fn canonical_object(
    body: &[u8],
    fields: &[&str],
    aliases: &[(&str, &str)],
) -> Result<Map<String, Value>, BadInput> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BadInput {
        field: None,
        message: format!("the body is not valid JSON: {e}"),
    })?;
    let Value::Object(object) = value else {
        return Err(BadInput {
            field: None,
            message: "the body must be a JSON object".into(),
        });
    };
    let mut out = Map::with_capacity(object.len());
    for (key, v) in object {
        let lower = key.to_ascii_lowercase();
        let canonical = aliases
            .iter()
            .find(|(from, _)| *from == lower)
            .map(|(_, to)| *to)
            .or_else(|| {
                fields
                    .iter()
                    .copied()
                    .find(|f| f.eq_ignore_ascii_case(&key))
            })
            .map_or(key.clone(), str::to_owned);
        if out.contains_key(&canonical) {
            return Err(BadInput {
                message: format!(
                    "{key:?} repeats {canonical:?} (keys are matched ignoring case, and `events` is `eventTypes`)"
                ),
                field: Some(canonical),
            });
        }
        if !JSON_VALUED.contains(&canonical.as_str()) && holds_nul(&v) {
            return Err(BadInput {
                message: "holds a NUL character (\\u0000), which no stored text can contain".into(),
                field: Some(canonical),
            });
        }
        out.insert(canonical, v);
    }
    Ok(out)
}

/// Fields whose value is any JSON, kept as JSON (which escapes a NUL): a
/// string with a NUL is as good a value there as any other.
const JSON_VALUED: &[&str] = &["data", "callBackContext", "properties"];

/// Whether a field's text holds a NUL: a string, or a string of an array
/// (`eventTypes`). Such text is stored as text (or, for the fields a PUT
/// echoes from a GET and ignores, can never have been stored with one),
/// and PostgreSQL's cannot hold a NUL (see [`crate::text`]): refused on
/// every engine alike, rather than failing there as "store unavailable".
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items
            .iter()
            .any(|i| matches!(i, Value::String(s) if s.contains('\0'))),
        _ => false,
    }
}

/// A flag: `true`/`false`, or the strings `"true"`/`"false"` as
/// Kaizala's reference sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, \"true\" or \"false\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v {
                    "true" => Ok(Flag(true)),
                    "false" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Schema of an optional [`Flag`] (`null` is the same as absent).
pub fn flag_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["true", "false"])),
        )
        .description(Some(
            "A JSON boolean, or the string \"true\" or \"false\" (as Kaizala's reference sends it).",
        ))
}

/// Milliseconds since the epoch: a non-negative integer or a string of
/// digits (Kaizala's reference types `validity` as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochMs(pub u64);

impl<'de> Deserialize<'de> for EpochMs {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EpochMs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch milliseconds: a non-negative integer or a string of digits")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EpochMs, E> {
                Ok(EpochMs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EpochMs, E> {
                u64::try_from(v)
                    .map(EpochMs)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EpochMs, E> {
                // JSON Schema counts 1.0 as an integer, so the API does too.
                if v.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&v) {
                    Ok(EpochMs(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EpochMs, E> {
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse()
                        .map(EpochMs)
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Schema of an optional [`EpochMs`] (`null` is the same as absent).
pub fn epoch_ms_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]{1,19}$")),
        )
        .description(Some(
            "Milliseconds since the epoch: an integer, or a string of digits (as Kaizala's reference types it).",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &[
        "objectId",
        "eventTypes",
        "callBackUrl",
        "active",
        "callBackContext",
    ];
    const ALIASES: &[(&str, &str)] = &[("events", "eventTypes")];

    #[test]
    fn pascal_and_camel_case_and_get_spellings_map_to_one_name() {
        let v = canonical_object(
            br#"{"ObjectId": "o", "callbackUrl": "u", "Events": ["a"], "Active": "true", "colour": 1}"#,
            FIELDS,
            ALIASES,
        )
        .unwrap();
        assert_eq!(v["objectId"], "o");
        assert_eq!(v["callBackUrl"], "u");
        assert_eq!(v["eventTypes"][0], "a");
        assert_eq!(v["active"], "true");
        assert_eq!(v["colour"], 1, "unknown keys are left for serde to name");
    }

    #[test]
    fn the_same_key_twice_is_refused() {
        let e = canonical_object(br#"{"active": true, "Active": "false"}"#, FIELDS, ALIASES)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("active"));
        let e =
            canonical_object(br#"{"events": [], "eventTypes": []}"#, FIELDS, ALIASES).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("eventTypes"));
        assert!(canonical_object(b"[1]", FIELDS, ALIASES).is_err());
        assert!(canonical_object(b"{", FIELDS, ALIASES).is_err());
    }

    #[test]
    fn text_with_a_nul_is_refused_naming_its_field() {
        let e = canonical_object(br#"{"objectid": "g\u0000"}"#, FIELDS, ALIASES).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("objectId"), "{}", e.message);
        assert!(e.message.contains("NUL"), "{}", e.message);
        let e = canonical_object(br#"{"events": ["a", "b\u0000"]}"#, FIELDS, ALIASES).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("eventTypes"));
        // JSON values keep it: they are stored as JSON, which escapes it.
        assert!(canonical_object(br#"{"data": {"k": "\u0000"}}"#, FIELDS, ALIASES).is_ok());
        assert!(canonical_object(br#"{"CallBackContext": "\u0000"}"#, FIELDS, ALIASES).is_ok());
    }

    #[test]
    fn flags_and_epochs_take_kaizala_strings() {
        let f = |s: &str| serde_json::from_str::<Flag>(s).map(|f| f.0).ok();
        assert_eq!(f("true"), Some(true));
        assert_eq!(f("\"false\""), Some(false));
        assert_eq!(f("\"True\""), None);
        assert_eq!(f("1"), None);
        let e = |s: &str| serde_json::from_str::<EpochMs>(s).map(|e| e.0).ok();
        assert_eq!(e("1568605416677"), Some(1_568_605_416_677));
        assert_eq!(e("\"1568605416677\""), Some(1_568_605_416_677));
        assert_eq!(e("-1"), None);
        assert_eq!(e("\"\""), None);
        assert_eq!(e("\"12a\""), None);
        assert_eq!(e("1.5"), None);
        assert_eq!(e("168618580.0"), Some(168_618_580));
        assert_eq!(e("\"99999999999999999999\""), None);
    }
}
