//! Relay: a route's request waits (a bounded time) for the first attempt of
//! one of its deliveries and answers with what the destination replied.
//! This is how a Microsoft Teams outgoing webhook gets its reply from a
//! backend: Teams waits about ten seconds for the answer to a mention.
//!
//! The delivery itself is an ordinary one: stored with the event, claimed,
//! attempted, retried and recorded by the dispatcher like any other. The
//! request only listens for its first attempt: ingress registers a waiter
//! under the claimed delivery's id, the attempt hands a 2xx reply to the
//! waiter, and a waiter that is gone (the request gave up) changes nothing
//! for the delivery. A late, failing or silent backend therefore costs the
//! request its fallback answer and never the message.
//!
//! Deliberately not here: deciding what to relay (the route's `relay`
//! config, read by ingress) and the attempt itself (`attempt.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The most of a relayed reply the gateway reads: Teams refuses messages
/// over about 28 KB, so a larger reply could not be shown anyway.
pub const MAX_RELAY_REPLY: usize = 64 << 10;

/// What a destination answered to a relayed delivery (a 2xx).
#[derive(Debug)]
pub struct RelayReply {
    /// The response's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body, at most [`MAX_RELAY_REPLY`] bytes.
    pub body: Vec<u8>,
}

/// Requests waiting for the first attempt of a delivery, by delivery id.
#[derive(Debug, Default)]
pub struct RelayWaiters {
    waiting: Mutex<HashMap<i64, oneshot::Sender<RelayReply>>>,
    /// Entries in `waiting`, so an attempt on a gateway that relays
    /// nothing never takes the lock.
    len: AtomicUsize,
}

impl RelayWaiters {
    /// Registers interest in delivery `id`'s next attempt. Dropping the
    /// returned [`RelayWait`] withdraws it.
    pub fn register(self: &std::sync::Arc<Self>, id: i64) -> RelayWait {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.insert(id, tx).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        RelayWait {
            id,
            rx,
            waiters: self.clone(),
        }
    }

    /// The waiter for delivery `id`, if a request is listening; the
    /// attempt answers it (or drops it, which tells the request to fall
    /// back at once).
    pub fn take(&self, id: i64) -> Option<oneshot::Sender<RelayReply>> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let tx = waiting.remove(&id)?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(tx)
    }
}

/// A request's wait for a relayed reply.
#[derive(Debug)]
pub struct RelayWait {
    id: i64,
    rx: oneshot::Receiver<RelayReply>,
    waiters: std::sync::Arc<RelayWaiters>,
}

impl RelayWait {
    /// The destination's reply if its first attempt succeeds within
    /// `budget`; `None` when it is late, fails or was not attempted.
    pub async fn reply_within(mut self, budget: Duration) -> Option<RelayReply> {
        tokio::time::timeout(budget, &mut self.rx).await.ok()?.ok()
    }
}

impl Drop for RelayWait {
    fn drop(&mut self) {
        // Withdraw the waiter if the attempt has not taken it yet.
        self.waiters.take(self.id);
    }
}

/// The Bot Framework reply message Teams shows for a backend's answer:
/// plain text becomes `{"type": "message", "text": …}`; a message is sent
/// as it is; an Adaptive Card or a MessageCard becomes the message's
/// attachment. `None` for an empty answer or JSON of another shape, so
/// the request falls back to the verifier's own reply.
pub fn teams_reply(reply: &RelayReply) -> Option<Value> {
    let is_json = reply
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if !is_json {
        let text = String::from_utf8_lossy(&reply.body);
        let text = text.trim();
        return (!text.is_empty()).then(|| json!({ "type": "message", "text": text }));
    }
    let value: Value = serde_json::from_slice(&reply.body).ok()?;
    let content_type = match (
        value.get("type").and_then(Value::as_str),
        value.get("@type").and_then(Value::as_str),
    ) {
        (Some("message"), _) => return Some(value),
        (Some("AdaptiveCard"), _) => "application/vnd.microsoft.card.adaptive",
        (_, Some("MessageCard")) => "application/vnd.microsoft.teams.card.o365connector",
        _ => return None,
    };
    Some(json!({
        "type": "message",
        "attachments": [{ "contentType": content_type, "content": value }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content_type: &str, body: &str) -> RelayReply {
        RelayReply {
            content_type: Some(content_type.to_owned()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn text_becomes_a_message() {
        let r = teams_reply(&reply("text/plain; charset=utf-8", " Deployed. \n")).unwrap();
        assert_eq!(r, json!({ "type": "message", "text": "Deployed." }));
    }

    #[test]
    fn cards_become_attachments_and_messages_pass_as_they_are() {
        let card = r#"{"type":"AdaptiveCard","version":"1.4","body":[]}"#;
        let r = teams_reply(&reply("application/json", card)).unwrap();
        assert_eq!(
            r["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(r["attachments"][0]["content"]["version"], "1.4");
        let legacy = r#"{"@type":"MessageCard","text":"hi"}"#;
        let r = teams_reply(&reply("application/json", legacy)).unwrap();
        assert_eq!(
            r["attachments"][0]["contentType"],
            "application/vnd.microsoft.teams.card.o365connector"
        );
        let message = r#"{"type":"message","text":"as is"}"#;
        let r = teams_reply(&reply("application/json", message)).unwrap();
        assert_eq!(r, json!({ "type": "message", "text": "as is" }));
    }

    #[test]
    fn empty_or_foreign_answers_fall_back() {
        assert!(teams_reply(&reply("text/plain", "")).is_none());
        assert!(teams_reply(&reply("application/json", r#"{"ok":true}"#)).is_none());
        assert!(teams_reply(&reply("application/json", "not json")).is_none());
    }

    #[tokio::test]
    async fn a_withdrawn_wait_leaves_nothing_behind() {
        let waiters = std::sync::Arc::new(RelayWaiters::default());
        let wait = waiters.register(7);
        assert!(wait.reply_within(Duration::from_millis(1)).await.is_none());
        assert!(waiters.take(7).is_none(), "the waiter was withdrawn");
        // An attempt that fails drops the sender: the request hears at once.
        let wait = waiters.register(8);
        drop(waiters.take(8));
        let started = std::time::Instant::now();
        assert!(wait.reply_within(Duration::from_secs(5)).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
