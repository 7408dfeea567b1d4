//! Where a replay may move deliveries (`to`): a destination renamed in the
//! config leaves its deliveries under the old name, postponed, until an
//! operator moves them. The admin API and the console ask the same rules.

use crate::config::{DestinationKind, GatewayConfig};
use crate::store::SUBSCRIBER_PREFIX;

/// Checks a replay's `to`: it moves deliveries away from one named
/// `destination` to a destination the current config has, that is not the
/// subscription API (a subscriber's deliveries belong to its subscription).
pub fn check(
    config: &GatewayConfig,
    destination: Option<&str>,
    to: Option<&str>,
) -> Result<(), String> {
    let Some(to) = to else { return Ok(()) };
    let Some(from) = destination else {
        return Err("`to` needs `destination`: the destination whose deliveries move".into());
    };
    if from.starts_with(SUBSCRIBER_PREFIX) {
        return Err(format!(
            "`destination` {from:?} is a subscriber's: its deliveries cannot move"
        ));
    }
    match config.destinations.get(to) {
        None => Err(format!(
            "`to`: the current config has no destination {to:?}"
        )),
        Some(d) if d.kind == DestinationKind::Subscribers => Err(format!(
            "`to`: destination {to:?} is `kind: subscribers`; deliveries move only to a destination that sends them itself"
        )),
        Some(_) => Ok(()),
    }
}

/// The destinations deliveries may move to, by name.
pub fn targets(config: &GatewayConfig) -> Vec<String> {
    // A BTreeMap: in name order already.
    config
        .destinations
        .iter()
        .filter(|(_, d)| d.kind != DestinationKind::Subscribers)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether a delivery to `destination` is one the current config cannot
/// send (renamed or removed), and so one to offer to move.
pub fn is_orphaned(config: &GatewayConfig, destination: &str) -> bool {
    !destination.starts_with(SUBSCRIBER_PREFIX) && !config.destinations.contains_key(destination)
}
