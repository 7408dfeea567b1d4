//! A read-only JSON tree that borrows its strings from the body it was
//! parsed from.
//!
//! Why not `serde_json::Value`: a card reads a dozen fields of a payload
//! that GitHub makes 2-350 KB large, and `Value` allocates a `String` for
//! every key and string and a map node for every object along the way. In
//! the guest (dlmalloc, no SIMD) that parse was most of the Teams
//! transform's time. Here strings without escapes are slices of the body,
//! objects are vectors of pairs (a GitHub object has a few dozen keys at
//! most, searched linearly), so a parse allocates about once per object or
//! array. A reader that knows the keys it will look up parses with only
//! those kept ([`Json::parse_keys`]). Lookups behave as `Value`'s do: a
//! duplicated key yields its last value, pointers follow RFC 6901.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

/// A parsed JSON value whose strings borrow from the input where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Any other number.
    F64(f64),
    /// A string (borrowed unless it had escapes).
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object's members in document order.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `body`; strings without escapes borrow from it.
    pub fn parse(body: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(body)
    }

    /// Parses `body`, keeping only the object members whose key `keep`
    /// accepts, at every depth: the others are checked (the body must
    /// still be JSON, in UTF-8) but skipped, with nothing built or
    /// allocated for them. For a reader that knows every key it will look
    /// up.
    pub fn parse_keys(body: &'a [u8], keep: fn(&str) -> bool) -> serde_json::Result<Self> {
        // serde_json checks the UTF-8 of the strings it reads, not of those
        // it skips: the whole body is checked here, once, and read as text.
        let text = std::str::from_utf8(body).map_err(|e| {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "invalid UTF-8 at byte {}",
                e.valid_up_to()
            ))
        })?;
        let mut de = serde_json::Deserializer::from_str(text);
        let value = de.deserialize_any(JsonVisitor { keep })?;
        de.end()?;
        Ok(value)
    }

    /// The value at RFC 6901 pointer `ptr` (`""` is the whole value).
    pub fn pointer(&self, ptr: &str) -> Option<&Json<'a>> {
        if ptr.is_empty() {
            return Some(self);
        }
        let rest = ptr.strip_prefix('/')?;
        let mut cur = self;
        for token in rest.split('/') {
            cur = if token.contains('~') {
                cur.child(&token.replace("~1", "/").replace("~0", "~"))?
            } else {
                cur.child(token)?
            };
        }
        Some(cur)
    }

    /// An object's member `key` or an array's element at index `key`.
    fn child(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(_) => self.get(key),
            Json::Array(items) => items.get(array_index(key)?),
            _ => None,
        }
    }

    /// The object member `key` (the last one, if repeated).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is an integer in `u64`'s range.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Json::U64(n) => Some(n),
            Json::I64(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Json::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// An RFC 6901 array index: digits, no leading zero (as `Value::pointer`).
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// A string that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor { keep: every_key })
    }
}

fn every_key(_: &str) -> bool {
    true
}

/// Builds a [`Json`], keeping the object members whose key `keep` accepts.
#[derive(Clone, Copy)]
struct JsonVisitor {
    keep: fn(&str) -> bool,
}

impl<'de> DeserializeSeed<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(if v >= 0 {
            Json::U64(v as u64)
        } else {
            Json::I64(v)
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::F64(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if (self.keep)(&key) {
                let value = map.next_value_seed(self)?;
                members.push((key, value));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Every pointer into `doc` gives what `Value::pointer` gives.
    fn agrees(doc: &Value, ptr: &str) {
        let text = doc.to_string();
        let ours = Json::parse(text.as_bytes()).unwrap();
        let theirs = doc.pointer(ptr);
        let got = ours.pointer(ptr);
        assert_eq!(got.is_some(), theirs.is_some(), "{ptr}");
        if let (Some(a), Some(b)) = (got, theirs) {
            assert_eq!(a.as_str(), b.as_str(), "{ptr}");
            assert_eq!(a.as_u64(), b.as_u64(), "{ptr}");
            assert_eq!(a.as_bool(), b.as_bool(), "{ptr}");
            assert_eq!(
                a.as_array().map(<[_]>::len),
                b.as_array().map(Vec::len),
                "{ptr}"
            );
        }
    }

    #[test]
    fn pointers_agree_with_serde_json() {
        let doc = json!({
            "a": {"b": "c", "n": 7, "neg": -3, "f": 1.5, "t": true, "nul": null},
            "list": [{"x": "0"}, {"x": "1"}],
            "we/ird": {"ti~lde": "yes"},
            "": "empty key",
            "esc": "line\nbreak \"quoted\" é",
        });
        for ptr in [
            "",
            "/a",
            "/a/b",
            "/a/n",
            "/a/neg",
            "/a/f",
            "/a/t",
            "/a/nul",
            "/a/missing",
            "/list",
            "/list/0/x",
            "/list/1/x",
            "/list/2/x",
            "/list/01",
            "/list/+1",
            "/we~1ird/ti~0lde",
            "/",
            "/esc",
            "a",
            "/a/b/c",
        ] {
            agrees(&doc, ptr);
        }
    }

    #[test]
    fn strings_without_escapes_borrow_and_others_are_decoded() {
        let body = br#"{"plain": "abc", "escaped": "a\"b\u00e9"}"#;
        let v = Json::parse(body).unwrap();
        assert!(matches!(
            v.get("plain"),
            Some(Json::Str(Cow::Borrowed("abc")))
        ));
        assert_eq!(v.get("escaped").and_then(Json::as_str), Some("a\"bé"));
    }

    #[test]
    fn a_repeated_key_yields_its_last_value_as_serde_json_does() {
        let body = br#"{"k": "first", "k": "last"}"#;
        let ours = Json::parse(body).unwrap();
        let theirs: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(ours.get("k").and_then(Json::as_str), theirs["k"].as_str());
    }

    #[test]
    fn parse_keys_keeps_only_the_keys_asked_for_at_every_depth() {
        fn keep(k: &str) -> bool {
            matches!(k, "a" | "b")
        }
        let body =
            br#"{"a": {"b": [{"b": 1, "x": 2}], "x": {"b": 3}}, "x": [1, {"a": 4}], "b": "s"}"#;
        let v = Json::parse_keys(body, keep).unwrap();
        assert_eq!(v.pointer("/a/b/0/b").and_then(Json::as_u64), Some(1));
        assert_eq!(v.get("b").and_then(Json::as_str), Some("s"));
        assert!(v.pointer("/a/b/0/x").is_none());
        assert!(v.pointer("/a/x").is_none());
        assert!(v.get("x").is_none());
    }

    #[test]
    fn parse_keys_still_checks_what_it_skips() {
        fn keep(k: &str) -> bool {
            k == "a"
        }
        assert!(Json::parse_keys(br#"{"a": 1, "x": [1, }"#, keep).is_err());
        assert!(Json::parse_keys(br#"{"a": 1, "x": "\q"}"#, keep).is_err());
        assert!(Json::parse_keys(br#"{"a": 1} trailing"#, keep).is_err());
        assert!(Json::parse_keys(b"{\"a\": 1, \"x\": \"\xff\"}", keep).is_err());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(Json::parse_keys(deep.as_bytes(), keep).is_err());
    }

    #[test]
    fn deep_nesting_in_a_skipped_member_is_skipped_without_recursion() {
        fn keep(k: &str) -> bool {
            k == "a"
        }
        // serde_json skips a value with a loop and a stack of the brackets
        // still open (on the heap, at most one byte per byte of body), not
        // by recursion, so a skipped member as deep as the body allows
        // cannot overflow the guest's stack: a member under `keep` is
        // limited to serde_json's recursion limit of 128, a skipped one by
        // the gateway's body limit only.
        let deep = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        let body = format!(r#"{{"a": 1, "x": {deep}}}"#);
        let v = Json::parse_keys(body.as_bytes(), keep).unwrap();
        assert_eq!(v.get("a").and_then(Json::as_u64), Some(1));
        let unclosed = format!(r#"{{"a": 1, "x": {}}}"#, "[".repeat(1_000_000));
        assert!(Json::parse_keys(unclosed.as_bytes(), keep).is_err());
    }

    #[test]
    fn bad_json_and_deep_nesting_are_errors() {
        assert!(Json::parse(b"{\"a\": ").is_err());
        assert!(Json::parse(b"not json").is_err());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(Json::parse(deep.as_bytes()).is_err());
    }
}
