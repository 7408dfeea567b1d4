//! GitHub webhook events read into a neutral [`Card`], shared by the
//! `github-teams` and `github-slack` plugins so each event is described once
//! and only rendered differently. [`render_message`] is a whole transform
//! but the rendering: it reads the message, describes the event and wraps
//! the renderer's JSON in the outgoing message.
//!
//! Field access goes through small helpers that yield "" or `None` for
//! anything missing, so an unexpected payload degrades into a sparser card,
//! never an error. Every card has a title and a link (falling back to the
//! repository, organisation, sender or github.com itself).
//!
//! Text fields use a tiny common subset of Markdown that Teams, Adaptive
//! Cards and Slack all render: `` `code` `` and `- ` list lines. Renderers
//! escape what their format needs (Slack's `&`, `<`, `>`).

use hookgate_plugin_sdk::{Error, Message};

mod json;
pub use json::Json;

/// Longest body text (issue body, comment, release notes) put on a card.
pub const MAX_TEXT: usize = 400;
/// Longest title.
pub const MAX_TITLE: usize = 150;
/// Longest fact value.
pub const MAX_FACT: usize = 200;
/// Most commits listed for a push.
pub const MAX_COMMITS: usize = 5;

/// The nature of what happened, which renderers turn into a colour or an
/// emoji.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Opened, created, succeeded, approved.
    Good,
    /// Closed, deleted, failed, changes requested.
    Bad,
    /// A merged pull request.
    Merged,
    /// Needs attention without being a failure (forced push, action
    /// required, a star).
    Warning,
    /// Informational.
    Neutral,
    /// Cancelled, skipped, converted to draft.
    Muted,
}

impl Tone {
    /// Hex colour without `#` (GitHub's own palette).
    pub fn hex(self) -> &'static str {
        match self {
            Tone::Good => "2EA44F",
            Tone::Bad => "CB2431",
            Tone::Merged => "6F42C1",
            Tone::Warning => "DBAB09",
            Tone::Neutral => "0366D6",
            Tone::Muted => "6A737D",
        }
    }
}

/// What a card says, independent of the format.
#[derive(Debug, Clone)]
pub struct Card {
    /// One-line headline, e.g. `[octo/repo] Issue opened: #1 Bug`.
    pub title: String,
    /// Who did what, e.g. `octocat opened issue #1`.
    pub subtitle: String,
    /// Optional longer text (issue body, commit list), already shortened.
    pub text: Option<String>,
    /// Name/value facts (no empty values).
    pub facts: Vec<(String, String)>,
    /// Button label and link to the thing on GitHub.
    pub link: (String, String),
    /// Colour/emoji hint.
    pub tone: Tone,
    /// Avatar URL of the actor, if any.
    pub avatar: Option<String>,
    /// The actor's login, if any (alt text for the avatar).
    pub actor: Option<String>,
}

/// Shortens `text` to at most `max` characters, on a character boundary,
/// with an ellipsis. Teams rejects messages over ~28 KB and Slack limits
/// each block's text.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// String at JSON pointer `ptr`, or "".
fn s<'a>(v: &'a Json<'_>, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Json::as_str).unwrap_or("")
}

/// Number at `ptr`.
fn n(v: &Json<'_>, ptr: &str) -> Option<u64> {
    v.pointer(ptr).and_then(Json::as_u64)
}

/// Boolean at `ptr` (missing is false).
fn b(v: &Json<'_>, ptr: &str) -> bool {
    v.pointer(ptr).and_then(Json::as_bool).unwrap_or(false)
}

/// The first non-empty string among `ptrs`.
fn first<'a>(v: &'a Json<'_>, ptrs: &[&str]) -> &'a str {
    ptrs.iter()
        .map(|p| s(v, p))
        .find(|x| !x.is_empty())
        .unwrap_or("")
}

/// `refs/heads/main` → `main`, `refs/tags/v1` → `v1`.
fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

/// First 7 characters of a commit id.
fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// First line of a (commit) message.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// Names of the objects in the array at `ptr` (labels, reviewers...).
fn names(v: &Json<'_>, ptr: &str, key: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get(key).and_then(Json::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `url` if it is an `http(s)` URL, with every character that RFC 3986
/// does not allow in a URI percent-encoded (GitHub's compare links contain
/// `^`, which strict clients and schemas refuse). `None` otherwise.
pub fn web_url(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    Some(out)
}

/// A card being built: facts with empty values are dropped.
struct Builder {
    card: Card,
}

impl Builder {
    fn new(title: String, tone: Tone) -> Self {
        Builder {
            card: Card {
                title,
                subtitle: String::new(),
                text: None,
                facts: Vec::new(),
                link: (String::new(), String::new()),
                tone,
                avatar: None,
                actor: None,
            },
        }
    }

    fn subtitle(mut self, subtitle: String) -> Self {
        self.card.subtitle = subtitle;
        self
    }

    fn fact(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let value = value.trim();
        if !value.is_empty() {
            self.card
                .facts
                .push((name.to_owned(), shorten(value, MAX_FACT)));
        }
        self
    }

    fn text(mut self, text: &str) -> Self {
        let text = text.trim();
        if !text.is_empty() {
            self.card.text = Some(shorten(text, MAX_TEXT));
        }
        self
    }

    fn link(mut self, label: &str, url: &str) -> Self {
        if let Some(url) = web_url(url) {
            self.card.link = (label.to_owned(), url);
        }
        self
    }

    fn build(self) -> Card {
        self.card
    }
}

/// The message a transform returns for the GitHub event in `msg`: what
/// `render` makes of its card (usually `msg.with_json_body(..)` of its
/// rendering), with the event type set when `render` left none.
///
/// The event is the message's event type (which the `github` verifier sets
/// from `X-GitHub-Event`), else the `x-github-event` header, so a route
/// without that verifier still gets proper cards; an output without an
/// event type takes the header's, so later stages can route on it. A body
/// that is not JSON is an [`Error::InvalidInput`].
pub fn render_message(
    msg: &Message,
    render: impl FnOnce(&Card, &Message) -> Result<Message, Error>,
) -> Result<Message, Error> {
    let payload = Json::parse_keys(&msg.body, card_key)
        .map_err(|e| Error::invalid_input(format!("message body is not the expected JSON: {e}")))?;
    let event = msg
        .event_type
        .clone()
        .or_else(|| msg.header("x-github-event").map(str::to_owned))
        .unwrap_or_default();
    let card = describe(&event, &payload);
    let mut out = render(&card, msg)?;
    if out.event_type.is_none() && !event.is_empty() {
        out.event_type = Some(event);
    }
    Ok(out)
}

/// Whether a card reads object members named `key` (at any depth): the
/// payload is parsed with only these kept ([`Json::parse_keys`]), the rest
/// checked and skipped, which is most of a GitHub payload (the
/// repository's and users' API links, counts, dates and flags). Every key
/// of every pointer in this file must be here; the tests check that by
/// reading this file, and that each example payload of each event gives
/// the same card either way.
pub fn card_key(key: &str) -> bool {
    matches!(
        key,
        "action"
            | "actor"
            | "additions"
            | "after"
            | "app"
            | "assignee"
            | "author"
            | "avatar_url"
            | "base"
            | "body"
            | "changed_files"
            | "changes"
            | "check_suite"
            | "comment"
            | "commits"
            | "compare"
            | "conclusion"
            | "created"
            | "deleted"
            | "deletions"
            | "display_title"
            | "draft"
            | "event"
            | "events"
            | "forced"
            | "forkee"
            | "forks_count"
            | "full_name"
            | "head"
            | "head_branch"
            | "head_commit"
            | "head_sha"
            | "hook"
            | "hook_id"
            | "html_url"
            | "id"
            | "issue"
            | "label"
            | "labels"
            | "login"
            | "merged"
            | "message"
            | "milestone"
            | "name"
            | "new_repository"
            | "number"
            | "organization"
            | "path"
            | "prerelease"
            | "pull_request"
            | "pusher"
            | "ref"
            | "release"
            | "repository"
            | "requested_reviewer"
            | "requested_reviewers"
            | "requested_team"
            | "review"
            | "run_number"
            | "sender"
            | "slug"
            | "stargazers_count"
            | "state"
            | "status"
            | "tag_name"
            | "target_commitish"
            | "title"
            | "triggering_actor"
            | "type"
            | "url"
            | "user"
            | "username"
            | "workflow"
            | "workflow_run"
            | "zen"
    )
}

/// Describes any event; unknown ones get a generic card.
pub fn describe(event: &str, p: &Json<'_>) -> Card {
    let action = s(p, "/action");
    let mut card = match event {
        "ping" => ping(p),
        "issues" => issues(p, action),
        "issue_comment" => issue_comment(p, action),
        "pull_request" => pull_request(p, action),
        "pull_request_review" => pull_request_review(p, action),
        "push" => push(p),
        "release" => release(p, action),
        "workflow_run" => workflow_run(p, action),
        "check_suite" => check_suite(p, action),
        "star" => star(p, action),
        "fork" => fork(p),
        _ => generic(event, p, action),
    };
    finish(&mut card, event, p, action);
    card
}

/// What every card gets: repository prefix and fact, actor, avatar, a
/// subtitle and a link even when the event-specific part found none.
fn finish(card: &mut Card, event: &str, p: &Json<'_>, action: &str) {
    let repo = s(p, "/repository/full_name");
    let actor = s(p, "/sender/login");
    if !repo.is_empty() {
        card.title = format!("[{repo}] {}", card.title);
        card.facts
            .insert(0, ("Repository".to_owned(), repo.to_owned()));
    }
    card.title = shorten(card.title.trim(), MAX_TITLE);
    if card.title.is_empty() {
        card.title = "GitHub event".to_owned();
    }
    if !actor.is_empty() {
        card.actor = Some(actor.to_owned());
    }
    if card.avatar.is_none() {
        card.avatar = web_url(s(p, "/sender/avatar_url"));
    }
    if card.subtitle.is_empty() {
        let what = if action.is_empty() { event } else { action };
        card.subtitle = match (actor.is_empty(), what.is_empty()) {
            (false, false) => format!("{actor} {what}"),
            (false, true) => actor.to_owned(),
            (true, _) => format!("{event} {action}").trim().to_owned(),
        };
        if card.subtitle.is_empty() {
            card.subtitle = "GitHub event".to_owned();
        }
    }
    if card.link.1.is_empty() {
        let url = [
            "/repository/html_url",
            "/organization/html_url",
            "/sender/html_url",
        ]
        .iter()
        .find_map(|ptr| web_url(s(p, ptr)));
        card.link = match url {
            Some(url) => ("Open on GitHub".to_owned(), url),
            None => ("Open GitHub".to_owned(), "https://github.com".to_owned()),
        };
    }
    card.facts.truncate(8);
}

fn ping(p: &Json<'_>) -> Card {
    let hook_type = s(p, "/hook/type");
    let events = p
        .pointer("/hook/events")
        .and_then(Json::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let target = first(p, &["/repository/full_name", "/organization/login"]);
    let subtitle = if target.is_empty() {
        "The webhook is set up and GitHub can reach hookgate".to_owned()
    } else {
        format!("The webhook on {target} is set up and GitHub can reach hookgate")
    };
    let zen = s(p, "/zen");
    Builder::new("Webhook connected".to_owned(), Tone::Good)
        .subtitle(subtitle)
        .text(&if zen.is_empty() {
            String::new()
        } else {
            format!("_{zen}_")
        })
        .fact(
            "Hook",
            n(p, "/hook_id").map(|i| i.to_string()).unwrap_or_default(),
        )
        .fact("Type", hook_type)
        .fact("Events", events)
        .link(
            "Open on GitHub",
            first(p, &["/repository/html_url", "/organization/html_url"]),
        )
        .build()
}

/// What `action` did to `noun` ("issue #1", "pull request #2"), as the
/// phrase after the actor: "added label bug to issue #1".
fn what_happened(p: &Json<'_>, action: &str, noun: &str) -> String {
    let or_plain = |detail: &str, phrase: String| {
        if detail.is_empty() {
            format!("{} {noun}", action.replace('_', " "))
        } else {
            phrase
        }
    };
    match action {
        "labeled" => {
            let l = s(p, "/label/name");
            or_plain(l, format!("added label {l} to {noun}"))
        }
        "unlabeled" => {
            let l = s(p, "/label/name");
            or_plain(l, format!("removed label {l} from {noun}"))
        }
        "assigned" => {
            let a = s(p, "/assignee/login");
            or_plain(a, format!("assigned {a} to {noun}"))
        }
        "unassigned" => {
            let a = s(p, "/assignee/login");
            or_plain(a, format!("unassigned {a} from {noun}"))
        }
        "milestoned" => {
            let m = s(p, "/milestone/title");
            or_plain(m, format!("added {noun} to milestone {m}"))
        }
        "demilestoned" => {
            let m = s(p, "/milestone/title");
            or_plain(m, format!("removed {noun} from milestone {m}"))
        }
        "transferred" => {
            let r = s(p, "/changes/new_repository/full_name");
            or_plain(r, format!("transferred {noun} to {r}"))
        }
        "review_requested" => {
            let who = first(p, &["/requested_reviewer/login", "/requested_team/name"]);
            or_plain(who, format!("requested a review from {who} on {noun}"))
        }
        "review_request_removed" => {
            let who = first(p, &["/requested_reviewer/login", "/requested_team/name"]);
            or_plain(
                who,
                format!("removed the review request for {who} on {noun}"),
            )
        }
        "ready_for_review" => format!("marked {noun} ready for review"),
        "converted_to_draft" => format!("converted {noun} to a draft"),
        "synchronize" => format!("pushed new commits to {noun}"),
        "closed" if noun.starts_with("pull request") => format!("closed {noun} without merging"),
        other => format!("{} {noun}", other.replace('_', " ")),
    }
}

fn issues(p: &Json<'_>, action: &str) -> Card {
    let number = n(p, "/issue/number").unwrap_or(0);
    let title = s(p, "/issue/title");
    let actor = s(p, "/sender/login");
    let labels = names(p, "/issue/labels", "name").join(", ");
    Builder::new(
        format!("Issue {action}: #{number} {title}"),
        match action {
            "opened" | "reopened" => Tone::Good,
            "closed" | "deleted" => Tone::Bad,
            "locked" | "pinned" | "transferred" => Tone::Warning,
            _ => Tone::Neutral,
        },
    )
    .subtitle(format!(
        "{actor} {}",
        what_happened(p, action, &format!("issue #{number}"))
    ))
    .text(if action == "opened" {
        s(p, "/issue/body")
    } else {
        ""
    })
    .fact("Issue", format!("#{number}"))
    .fact("State", s(p, "/issue/state"))
    .fact("Labels", labels)
    .fact(
        "Assignee",
        first(p, &["/assignee/login", "/issue/assignee/login"]),
    )
    .fact("Milestone", s(p, "/issue/milestone/title"))
    .link("View issue", s(p, "/issue/html_url"))
    .build()
}

fn issue_comment(p: &Json<'_>, action: &str) -> Card {
    let number = n(p, "/issue/number").unwrap_or(0);
    let title = s(p, "/issue/title");
    let actor = s(p, "/sender/login");
    let kind = if p.pointer("/issue/pull_request").is_some() {
        "pull request"
    } else {
        "issue"
    };
    let verb = match action {
        "created" => "commented on",
        "edited" => "edited a comment on",
        "deleted" => "deleted a comment on",
        other => other,
    };
    Builder::new(
        format!("Comment on {kind} #{number}: {title}"),
        if action == "deleted" {
            Tone::Muted
        } else {
            Tone::Neutral
        },
    )
    .subtitle(format!("{actor} {verb} {kind} #{number}"))
    .text(if action == "deleted" {
        ""
    } else {
        s(p, "/comment/body")
    })
    .fact(
        if kind == "issue" {
            "Issue"
        } else {
            "Pull request"
        },
        format!("#{number}"),
    )
    .fact("State", s(p, "/issue/state"))
    .link(
        "View comment",
        first(p, &["/comment/html_url", "/issue/html_url"]),
    )
    .build()
}

fn pull_request(p: &Json<'_>, action: &str) -> Card {
    let number = n(p, "/pull_request/number")
        .or_else(|| n(p, "/number"))
        .unwrap_or(0);
    let title = s(p, "/pull_request/title");
    let actor = s(p, "/sender/login");
    let merged = action == "closed" && b(p, "/pull_request/merged");
    let shown = if merged { "merged" } else { action };
    let shown = if action == "synchronize" {
        "updated"
    } else {
        shown
    };
    let tone = match action {
        _ if merged => Tone::Merged,
        "opened" | "reopened" | "ready_for_review" => Tone::Good,
        "closed" => Tone::Bad,
        "converted_to_draft" => Tone::Muted,
        _ => Tone::Neutral,
    };
    let noun = format!("pull request #{number}");
    let happened = if merged {
        format!("merged {noun}")
    } else {
        what_happened(p, action, &noun)
    };
    let head = s(p, "/pull_request/head/ref");
    let base = s(p, "/pull_request/base/ref");
    let branches = if head.is_empty() || base.is_empty() {
        String::new()
    } else {
        format!("{base} ← {head}")
    };
    let changes = match (
        n(p, "/pull_request/additions"),
        n(p, "/pull_request/deletions"),
        n(p, "/pull_request/changed_files"),
    ) {
        (Some(a), Some(d), Some(f)) => {
            format!("+{a} −{d} in {f} file{}", if f == 1 { "" } else { "s" })
        }
        _ => String::new(),
    };
    Builder::new(
        format!(
            "Pull request {}: #{number} {title}",
            shown.replace('_', " ")
        ),
        tone,
    )
    .subtitle(format!("{actor} {happened}"))
    .text(if action == "opened" {
        s(p, "/pull_request/body")
    } else {
        ""
    })
    .fact("Pull request", format!("#{number}"))
    .fact("Branches", branches)
    .fact("Author", s(p, "/pull_request/user/login"))
    .fact("Changes", changes)
    .fact(
        "Labels",
        names(p, "/pull_request/labels", "name").join(", "),
    )
    .fact(
        "Reviewers",
        names(p, "/pull_request/requested_reviewers", "login").join(", "),
    )
    .fact(
        "Draft",
        if b(p, "/pull_request/draft") {
            "yes"
        } else {
            ""
        },
    )
    .link("View pull request", s(p, "/pull_request/html_url"))
    .build()
}

fn pull_request_review(p: &Json<'_>, action: &str) -> Card {
    let number = n(p, "/pull_request/number").unwrap_or(0);
    let title = s(p, "/pull_request/title");
    let actor = s(p, "/sender/login");
    let state = s(p, "/review/state").to_ascii_lowercase();
    let (tone, verb) = match (action, state.as_str()) {
        ("dismissed", _) => (Tone::Muted, "dismissed a review on"),
        (_, "approved") => (Tone::Good, "approved"),
        (_, "changes_requested") => (Tone::Bad, "requested changes on"),
        ("edited", _) => (Tone::Neutral, "edited a review on"),
        _ => (Tone::Neutral, "reviewed"),
    };
    Builder::new(format!("Review on pull request #{number}: {title}"), tone)
        .subtitle(format!("{actor} {verb} pull request #{number}"))
        .text(s(p, "/review/body"))
        .fact("Pull request", format!("#{number}"))
        .fact("Review", state.replace('_', " "))
        .fact("Author", s(p, "/pull_request/user/login"))
        .link(
            "View review",
            first(p, &["/review/html_url", "/pull_request/html_url"]),
        )
        .build()
}

fn push(p: &Json<'_>) -> Card {
    let git_ref = s(p, "/ref");
    let is_tag = git_ref.starts_with("refs/tags/");
    let kind = if is_tag { "tag" } else { "branch" };
    let name = short_ref(git_ref);
    let pusher = first(p, &["/pusher/name", "/sender/login"]);
    let commits = p
        .pointer("/commits")
        .and_then(Json::as_array)
        .unwrap_or(&[]);
    let count = commits.len();
    let plural = if count == 1 { "" } else { "s" };
    let (title, subtitle, tone) = if b(p, "/deleted") {
        (
            format!("{kind} {name} deleted"),
            format!("{pusher} deleted {kind} {name}"),
            Tone::Bad,
        )
    } else if b(p, "/created") {
        (
            format!("New {kind} {name}"),
            format!("{pusher} created {kind} {name}"),
            Tone::Good,
        )
    } else if b(p, "/forced") {
        (
            format!("Force-push to {name}"),
            format!("{pusher} force-pushed {count} commit{plural} to {name}"),
            Tone::Warning,
        )
    } else {
        (
            format!("{count} new commit{plural} pushed to {name}"),
            format!("{pusher} pushed {count} commit{plural} to {name}"),
            Tone::Neutral,
        )
    };
    let mut lines: Vec<String> = commits
        .iter()
        .take(MAX_COMMITS)
        .map(|c| {
            let author = first(c, &["/author/username", "/author/name"]);
            let msg = shorten(first_line(s(c, "/message")), 80);
            if author.is_empty() {
                format!("- `{}` {msg}", short_sha(s(c, "/id")))
            } else {
                format!("- `{}` {msg} ({author})", short_sha(s(c, "/id")))
            }
        })
        .collect();
    if count > MAX_COMMITS {
        lines.push(format!("- … and {} more", count - MAX_COMMITS));
    }
    let (label, url) = if b(p, "/deleted") {
        ("View repository", s(p, "/repository/html_url"))
    } else if count > 0 {
        ("View changes", first(p, &["/compare", "/head_commit/url"]))
    } else {
        ("View commit", first(p, &["/head_commit/url", "/compare"]))
    };
    let mut title = title;
    if let Some(first) = title.get(..1) {
        title = first.to_uppercase() + &title[1..];
    }
    Builder::new(title, tone)
        .subtitle(subtitle)
        .text(&lines.join("\n"))
        .fact(if is_tag { "Tag" } else { "Branch" }, name)
        .fact(
            "Commits",
            if count > 0 {
                count.to_string()
            } else {
                String::new()
            },
        )
        .fact("Head", short_sha(s(p, "/after")))
        .link(label, url)
        .build()
}

fn release(p: &Json<'_>, action: &str) -> Card {
    let tag = s(p, "/release/tag_name");
    let name = first(p, &["/release/name", "/release/tag_name"]);
    let actor = s(p, "/sender/login");
    let tone = match action {
        "published" | "released" | "created" => Tone::Good,
        "prereleased" => Tone::Warning,
        "deleted" | "unpublished" => Tone::Bad,
        _ => Tone::Neutral,
    };
    let label = if name == tag || name.is_empty() {
        tag.to_owned()
    } else {
        format!("{name} ({tag})")
    };
    Builder::new(format!("Release {action}: {label}"), tone)
        .subtitle(format!("{actor} {action} release {label}"))
        .text(if action == "deleted" {
            ""
        } else {
            s(p, "/release/body")
        })
        .fact("Tag", tag)
        .fact("Target", s(p, "/release/target_commitish"))
        .fact(
            "Pre-release",
            if b(p, "/release/prerelease") {
                "yes"
            } else {
                ""
            },
        )
        .fact("Draft", if b(p, "/release/draft") { "yes" } else { "" })
        .fact("Author", s(p, "/release/author/login"))
        .link("View release", s(p, "/release/html_url"))
        .build()
}

/// Tone and word for a run's conclusion (workflow runs, check suites).
fn conclusion(status: &str, conclusion: &str) -> (Tone, String) {
    match conclusion {
        "success" => (Tone::Good, "succeeded".into()),
        "failure" => (Tone::Bad, "failed".into()),
        "timed_out" => (Tone::Bad, "timed out".into()),
        "startup_failure" => (Tone::Bad, "failed to start".into()),
        "cancelled" => (Tone::Muted, "was cancelled".into()),
        "skipped" => (Tone::Muted, "was skipped".into()),
        "neutral" => (Tone::Neutral, "finished".into()),
        "stale" => (Tone::Muted, "went stale".into()),
        "action_required" => (Tone::Warning, "needs action".into()),
        "" => match status {
            "" => (Tone::Neutral, "was requested".into()),
            "in_progress" => (Tone::Neutral, "is in progress".into()),
            other => (Tone::Neutral, format!("is {}", other.replace('_', " "))),
        },
        other => (Tone::Neutral, other.replace('_', " ")),
    }
}

fn workflow_run(p: &Json<'_>, action: &str) -> Card {
    let name = first(
        p,
        &["/workflow_run/name", "/workflow/name", "/workflow_run/path"],
    );
    let name = if name.is_empty() { "Workflow" } else { name };
    let branch = s(p, "/workflow_run/head_branch");
    let status = s(p, "/workflow_run/status");
    let (tone, word) = match action {
        "completed" => conclusion(status, s(p, "/workflow_run/conclusion")),
        "requested" => (Tone::Neutral, "was requested".to_owned()),
        "in_progress" => (Tone::Neutral, "is in progress".to_owned()),
        other => (Tone::Neutral, other.replace('_', " ")),
    };
    let on = if branch.is_empty() {
        String::new()
    } else {
        format!(" on {branch}")
    };
    let run = n(p, "/workflow_run/run_number")
        .map(|r| format!("#{r}"))
        .unwrap_or_default();
    let actor = first(
        p,
        &[
            "/workflow_run/triggering_actor/login",
            "/workflow_run/actor/login",
            "/sender/login",
        ],
    );
    Builder::new(format!("Workflow {name} {word}{on}"), tone)
        .subtitle(
            format!(
                "Run {run} of {name}, triggered by {actor} ({})",
                s(p, "/workflow_run/event")
            )
            .replace("  ", " ")
            .replace(" ()", ""),
        )
        .text(s(p, "/workflow_run/display_title"))
        .fact("Workflow", name)
        .fact("Run", run)
        .fact("Branch", branch)
        .fact("Commit", short_sha(s(p, "/workflow_run/head_sha")))
        .fact("Event", s(p, "/workflow_run/event"))
        .fact(
            "Result",
            word.trim_start_matches("is ").trim_start_matches("was "),
        )
        .link("View run", s(p, "/workflow_run/html_url"))
        .build()
}

fn check_suite(p: &Json<'_>, action: &str) -> Card {
    let app = first(p, &["/check_suite/app/name", "/check_suite/app/slug"]);
    let app = if app.is_empty() { "Checks" } else { app };
    let branch = s(p, "/check_suite/head_branch");
    let sha = s(p, "/check_suite/head_sha");
    let (tone, word) = match action {
        "completed" => conclusion(s(p, "/check_suite/status"), s(p, "/check_suite/conclusion")),
        "requested" => (Tone::Neutral, "was requested".to_owned()),
        "rerequested" => (Tone::Neutral, "was re-requested".to_owned()),
        other => (Tone::Neutral, other.replace('_', " ")),
    };
    let on = if branch.is_empty() {
        String::new()
    } else {
        format!(" on {branch}")
    };
    let repo_url = s(p, "/repository/html_url");
    let url = if repo_url.is_empty() || sha.is_empty() {
        repo_url.to_owned()
    } else {
        format!("{repo_url}/commit/{sha}/checks")
    };
    Builder::new(format!("Check suite {app} {word}{on}"), tone)
        .subtitle(if sha.is_empty() {
            format!("{app} {word}")
        } else {
            format!("{app} {word} for commit {}", short_sha(sha))
        })
        .text(first_line(s(p, "/check_suite/head_commit/message")))
        .fact("App", app)
        .fact("Branch", branch)
        .fact("Commit", short_sha(sha))
        .fact(
            "Result",
            word.trim_start_matches("is ").trim_start_matches("was "),
        )
        .link("View checks", &url)
        .build()
}

fn star(p: &Json<'_>, action: &str) -> Card {
    let actor = s(p, "/sender/login");
    let repo = s(p, "/repository/full_name");
    let (title, verb, tone) = if action == "deleted" {
        ("Star removed", "unstarred", Tone::Muted)
    } else {
        ("New star", "starred", Tone::Warning)
    };
    Builder::new(title.to_owned(), tone)
        .subtitle(format!("{actor} {verb} {repo}").trim().to_owned())
        .fact(
            "Stars",
            n(p, "/repository/stargazers_count")
                .map(|c| c.to_string())
                .unwrap_or_default(),
        )
        .link("View repository", s(p, "/repository/html_url"))
        .build()
}

fn fork(p: &Json<'_>) -> Card {
    let actor = s(p, "/sender/login");
    let forkee = s(p, "/forkee/full_name");
    Builder::new(
        format!("Forked to {forkee}").trim().to_owned(),
        Tone::Neutral,
    )
    .subtitle(format!(
        "{actor} forked {} to {forkee}",
        s(p, "/repository/full_name")
    ))
    .fact("Fork", forkee)
    .fact(
        "Forks",
        n(p, "/repository/forks_count")
            .map(|c| c.to_string())
            .unwrap_or_default(),
    )
    .link(
        "View fork",
        first(p, &["/forkee/html_url", "/repository/html_url"]),
    )
    .build()
}

/// Any event we have no specific card for.
fn generic(event: &str, _p: &Json<'_>, action: &str) -> Card {
    let event = if event.is_empty() { "event" } else { event };
    let title = if action.is_empty() {
        format!("GitHub {event}")
    } else {
        format!("GitHub {event} {action}")
    };
    Builder::new(title.replace('_', " "), Tone::Neutral)
        .fact("Event", event)
        .fact("Action", action)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// `describe` of a payload written with `json!`.
    fn describe_value(event: &str, p: &Value) -> Card {
        let text = p.to_string();
        describe(event, &Json::parse(text.as_bytes()).expect("json"))
    }

    /// Every key of every JSON pointer this file reads (string literals
    /// that start with `/`, and the member names `names` picks), from the
    /// source itself, so a card that starts reading a new key cannot
    /// forget [`card_key`].
    #[test]
    fn card_key_keeps_every_key_the_cards_read() {
        let source = include_str!("lib.rs");
        let code = &source[..source.find("#[cfg(test)]").expect("tests at the end")];
        let mut checked = 0;
        for (i, _) in code.match_indices("\"/") {
            let rest = &code[i + 1..];
            let literal = &rest[..rest.find('"').expect("closed literal")];
            for key in literal.split('/').filter(|k| !k.is_empty()) {
                if key.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                assert!(
                    card_key(key),
                    "`{key}` (in {literal:?}) is read but not kept"
                );
                checked += 1;
            }
        }
        for call in code.split("names(p, ").skip(1) {
            let key = call.split('"').nth(3).expect("names(p, \"/ptr\", \"key\")");
            assert!(card_key(key), "`{key}` is read by names() but not kept");
            checked += 1;
        }
        assert!(
            checked > 100,
            "found only {checked} keys: the scan is broken"
        );
    }

    /// GitHub's example payloads of every event the cards describe
    /// (`tests/data/github/`): the card of each is the same whether the
    /// payload was parsed whole or with only [`card_key`]'s keys.
    #[test]
    fn cards_of_every_example_payload_are_the_same_with_only_card_keys() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/github");
        let mut cards = 0;
        for entry in std::fs::read_dir(dir).expect("example payloads") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let event = path.file_stem().and_then(|s| s.to_str()).expect("name");
            let examples: Vec<Value> =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("a JSON array");
            for example in examples {
                let text = example.to_string();
                let whole = describe(event, &Json::parse(text.as_bytes()).expect("json"));
                let kept = describe(
                    event,
                    &Json::parse_keys(text.as_bytes(), card_key).expect("json"),
                );
                assert_eq!(format!("{kept:?}"), format!("{whole:?}"), "{event}: {text}");
                cards += 1;
            }
        }
        assert!(cards >= 11, "only {cards} example payloads found in {dir}");
    }

    #[test]
    fn links_are_http_only_and_percent_encoded() {
        assert_eq!(
            web_url("https://github.com/o/r/compare/abc^...def").as_deref(),
            Some("https://github.com/o/r/compare/abc%5E...def")
        );
        assert_eq!(web_url("https://x/é").as_deref(), Some("https://x/%C3%A9"));
        assert_eq!(web_url("javascript:alert(1)"), None);
        assert_eq!(web_url(""), None);
    }

    #[test]
    fn shorten_counts_characters_not_bytes() {
        assert_eq!(shorten("héllo", 5), "héllo");
        assert_eq!(shorten("héllo wörld", 5), "héll…");
    }

    #[test]
    fn merged_pull_request_is_purple() {
        let p = json!({"action": "closed", "pull_request": {"number": 3, "title": "T", "merged": true, "html_url": "https://github.com/o/r/pull/3"}, "repository": {"full_name": "o/r"}, "sender": {"login": "me"}});
        let c = describe_value("pull_request", &p);
        assert_eq!(c.tone, Tone::Merged);
        assert_eq!(c.title, "[o/r] Pull request merged: #3 T");
        assert_eq!(c.subtitle, "me merged pull request #3");
        assert_eq!(c.link.1, "https://github.com/o/r/pull/3");
    }

    #[test]
    fn unknown_event_without_urls_still_has_title_and_link() {
        let c = describe_value("", &json!({}));
        assert!(!c.title.is_empty());
        assert_eq!(c.link.1, "https://github.com");
        assert!(!c.subtitle.is_empty());
    }

    #[test]
    fn failed_workflow_is_red() {
        let p = json!({"action": "completed", "workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main", "html_url": "https://x/run"}});
        let c = describe_value("workflow_run", &p);
        assert_eq!(c.tone, Tone::Bad);
        assert_eq!(c.title, "Workflow CI failed on main");
    }

    #[test]
    fn push_lists_commits_and_counts_the_rest() {
        let commits: Vec<_> = (0..7)
            .map(|i| json!({"id": format!("abcdef{i}123"), "message": format!("fix {i}\n\nbody"), "author": {"username": "dev"}}))
            .collect();
        let p = json!({"ref": "refs/heads/main", "commits": commits, "compare": "https://x/compare", "pusher": {"name": "dev"}});
        let c = describe_value("push", &p);
        assert_eq!(c.title, "7 new commits pushed to main");
        let text = c.text.unwrap();
        assert!(text.starts_with("- `abcdef0` fix 0 (dev)"), "{text}");
        assert!(text.ends_with("- … and 2 more"), "{text}");
    }
}
