//! Time: the host's clock, and reading and checking providers' timestamps.

use crate::bindings::hookgate::plugin::host;

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    host::now_ms()
}

/// Whether a provider's timestamp (Unix seconds) is within `tolerance_secs`
/// of `reference_ms` (usually [`crate::Request::received_at_ms`]), in either
/// direction. Timestamps from the future are as suspicious as old ones.
pub fn within_tolerance(timestamp_secs: i64, reference_ms: u64, tolerance_secs: u64) -> bool {
    let reference_secs = (reference_ms / 1000) as i64;
    reference_secs.abs_diff(timestamp_secs) <= tolerance_secs
}

/// Unix seconds of an RFC 3339 date-time,
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, as providers such as Zendesk put
/// in timestamp headers; `None` for anything else.
///
/// Parsing is strict so a malformed header is rejected rather than guessed
/// at: no surrounding white space (trim first), a four-digit year, and an
/// explicit offset. Lowercase `t`/`z` and a space instead of `T` are accepted
/// (RFC 3339 allows them). The fraction is dropped, since tolerances are
/// whole seconds, and a leap second (`:60`) reads as the next minute's
/// first second. The day is checked against 1–31, not the month's length
/// (`02-30` reads as 2 March): a sender's signature covers the timestamp, so
/// an odd date cannot be forged, and the tolerance check still bounds it.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    // Byte ranges, not string slices: hostile input with multi-byte
    // characters must yield `None`, never a panic on a char boundary.
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    // Skip a fractional part, then read the offset.
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`): exact for every year without a calendar table.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::{parse_rfc3339, within_tolerance};

    #[test]
    fn rfc3339_utc_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        // The same instant written with offsets, a fraction, and the
        // lowercase and space forms RFC 3339 allows.
        for same in [
            "2023-11-14T23:13:20+01:00",
            "2023-11-14T16:43:20-05:30",
            "2023-11-14T22:13:20.999Z",
            "2023-11-14t22:13:20z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20.5+00:00",
        ] {
            assert_eq!(parse_rfc3339(same), Some(1_700_000_000), "{same}");
        }
    }

    #[test]
    fn rfc3339_calendar_edges() {
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("2100-03-01T00:00:00Z"), Some(4_107_542_400));
        // A leap second is the start of the next minute.
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn rfc3339_refuses_malformed_text() {
        for bad in [
            "",
            "1700000000",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20 Z",
            " 2023-11-14T22:13:20Z",
            "2023-11-14T22:13:20Z ",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+01:00:00",
            "2023-11-14T22:13Z",
            "23-11-14T22:13:20Z",
            "2023/11/14T22:13:20Z",
            "2023-13-14T22:13:20Z",
            "2023-00-14T22:13:20Z",
            "2023-11-32T22:13:20Z",
            "2023-11-00T22:13:20Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:61Z",
            "2023-11-14T22:13:+1Z",
            "2023-11-14T22:13:20+ab:00",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14T22:13:20\u{e9}",
            "\u{e9}\u{e9}23-11-14T22:13:20Z",
            "2023-11-14T22:13:20.\u{e9}Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        assert!(within_tolerance(1_000, 1_300_000, 300));
        assert!(within_tolerance(1_600, 1_300_000, 300));
        assert!(!within_tolerance(999, 1_300_000, 300));
        assert!(!within_tolerance(1_601, 1_300_000, 300));
    }
}
