//! The two Teams renderings of a neutral [`Card`].

use hookgate_github_cards::{Card, Tone};
use serde::Serialize;
use serde_json::{Value, json};

/// Which Teams format to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Office 365 connector card (`@type: MessageCard`).
    MessageCard,
    /// Adaptive Card inside a Teams `message` attachment.
    Adaptive,
}

/// A rendered card, ready to serialise.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Rendered<'a> {
    /// An Office 365 connector card.
    MessageCard(MessageCard<'a>),
    /// The Adaptive Card message.
    Adaptive(Value),
}

/// Renders `card` in `format`.
pub fn render(card: &Card, format: Format) -> Rendered<'_> {
    match format {
        Format::MessageCard => Rendered::MessageCard(message_card(card)),
        Format::Adaptive => Rendered::Adaptive(adaptive(card)),
    }
}

// The connector card as plain structs rather than a `serde_json::Value`:
// no map of owned keys per object, nothing copied. Fields are declared in
// byte order of their JSON names, the order a `Value` (a sorted map)
// serialises them in, so the bytes are what they were.

/// An Office 365 connector card.
#[derive(Serialize)]
pub struct MessageCard<'a> {
    #[serde(rename = "@context")]
    context: &'static str,
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "potentialAction")]
    potential_action: [OpenUri<'a>; 1],
    sections: [Section<'a>; 1],
    summary: &'a str,
    #[serde(rename = "themeColor")]
    theme_color: &'static str,
    title: &'a str,
}

#[derive(Serialize)]
struct Section<'a> {
    #[serde(rename = "activityImage", skip_serializing_if = "Option::is_none")]
    activity_image: Option<&'a str>,
    #[serde(rename = "activityTitle")]
    activity_title: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    facts: Vec<Fact<'a>>,
    markdown: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct Fact<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct OpenUri<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    name: &'a str,
    targets: [Target<'a>; 1],
}

#[derive(Serialize)]
struct Target<'a> {
    os: &'static str,
    uri: &'a str,
}

/// An Office 365 connector card: title, one activity section with the
/// actor, text and facts, and an `OpenUri` button.
fn message_card(card: &Card) -> MessageCard<'_> {
    let (label, url) = &card.link;
    MessageCard {
        context: "https://schema.org/extensions",
        kind: "MessageCard",
        potential_action: [OpenUri {
            kind: "OpenUri",
            name: label,
            targets: [Target {
                os: "default",
                uri: url,
            }],
        }],
        sections: [Section {
            activity_image: card.avatar.as_deref(),
            activity_title: &card.subtitle,
            facts: card
                .facts
                .iter()
                .map(|(name, value)| Fact { name, value })
                .collect(),
            markdown: true,
            text: card.text.as_deref(),
        }],
        summary: &card.title,
        theme_color: card.tone.hex(),
        title: &card.title,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The connector card as it was built before, with `json!`.
    fn as_value(card: &Card) -> Value {
        let facts: Vec<Value> = card
            .facts
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        let mut section = json!({ "activityTitle": card.subtitle, "markdown": true });
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

    fn card(facts: usize, avatar: bool, text: bool) -> Card {
        Card {
            title: "[o/r] Issue opened: #1 \"quoted\" é".into(),
            subtitle: "octocat opened issue #1".into(),
            text: text.then(|| "- `a` b\nline".into()),
            facts: (0..facts)
                .map(|i| (format!("F{i}"), format!("v{i}")))
                .collect(),
            link: (
                "View issue".into(),
                "https://github.com/o/r/issues/1".into(),
            ),
            tone: Tone::Good,
            avatar: avatar.then(|| "https://avatars.example/u/1".into()),
            actor: Some("octocat".into()),
        }
    }

    #[test]
    fn the_connector_card_serialises_to_the_same_bytes_as_before() {
        for (facts, avatar, text) in [(0, false, false), (3, true, true), (1, false, true)] {
            let c = card(facts, avatar, text);
            assert_eq!(
                serde_json::to_string(&render(&c, Format::MessageCard)).unwrap(),
                serde_json::to_string(&as_value(&c)).unwrap()
            );
        }
    }
}
