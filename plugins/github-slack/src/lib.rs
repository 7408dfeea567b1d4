//! `github-slack`: turns GitHub webhook events into Slack incoming-webhook
//! messages built with Block Kit.
//!
//! ```yaml
//! transform: [ { plugin: github-slack } ]
//! ```
//!
//! The output is `{"text": <fallback>, "blocks": [...]}`: a `header` with
//! the title, a `context` line with the actor's avatar, a status emoji and
//! who did what, a `section` with the text (issue body, commit list...), a
//! `section` of facts as fields, and an `actions` block with a button to the
//! thing on GitHub. `text` is what notifications and clients without Block
//! Kit show.
//!
//! `with:` keys (all optional):
//!
//! - `emoji`: `true` (default) puts a status emoji (green/red/purple circle)
//!   in the context line; `false` leaves it out.
//!
//! Events are read into a neutral card by `hookgate-github-cards` (shared
//! with `github-teams`), so the same events get the same wording; unknown
//! events become a generic message, never an error. Texts respect Slack's
//! per-field limits (header 150, section 3000, button 75 characters; at most
//! 10 fields).

use hookgate_github_cards::{Card, Tone, shorten};
use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};
use serde_json::{Value, json};

struct GithubSlack;

/// `with.emoji`; also the load-time check (`export!`'s `check:`).
fn with_emoji() -> Result<bool, Error> {
    sdk::config::get_bool("emoji", true)
}

impl Transformer for GithubSlack {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let emoji = with_emoji()?;
        let out = hookgate_github_cards::render_message(&msg, |card, msg| {
            msg.with_json_body(&render(card, emoji))
        })?;
        Ok(vec![out])
    }
}

sdk::export!(GithubSlack, stages: [transform], config: [emoji], check: with_emoji);

/// Escapes the three characters Slack's `mrkdwn` gives meaning to.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack emoji for a tone.
fn emoji(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => ":large_green_circle:",
        Tone::Bad => ":red_circle:",
        Tone::Merged => ":large_purple_circle:",
        Tone::Warning => ":large_yellow_circle:",
        Tone::Neutral => ":large_blue_circle:",
        Tone::Muted => ":white_circle:",
    }
}

/// The Block Kit message for `card`.
fn render(card: &Card, with_emoji: bool) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": shorten(&card.title, 150), "emoji": true },
    })];

    let mut context = Vec::new();
    if let Some(avatar) = &card.avatar {
        context.push(json!({
            "type": "image",
            "image_url": avatar,
            "alt_text": card.actor.as_deref().unwrap_or("avatar"),
        }));
    }
    let line = if with_emoji {
        format!("{} {}", emoji(card.tone), escape(&card.subtitle))
    } else {
        escape(&card.subtitle)
    };
    context.push(json!({ "type": "mrkdwn", "text": shorten(&line, 3000) }));
    blocks.push(json!({ "type": "context", "elements": context }));

    if let Some(text) = &card.text {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": shorten(&escape(text), 3000) },
        }));
    }

    if !card.facts.is_empty() {
        let fields: Vec<Value> = card
            .facts
            .iter()
            .take(10)
            .map(|(name, value)| {
                json!({
                    "type": "mrkdwn",
                    "text": shorten(&format!("*{}*\n{}", escape(name), escape(value)), 2000),
                })
            })
            .collect();
        blocks.push(json!({ "type": "section", "fields": fields }));
    }

    let (label, url) = &card.link;
    blocks.push(json!({
        "type": "actions",
        "elements": [{
            "type": "button",
            "text": { "type": "plain_text", "text": shorten(label, 75), "emoji": true },
            "url": url,
        }],
    }));

    json!({
        "text": escape(&format!("{} — {}", card.title, card.subtitle)),
        "blocks": blocks,
    })
}
