//! `filter`: a transform that passes on the messages that match and drops
//! the rest (a dropped message is answered as accepted but delivered
//! nowhere).
//!
//! ```yaml
//! transform:
//!   - plugin: filter
//!     with: { event: [issues, "pull_request*"], pointer: /action, equals: [opened, closed] }
//! ```
//!
//! `with:` keys (the same conditions as a `by-event` rule; all that are
//! given must match, and a block with none keeps everything):
//!
//! - `event`: a glob or list of globs for the message's event type; a
//!   message with no event type does not match;
//! - `header`: `{name, value}` (or a list of them): some value of header
//!   `name` (case-insensitive) matches the glob `value`; without `value` the
//!   header only has to be present;
//! - `pointer`: a JSON pointer into the body (`/action`); alone, it matches
//!   when the body is JSON and has a non-null value there;
//! - `equals`: with `pointer`, a glob or list of globs the value must match
//!   (strings as they are, numbers and booleans as JSON text, an array when
//!   any element matches);
//! - `invert` (default `false`): keep the messages that do *not* match.
//!
//! Globs: `*` any run of characters, `?` one character, `\` escapes; all
//! else is literal and case-sensitive. Unknown keys are config errors.

use hookgate_match::{Conditions, Subject};
use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};
use serde_json::Value;

struct Filter;

fn config() -> Result<(Conditions, bool), Error> {
    let raw: Value = sdk::config::parse()?;
    let Value::Object(mut map) = raw else {
        return Err(Error::config("`with:` must be a mapping"));
    };
    let invert = match map.remove("invert") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(Error::config(format!(
                "`with.invert` must be true or false, not {other}"
            )));
        }
    };
    let conditions = Conditions::from_value(Value::Object(map))
        .map_err(|e| Error::config(format!("`with:` {e}")))?;
    Ok((conditions, invert))
}

impl Transformer for Filter {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let (conditions, invert) = config()?;
        let matched = conditions.matches(&Subject::from_message(&msg));
        if matched != invert {
            Ok(vec![msg])
        } else {
            sdk::log::debug("message filtered out");
            Ok(Vec::new())
        }
    }
}

sdk::export!(Filter, stages: [transform], check: config);
