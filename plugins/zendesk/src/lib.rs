//! `zendesk`: verifies Zendesk webhook signatures.
//!
//! Zendesk sends `X-Zendesk-Webhook-Signature-Timestamp` and
//! `X-Zendesk-Webhook-Signature: <base64>`, the HMAC-SHA256 of the timestamp
//! header's text immediately followed by the raw body (no separator), keyed
//! with the webhook's signing secret as text.
//!
//! ```yaml
//! verify:
//!   plugin: zendesk
//!   with:
//!     secret: "${ZENDESK_SIGNING_SECRET}"
//!     tolerance: 300       # seconds, optional (default 300)
//! ```
//!
//! Zendesk's timestamp is an RFC 3339 / ISO 8601 UTC time such as
//! `2021-07-25T10:00:00Z` (Unix seconds are accepted too). It is signed, so
//! requiring it to lie within `tolerance` seconds of the time of receipt
//! bounds replays.
//!
//! The event type is the body's `type` (`zen:event-type:ticket.created`,
//! ...) and the message id its `id`, when the body is a Zendesk event
//! (trigger and automation webhooks have free-form bodies and get neither).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Plugin, Request, Verdict, crypto::Algorithm, signature,
};
use serde::Deserialize;

/// Five minutes, the window most providers and libraries use.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Zendesk;

impl Plugin for Zendesk {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let tolerance = sdk::config::get_u64("tolerance", DEFAULT_TOLERANCE_SECS)?;

        let Some(timestamp) = req.header("x-zendesk-webhook-signature-timestamp") else {
            return Ok(Verdict::unauthorized(
                "missing X-Zendesk-Webhook-Signature-Timestamp header",
            ));
        };
        let Some(timestamp_secs) = parse_timestamp(timestamp.trim()) else {
            return Ok(Verdict::unauthorized(
                "X-Zendesk-Webhook-Signature-Timestamp is not an RFC 3339 time",
            ));
        };
        let Some(mac) = req.header("x-zendesk-webhook-signature") else {
            return Ok(Verdict::unauthorized(
                "missing X-Zendesk-Webhook-Signature header",
            ));
        };

        // The timestamp is signed exactly as sent.
        let mut content = timestamp.as_bytes().to_vec();
        content.extend_from_slice(&req.body);
        if !signature::verify_base64(Algorithm::Sha256, secret.as_bytes(), &content, mac) {
            return Ok(Verdict::unauthorized(
                "X-Zendesk-Webhook-Signature does not match the timestamp and body",
            ));
        }
        if !sdk::time::within_tolerance(timestamp_secs, req.received_at_ms, tolerance) {
            return Ok(Verdict::unauthorized(format!(
                "X-Zendesk-Webhook-Signature-Timestamp is more than {tolerance} s away from the time of receipt"
            )));
        }

        let mut accepted = Accepted::new();
        if let Ok(event) = serde_json::from_slice::<Event>(&req.body) {
            if let Some(id) = event.id {
                accepted = accepted.id(id);
            }
            if let Some(kind) = event.kind {
                accepted = accepted.event_type(kind);
            }
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The fields of a Zendesk event body this plugin reads.
#[derive(Deserialize)]
struct Event {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Unix seconds of an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`)
/// or of a plain integer.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let b = text.as_bytes();
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
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

sdk::export!(Zendesk, stages: [verify]);
