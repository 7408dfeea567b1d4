//! {{name}}: a transform. Turns a JSON event into a chat message:
//! `{"text": "<prefix> <event type>", "data": <the event>}`, with
//! `with: { prefix: ... }` (default `New event:`).

use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};

struct Plugin;

impl Transformer for Plugin {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let prefix = sdk::config::optional_str("prefix")?.unwrap_or_else(|| "New event:".into());
        // A body that is not JSON is the sender's fault: answered 400.
        let data: serde_json::Value = msg.json()?;
        let event = msg.event_type.as_deref().unwrap_or("event");
        let out = serde_json::json!({ "text": format!("{prefix} {event}"), "data": data });
        Ok(vec![msg.with_json_body(&out)?])
    }
}

sdk::export!(Plugin, stages: [transform], config: [prefix]);
