//! The two Teams renderings of a neutral [`Card`].

use hookgate_github_cards::{Card, Tone};
use serde_json::{Value, json};

/// Which Teams format to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Office 365 connector card (`@type: MessageCard`).
    MessageCard,
    /// Adaptive Card inside a Teams `message` attachment.
    Adaptive,
}

/// Renders `card` in `format`.
pub fn render(card: &Card, format: Format) -> Value {
    match format {
        Format::MessageCard => message_card(card),
        Format::Adaptive => adaptive(card),
    }
}

/// An Office 365 connector card: title, one activity section with the
/// actor, text and facts, and an `OpenUri` button.
fn message_card(card: &Card) -> Value {
    let facts: Vec<Value> = card
        .facts
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut section = json!({
        "activityTitle": card.subtitle,
        "markdown": true,
    });
    if !facts.is_empty() {
        section["facts"] = json!(facts);
    }
    if let Some(avatar) = &card.avatar {
        section["activityImage"] = json!(avatar);
    }
    if let Some(text) = &card.text {
        section["text"] = json!(text);
    }
    let (label, url) = &card.link;
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": card.title,
        "themeColor": card.tone.hex(),
        "title": card.title,
        "sections": [section],
        "potentialAction": [{
            "@type": "OpenUri",
            "name": label,
            "targets": [{ "os": "default", "uri": url }],
        }],
    })
}

/// An Adaptive Card (1.4) wrapped as a Teams message attachment, the format
/// Teams Workflows webhooks accept.
fn adaptive(card: &Card) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": card.title,
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "color": adaptive_color(card.tone),
    })];
    let subtitle = json!({
        "type": "TextBlock",
        "text": card.subtitle,
        "isSubtle": true,
        "spacing": "None",
        "wrap": true,
    });
    match &card.avatar {
        Some(avatar) => body.push(json!({
            "type": "ColumnSet",
            "columns": [
                {
                    "type": "Column",
                    "width": "auto",
                    "items": [{
                        "type": "Image",
                        "url": avatar,
                        "altText": card.actor.as_deref().unwrap_or("avatar"),
                        "size": "Small",
                        "style": "Person",
                    }],
                },
                {
                    "type": "Column",
                    "width": "stretch",
                    "verticalContentAlignment": "Center",
                    "items": [subtitle],
                },
            ],
        })),
        None => body.push(subtitle),
    }
    if let Some(text) = &card.text {
        body.push(json!({ "type": "TextBlock", "text": text, "wrap": true }));
    }
    if !card.facts.is_empty() {
        let facts: Vec<Value> = card
            .facts
            .iter()
            .map(|(title, value)| json!({ "title": title, "value": value }))
            .collect();
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    let (label, url) = &card.link;
    let content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "fallbackText": format!("{}: {}", card.title, card.subtitle),
        "body": body,
        "actions": [{ "type": "Action.OpenUrl", "title": label, "url": url }],
    });
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}

/// Adaptive Cards have named colours, not hex.
fn adaptive_color(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "Good",
        Tone::Bad => "Attention",
        Tone::Warning => "Warning",
        Tone::Merged | Tone::Neutral => "Accent",
        Tone::Muted => "Default",
    }
}
