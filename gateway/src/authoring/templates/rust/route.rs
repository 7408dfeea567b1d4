//! {{name}}: a router. Sends each message to the destinations its event
//! type maps to in `with: { rules: { <event type>: [destination, ...] } }`,
//! and the route's `to:` when no rule matches.

use std::collections::BTreeMap;

use hookgate_plugin_sdk::{self as sdk, Error, Message, Router};

struct Plugin;

/// Reads `with:`. `export!`'s `check:` also runs it when the gateway loads
/// the route, so a malformed `rules` fails `hookgate check` at its key (an
/// error that starts with `` `with.KEY` `` is reported there).
fn rules() -> Result<BTreeMap<String, Vec<String>>, Error> {
    match sdk::config::get("rules") {
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            Error::config(format!(
                "`with.rules` must map event types to lists of destinations: {e}"
            ))
        }),
        None => Ok(BTreeMap::new()),
    }
}

impl Router for Plugin {
    fn route(msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
        let rules = rules()?;
        let event = msg.event_type.as_deref().unwrap_or_default();
        Ok(rules.get(event).cloned().unwrap_or(defaults))
    }
}

sdk::export!(Plugin, stages: [route], config: [rules], check: rules);
