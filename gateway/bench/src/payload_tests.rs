//! Tests of [`crate::payload`] (kept out of that file, which the criterion
//! benches include with `#[path]` and compile without a test harness).

use serde_json::Value;

use crate::payload::*;

#[test]
fn small_event_is_about_two_kilobytes_of_json() {
    let body = issue_opened_small();
    assert!((2000..2600).contains(&body.len()), "{} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["action"], "opened");
    assert!(v["issue"]["html_url"].is_string());
    assert!(v["issue"].get("url").is_none());
}

#[test]
fn padded_event_has_exactly_the_asked_length() {
    let body = issue_opened_padded(25 * 1024);
    assert_eq!(body.len(), 25 * 1024);
    serde_json::from_slice::<Value>(&body).unwrap();
}

#[test]
fn signature_is_github_style_hex() {
    let sig = github_signature(b"x");
    assert_eq!(sig.len(), "sha256=".len() + 64);
    assert!(sig.starts_with("sha256="));
}
