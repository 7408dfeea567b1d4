//! `github-teams`: turns GitHub webhook events into Microsoft Teams cards.
//!
//! ```yaml
//! transform: [ { plugin: github-teams, with: { card: message-card } } ]
//! ```
//!
//! `card` is `message-card` (an Office 365 connector card, the default) or
//! `adaptive` (an Adaptive Card wrapped as a Teams message attachment, the
//! format Teams Workflows webhooks accept). Events are first read into a
//! neutral [`Card`] and then rendered, so each event is described once.
//! Unknown events become a generic card rather than an error.

mod card;
mod event;

use hookgate_plugin_sdk::{self as sdk, Error, Message, Plugin};
use serde_json::Value;

use card::Format;

struct GithubTeams;

impl Plugin for GithubTeams {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let format = match sdk::config::get("card").as_deref() {
            None | Some("message-card") => Format::MessageCard,
            Some("adaptive") => Format::Adaptive,
            Some(other) => {
                return Err(Error::config(format!(
                    "`with.card` must be message-card or adaptive, not {other:?}"
                )));
            }
        };
        let payload: Value = msg.json()?;
        let event = msg
            .event_type
            .clone()
            .or_else(|| msg.header("x-github-event").map(str::to_owned))
            .unwrap_or_default();
        let card = event::describe(&event, &payload);
        let mut out = msg.with_json_body(&card.render(format))?;
        if out.event_type.is_none() && !event.is_empty() {
            out.event_type = Some(event);
        }
        Ok(vec![out])
    }
}

sdk::export!(GithubTeams, stages: [transform]);
