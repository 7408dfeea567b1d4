//! `github-teams`: turns GitHub webhook events into Microsoft Teams cards.
//!
//! ```yaml
//! transform: [ { plugin: github-teams, with: { card: message-card } } ]
//! ```
//!
//! `with:` keys:
//!
//! - `card`: `message-card` (an Office 365 connector card, the default) or
//!   `adaptive` (an Adaptive Card 1.4 wrapped as a Teams message attachment,
//!   the format Teams Workflows webhooks accept).
//!
//! The event type is the message's (set by the `github` verifier from
//! `X-GitHub-Event`), else the `x-github-event` header. Cards are written
//! for `ping`, `issues`, `issue_comment`, `pull_request`,
//! `pull_request_review`, `push`, `release`, `workflow_run`, `check_suite`,
//! `star` and `fork`; any other event becomes a generic card (title and a
//! link to the repository) rather than an error. Events are read into a
//! neutral card by `hookgate-github-cards` (shared with `github-slack`) and
//! rendered here. Colours follow the action: opened/succeeded green,
//! closed/failed red, merged purple. Long texts are shortened to stay well
//! under Teams' ~28 KB message limit.

mod card;

use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};

use card::Format;

struct GithubTeams;

/// `with.card`; also the load-time check (`export!`'s `check:`), so a
/// misspelt format fails `hookgate check` rather than every webhook.
fn format() -> Result<Format, Error> {
    match sdk::config::get("card").as_deref() {
        None | Some("message-card") => Ok(Format::MessageCard),
        Some("adaptive") => Ok(Format::Adaptive),
        Some(other) => Err(Error::config(format!(
            "`with.card` must be message-card or adaptive, not {other:?}"
        ))),
    }
}

impl Transformer for GithubTeams {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let format = format()?;
        let out = hookgate_github_cards::render_message(&msg, |card, msg| {
            msg.with_json_body(&card::render(card, format))
        })?;
        Ok(vec![out])
    }
}

sdk::export!(GithubTeams, stages: [transform], config: [card], check: format);
