//! A neutral card and its two Teams renderings.

use serde_json::{Value, json};

/// Which Teams format to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Office 365 connector card (`@type: MessageCard`).
    MessageCard,
    /// Adaptive Card inside a Teams `message` attachment.
    Adaptive,
}

/// What a card says, independent of the format.
#[derive(Debug, Default)]
pub struct Card {
    /// One-line headline, e.g. `[octo/repo] Issue opened: #1 Bug`.
    pub title: String,
    /// Who did what, e.g. `octocat opened issue #1`.
    pub subtitle: String,
    /// Optional longer text (issue body, commit list), already shortened.
    pub text: Option<String>,
    /// Name/value facts.
    pub facts: Vec<(String, String)>,
    /// Button label and link to the thing on GitHub.
    pub link: Option<(String, String)>,
    /// Hex colour without `#`.
    pub color: &'static str,
    /// Avatar of the actor, if any.
    pub avatar: Option<String>,
}

/// Colours by the nature of the action.
pub mod color {
    pub const OPENED: &str = "2EA44F";
    pub const CLOSED: &str = "CB2431";
    pub const MERGED: &str = "6F42C1";
    pub const NEUTRAL: &str = "0366D6";
    pub const WARNING: &str = "DBAB09";
}

impl Card {
    /// Renders the card in `format`.
    pub fn render(&self, format: Format) -> Value {
        match format {
            Format::MessageCard => self.message_card(),
            Format::Adaptive => self.adaptive(),
        }
    }

    fn message_card(&self) -> Value {
        let facts: Vec<Value> = self
            .facts
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        let mut section = json!({
            "activityTitle": self.subtitle,
            "facts": facts,
            "markdown": true,
        });
        if let Some(avatar) = &self.avatar {
            section["activityImage"] = json!(avatar);
        }
        if let Some(text) = &self.text {
            section["text"] = json!(text);
        }
        let mut card = json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": self.title,
            "themeColor": self.color,
            "title": self.title,
            "sections": [section],
        });
        if let Some((name, uri)) = &self.link {
            card["potentialAction"] = json!([{
                "@type": "OpenUri",
                "name": name,
                "targets": [{ "os": "default", "uri": uri }],
            }]);
        }
        card
    }

    fn adaptive(&self) -> Value {
        let mut body = vec![
            json!({
                "type": "TextBlock",
                "text": self.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
                "color": adaptive_color(self.color),
            }),
            json!({
                "type": "TextBlock",
                "text": self.subtitle,
                "isSubtle": true,
                "spacing": "None",
                "wrap": true,
            }),
        ];
        if let Some(text) = &self.text {
            body.push(json!({ "type": "TextBlock", "text": text, "wrap": true }));
        }
        if !self.facts.is_empty() {
            let facts: Vec<Value> = self
                .facts
                .iter()
                .map(|(title, value)| json!({ "title": title, "value": value }))
                .collect();
            body.push(json!({ "type": "FactSet", "facts": facts }));
        }
        let mut content = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        });
        if let Some((title, url)) = &self.link {
            content["actions"] = json!([{ "type": "Action.OpenUrl", "title": title, "url": url }]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": content,
            }],
        })
    }
}

/// Adaptive Cards have named colours, not hex.
fn adaptive_color(hex: &str) -> &'static str {
    match hex {
        color::OPENED => "Good",
        color::CLOSED => "Attention",
        color::WARNING => "Warning",
        color::MERGED => "Accent",
        _ => "Default",
    }
}

/// Shortens `text` to at most `max` characters, on a character boundary,
/// with an ellipsis: Teams rejects messages over ~28 KB.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
