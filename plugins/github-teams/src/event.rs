//! Reading GitHub event payloads into [`Card`]s.
//!
//! Field access goes through [`s`], which yields "" for anything missing,
//! so an unexpected payload degrades into a sparser card, never an error.

use serde_json::Value;

use crate::card::{Card, color, shorten};

/// Longest body text put on a card.
const MAX_TEXT: usize = 400;

/// String at JSON pointer `ptr`, or "".
fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Describes any event; unknown ones get a generic card.
pub fn describe(event: &str, p: &Value) -> Card {
    let repo = s(p, "/repository/full_name");
    let actor = s(p, "/sender/login");
    let action = s(p, "/action");
    let mut card = match event {
        "issues" => issues(p, action),
        _ => generic(event, p, action),
    };
    if !repo.is_empty() {
        card.title = format!("[{repo}] {}", card.title);
        card.facts.insert(0, ("Repository".to_owned(), repo.to_owned()));
    }
    if card.avatar.is_none() {
        let avatar = s(p, "/sender/avatar_url");
        if !avatar.is_empty() {
            card.avatar = Some(avatar.to_owned());
        }
    }
    if card.subtitle.is_empty() {
        card.subtitle = if actor.is_empty() {
            format!("{event} {action}").trim().to_owned()
        } else {
            format!("{actor} {}", if action.is_empty() { event } else { action })
        };
    }
    card
}

fn issues(p: &Value, action: &str) -> Card {
    let number = p.pointer("/issue/number").and_then(Value::as_u64).unwrap_or(0);
    let title = s(p, "/issue/title");
    let actor = s(p, "/sender/login");
    let mut facts = vec![
        ("Issue".to_owned(), format!("#{number}")),
        ("State".to_owned(), s(p, "/issue/state").to_owned()),
    ];
    let labels: Vec<&str> = p
        .pointer("/issue/labels")
        .and_then(Value::as_array)
        .map(|ls| ls.iter().filter_map(|l| l["name"].as_str()).collect())
        .unwrap_or_default();
    if !labels.is_empty() {
        facts.push(("Labels".to_owned(), labels.join(", ")));
    }
    let assignee = s(p, "/assignee/login");
    if !assignee.is_empty() {
        facts.push(("Assignee".to_owned(), assignee.to_owned()));
    }
    let body = s(p, "/issue/body");
    Card {
        title: format!("Issue {action}: #{number} {title}"),
        subtitle: format!("{actor} {action} issue #{number}"),
        text: (!body.is_empty() && action == "opened").then(|| shorten(body, MAX_TEXT)),
        facts,
        link: Some(("View issue".to_owned(), s(p, "/issue/html_url").to_owned())),
        color: match action {
            "opened" | "reopened" => color::OPENED,
            "closed" | "deleted" => color::CLOSED,
            _ => color::NEUTRAL,
        },
        avatar: None,
    }
}

/// Any event we have no specific card for.
fn generic(event: &str, p: &Value, action: &str) -> Card {
    let event = if event.is_empty() { "event" } else { event };
    let link = ["/repository/html_url", "/organization/url", "/sender/html_url"]
        .iter()
        .map(|ptr| s(p, ptr))
        .find(|u| !u.is_empty())
        .map(|u| ("Open on GitHub".to_owned(), u.to_owned()));
    let mut facts = vec![("Event".to_owned(), event.to_owned())];
    if !action.is_empty() {
        facts.push(("Action".to_owned(), action.to_owned()));
    }
    Card {
        title: if action.is_empty() {
            format!("GitHub {event}")
        } else {
            format!("GitHub {event} {action}")
        },
        subtitle: String::new(),
        text: None,
        facts,
        link,
        color: color::NEUTRAL,
        avatar: None,
    }
}
