//! The bytes both benchmarks send: GitHub `issues` events taken from the
//! vendored octokit examples (`tests/data/github/issues.json`), and their
//! `X-Hub-Signature-256`.
//!
//! The criterion benches (`gateway/benches/`) include this file with
//! `#[path]`, so the micro and the load benchmark measure the same bytes.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Secret of every benchmark route's `github` verifier.
pub const SECRET: &str = "bench-secret";

/// The vendored examples of the `issues` event: a JSON array.
const ISSUES_EXAMPLES: &str = include_str!("../../../tests/data/github/issues.json");

/// Keys dropped to shrink a real event to about 2 KB: the API URLs and
/// ids GitHub repeats on every object. What a card shows (titles, html
/// links, logins, labels, body) stays.
const TRIMMED_KEYS: &[&str] = &["node_id", "gravatar_id", "reactions", "site_admin"];

/// The first `opened` example, whole (about 11.6 KB): a real payload.
pub fn issue_opened() -> Value {
    let examples: Vec<Value> = serde_json::from_str(ISSUES_EXAMPLES).expect("issues.json is JSON");
    examples
        .into_iter()
        .find(|e| e["action"] == "opened")
        .expect("issues.json has an `opened` example")
}

/// [`issue_opened`] without the API URLs and ids: about 2.2 KB, the size of
/// a typical `issues` delivery once its repository is small.
pub fn issue_opened_small() -> Vec<u8> {
    fn trim(v: Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter(|(k, _)| {
                        k == "html_url"
                            || !(k == "url"
                                || k.ends_with("_url")
                                || TRIMMED_KEYS.contains(&k.as_str()))
                    })
                    .map(|(k, v)| (k, trim(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(trim).collect()),
            other => other,
        }
    }
    serde_json::to_vec(&trim(issue_opened())).expect("JSON serialises")
}

/// [`issue_opened`] with its issue body padded so the event is exactly
/// `len` bytes (at least the unpadded size).
#[allow(
    dead_code,
    reason = "used by the criterion benches, not by the load bench"
)]
pub fn issue_opened_padded(len: usize) -> Vec<u8> {
    let mut event = issue_opened();
    let unpadded = serde_json::to_vec(&event).expect("JSON serialises").len();
    let body = event["issue"]["body"].as_str().unwrap_or("").to_owned();
    // ASCII letters need no escaping: each adds exactly one byte.
    let pad = "lorem ipsum ".repeat(len.saturating_sub(unpadded) / 12 + 1);
    event["issue"]["body"] =
        Value::String(format!("{body}{}", &pad[..len.saturating_sub(unpadded)]));
    serde_json::to_vec(&event).expect("JSON serialises")
}

/// `sha256=<hex>`: GitHub's `X-Hub-Signature-256` of `body` under [`SECRET`].
pub fn github_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
