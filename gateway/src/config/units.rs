//! Durations and byte sizes as they are written in the config: `100ms`,
//! `10s`, `2d`; `1MiB`, `512KiB`, `1048576`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with units (`250ms`, `10s`, `5m`, `2h`, `2d`; several
/// parts may be combined: `1h 30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    /// From seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// The units humantime accepts, as a schema pattern so editors flag typos.
const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w)\s*)+$";

/// Each unit serialises as its text (`Display`), which its `parse` reads
/// back: the config a gateway prints is the config it would load.
macro_rules! serialize_as_text {
    ($($t:ty),+) => {
        $(impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        })+
    };
}
serialize_as_text!(Duration, ByteSize, Rate);

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration with units: 250ms, 10s, 5m, 2h, 2d (parts may be combined: 1h 30m).",
            "examples": ["100ms", "10s", "2d"],
        })
    }
}

/// A size in bytes: a whole number, or with a unit (`KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `1MiB`, `512 KiB`, `1000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}: use B, KB, KiB, MB, MiB, GB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b != 0 && b.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", b >> 20)
        } else if b != 0 && b.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: a whole number, or with a unit (KB, KiB, MB, MiB, GB, GiB).",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": r"^\s*[0-9]+\s*(B|KB|kB|KiB|MB|MiB|GB|GiB)?\s*$" }
            ],
            "examples": ["1MiB", 65536],
        })
    }
}

/// A rate: at most `count` per `per` (`10/s`, `600/min`, `100/h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many.
    pub count: u32,
    /// In how long: a second, a minute or an hour.
    pub per: StdDuration,
}

impl Rate {
    /// Parses `10/s`, `600/min`, `100/h` (also `second`, `m`, `minute`,
    /// `hour`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let Some((count, unit)) = t.split_once('/') else {
            return Err(format!(
                "invalid rate {s:?}: expected a count per unit, such as 10/s, 600/min or 100/h"
            ));
        };
        // A count of 0 parses: `validate` refuses it with the key's path,
        // which an error here could not name.
        let count: u32 = count.trim().parse().map_err(|_| {
            format!("invalid rate {s:?}: the count before `/` must be a whole number")
        })?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => StdDuration::from_secs(1),
            "m" | "min" | "minute" => StdDuration::from_secs(60),
            "h" | "hr" | "hour" => StdDuration::from_secs(3600),
            other => {
                return Err(format!(
                    "invalid rate unit {other:?} in {s:?}: use s, min or h"
                ));
            }
        };
        Ok(Rate { count, per })
    }

    /// The spacing between request starts that keeps to the rate. A count
    /// of 0, which `validate` refuses, counts as 1.
    pub fn interval(&self) -> StdDuration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9]{1,9}\s*/\s*(s|sec|second|m|min|minute|h|hr|hour)\s*$",
            "description": "At most a count per second, minute or hour: 10/s, 600/min, 100/h.",
            "examples": ["10/s", "600/min", "100/h"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("1MiB").unwrap().0, 1 << 20);
        assert_eq!(ByteSize::parse("512 KiB").unwrap().0, 512 << 10);
        assert_eq!(ByteSize::parse("2MB").unwrap().0, 2_000_000);
        assert_eq!(ByteSize::parse("42").unwrap().0, 42);
        assert!(ByteSize::parse("1 parsec").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn durations_parse_down_to_milliseconds() {
        let d: Duration = serde_json::from_value(serde_json::json!("250ms")).unwrap();
        assert_eq!(d.0, StdDuration::from_millis(250));
        let d: Duration = serde_json::from_value(serde_json::json!("2d")).unwrap();
        assert_eq!(d.0, StdDuration::from_secs(2 * 86_400));
        assert!(serde_json::from_value::<Duration>(serde_json::json!("soon")).is_err());
    }

    #[test]
    fn rates_are_a_count_per_second_minute_or_hour() {
        let r = Rate::parse("10/s").unwrap();
        assert_eq!((r.count, r.interval()), (10, StdDuration::from_millis(100)));
        assert_eq!(
            Rate::parse(" 600 / min ").unwrap().interval(),
            StdDuration::from_millis(100)
        );
        assert_eq!(
            Rate::parse("100/h").unwrap().interval(),
            StdDuration::from_secs(36)
        );
        assert_eq!(Rate::parse("3/second").unwrap().to_string(), "3/s");
        for bad in ["10", "-1/s", "1.5/s", "10/d", "/s", "ten/s", ""] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.contains("rate"), "{bad:?}: {e}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any text: a size or an error, never a panic.
            #[test]
            fn size_parsing_never_panics(s in ".*") {
                let _ = ByteSize::parse(&s);
            }

            /// A size prints as something that parses back to it.
            #[test]
            fn sizes_round_trip_through_text(b in any::<u64>()) {
                let text = ByteSize(b).to_string();
                prop_assert_eq!(ByteSize::parse(&text), Ok(ByteSize(b)));
            }

            /// Units multiply exactly, or the size is refused as too large.
            #[test]
            fn units_multiply_or_refuse(n in any::<u64>(), unit in prop::sample::select(vec![
                ("B", 1u64), ("KB", 1_000), ("KiB", 1 << 10), ("MB", 1_000_000),
                ("MiB", 1 << 20), ("GB", 1_000_000_000), ("GiB", 1 << 30),
            ])) {
                let parsed = ByteSize::parse(&format!("{n}{}", unit.0));
                match n.checked_mul(unit.1) {
                    Some(bytes) => prop_assert_eq!(parsed, Ok(ByteSize(bytes))),
                    None => prop_assert!(parsed.is_err()),
                }
            }

            /// Any text: a duration or an error, never a panic.
            #[test]
            fn duration_parsing_never_panics(s in ".*") {
                let _ = serde_json::from_value::<Duration>(serde_json::Value::String(s));
            }

            /// A duration prints as something that parses back to it.
            #[test]
            fn durations_round_trip_through_text(secs in 0u64..=100 * 365 * 86_400, nanos in 0u32..1_000_000_000) {
                let d = Duration(StdDuration::new(secs, nanos));
                let back: Duration = serde_json::from_value(serde_json::to_value(d).unwrap()).unwrap();
                prop_assert_eq!(back, d);
            }

            /// Any text: a rate or an error, never a panic; a rate prints
            /// as text that parses back to it.
            #[test]
            fn rates_parse_or_refuse_and_round_trip(s in ".*", count in 1u32.., unit in prop::sample::select(vec!["s", "min", "h"])) {
                let _ = Rate::parse(&s);
                let r = Rate::parse(&format!("{count}/{unit}")).unwrap();
                prop_assert_eq!(Rate::parse(&r.to_string()), Ok(r));
                prop_assert!(r.interval() <= r.per);
            }
        }
    }
}
