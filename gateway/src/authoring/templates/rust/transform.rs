//! {{name}}: a transform. Turns a JSON event into a chat message:
//! `{"text": "<prefix> <event type>", "data": <the event>}`, with
//! `with: { prefix: ... }` (default `New event:`).

use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};

struct Plugin;

/// Reads `with:`. `export!`'s `check:` also runs it when the gateway loads
/// the route, so a bad value fails `hookgate check`, not every message.
fn prefix() -> Result<String, Error> {
    Ok(sdk::config::optional_str("prefix")?.unwrap_or_else(|| "New event:".into()))
}

impl Transformer for Plugin {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let prefix = prefix()?;
        // A body that is not JSON is the sender's fault: answered 400.
        let data: serde_json::Value = msg.json()?;
        let event = msg.event_type.as_deref().unwrap_or("event");
        let out = serde_json::json!({ "text": format!("{prefix} {event}"), "data": data });
        Ok(vec![msg.with_json_body(&out)?])
    }
}

sdk::export!(Plugin, stages: [transform], config: [prefix], check: prefix);
