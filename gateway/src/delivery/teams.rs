//! `kind: teams` destinations: Microsoft Teams incoming webhooks and
//! Workflows ("When a Teams webhook request is received") URLs.
//!
//! A Teams destination is an HTTP destination with three Teams rules on top,
//! all pure functions here so the delivery loop only calls them:
//!
//! - **Size.** Teams refuses messages over about 28 KB; sending one only
//!   burns the retry schedule, so [`oversized`] turns it into a dead letter
//!   before any request.
//! - **Errors disguised as success.** Office 365 connector ("incoming
//!   webhook") URLs answer `200` with body `1` on success, but also `200`
//!   with an error text (`Webhook message delivery failed with error: …`,
//!   `Summary or Text is required.`) on some failures. [`classify`] turns
//!   such an answer into a failed attempt so it is retried and, in the end,
//!   dead-lettered instead of counted as delivered. Workflows URLs answer
//!   `202` with no body, which stays a success.
//! - **Rate.** Connectors throttle more than four requests a second per
//!   webhook (and answer `429`, whose `Retry-After` the retry policy already
//!   honours). A Teams destination is therefore always paced
//!   (`pacing.rs`), at [`MIN_INTERVAL`] or its `rate:` if slower, so the
//!   gateway stays under that instead of collecting 429s.
//!
//! Not here: sending itself (the delivery loop's shared client), pacing
//! (`pacing.rs`) and the retry decision (`retry.rs`).

use std::time::Duration;

use crate::retry::AttemptResult;

/// Teams' message size limit ("approximately 28 KB" in Microsoft's docs for
/// incoming webhooks and bot messages); the whole posted body counts.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// Connectors allow four requests a second per webhook; a quarter second
/// between request starts keeps one gateway under it.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Why a body cannot be sent to Teams at all, or `None` when it fits.
pub fn oversized(body_len: usize) -> Option<String> {
    (body_len > MAX_MESSAGE_BYTES).then(|| {
        format!("message is {body_len} bytes, over Teams' {MAX_MESSAGE_BYTES}-byte limit; not sent")
    })
}

/// Reads a Teams answer: a `200` whose body is neither empty nor `1` is a
/// legacy connector's error, so the attempt failed (status kept for the
/// record, the text as the error). Anything else is left as it is.
pub fn classify(mut result: AttemptResult, body: Option<&str>) -> AttemptResult {
    if result.status != Some(200) {
        return result;
    }
    let text = body.unwrap_or("").trim();
    if text.is_empty() || text == "1" {
        return result;
    }
    let throttled = text.contains("HTTP error 429");
    result.status = if throttled { Some(429) } else { None };
    result.error = Some(format!("Teams answered 200 with an error: {text}"));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16) -> AttemptResult {
        AttemptResult {
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn size_limit_is_inclusive() {
        assert_eq!(oversized(MAX_MESSAGE_BYTES), None);
        let reason = oversized(MAX_MESSAGE_BYTES + 1).unwrap();
        assert!(reason.contains("28672"), "{reason}");
    }

    #[test]
    fn connector_success_and_workflows_accepted_stay_successes() {
        for (status, body) in [
            (200, Some("1")),
            (200, Some(" 1\n")),
            (200, None),
            (202, None),
        ] {
            let r = classify(ok(status), body);
            assert_eq!((r.status, r.error), (Some(status), None), "{body:?}");
        }
        // Only 200 is read: a 4xx text stays the 4xx it is.
        let r = classify(ok(400), Some("Bad payload"));
        assert_eq!((r.status, r.error), (Some(400), None));
    }

    #[test]
    fn two_hundred_with_error_text_is_a_failure() {
        let r = classify(
            ok(200),
            Some(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId abc",
            ),
        );
        assert_eq!(r.status, None);
        assert!(r.error.unwrap().contains("HTTP error 413"));
        let r = classify(ok(200), Some("Summary or Text is required."));
        assert_eq!(r.status, None);
    }

    #[test]
    fn two_hundred_reporting_throttling_is_a_429() {
        let r = classify(
            ok(200),
            Some(
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId abc",
            ),
        );
        assert_eq!(r.status, Some(429));
        assert!(r.error.is_some());
    }
}
