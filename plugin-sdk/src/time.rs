//! Time, from the host's clock.

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

#[cfg(test)]
mod tests {
    use super::within_tolerance;

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        assert!(within_tolerance(1_000, 1_300_000, 300));
        assert!(within_tolerance(1_600, 1_300_000, 300));
        assert!(!within_tolerance(999, 1_300_000, 300));
        assert!(!within_tolerance(1_601, 1_300_000, 300));
    }
}
