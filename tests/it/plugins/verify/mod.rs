//! First-party verify plugins, run as real wasm through the host.
//!
//! Each provider has its own file: the provider's published test vector
//! where one exists (with its source), a signature computed here with the
//! RustCrypto crates (independently of the plugin, which uses the host's
//! crypto through the SDK), and every way a request can fail: wrong
//! signature, stale timestamp, missing or malformed header, bad `with:`.
//! The providers added for issue 15 (token, pusher, mailchimp, salesforce,
//! zoom, twitter, standard-webhooks v1a) also run each case through the
//! real binary ([`gateway`], [`send`]).

mod bitbucket;
mod dropbox;
mod gitlab;
mod graph;
mod hmac;
mod kaizala;
mod mailchimp;
mod meta;
mod pusher;
mod salesforce;
mod shopify;
mod slack;
mod standard_webhooks;
mod stripe;
mod teams_outgoing;
mod token;
mod trello;
mod twilio;
mod twitter;
mod zendesk;
mod zoom;

use ::hmac::{Hmac, Mac};
use base64::Engine as _;
use hookgate::plugin::{GuestError, PluginError, PluginResponse, Verdict};

use crate::support::gateway::TestGateway;

pub(crate) use crate::support::plugin::{TestPlugin, TestRequest};

/// A fixed arrival time for timestamped schemes (2023-11-14T22:13:20Z), so
/// tests never depend on the wall clock.
const NOW_MS: u64 = 1_700_000_000_000;
/// [`NOW_MS`] in Unix seconds.
const NOW_SECS: i64 = 1_700_000_000;

pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The accepted request's `(id, event_type, reply)`.
#[track_caller]
fn expect_accept(verdict: Verdict) -> (Option<String>, Option<String>, Option<PluginResponse>) {
    match verdict {
        Verdict::Accept {
            id,
            event_type,
            reply,
            ..
        } => (id, event_type, reply),
        other => panic!("expected Accept, got {other:?}"),
    }
}

/// The rejection's reason, after checking its status.
#[track_caller]
fn expect_reject(verdict: Verdict, expected_status: u16) -> String {
    match verdict {
        Verdict::Reject { status, reason } => {
            assert_eq!(status, expected_status, "reason: {reason}");
            reason
        }
        other => panic!("expected Reject({expected_status}), got {other:?}"),
    }
}

/// The immediate answer of a handshake.
#[track_caller]
fn expect_respond(verdict: Verdict) -> PluginResponse {
    match verdict {
        Verdict::Respond(response) => response,
        other => panic!("expected Respond, got {other:?}"),
    }
}

/// The plugin refused its `with:` block.
#[track_caller]
fn expect_config_error(outcome: Result<Verdict, PluginError>) -> String {
    match outcome {
        Err(PluginError::Guest {
            error: GuestError::Config(reason),
            ..
        }) => reason,
        other => panic!("expected a guest config error, got {other:?}"),
    }
}

/// A response header's value (names are lowercase).
fn header<'a>(response: &'a PluginResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Rejection reasons are shown to callers: they must never carry the
/// secret or the expected signature.
#[track_caller]
fn assert_no_leak(reason: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !reason.contains(secret),
            "reason {reason:?} leaks {secret:?}"
        );
    }
}

/// The body of a `text/plain` handshake answer, after checking the headers
/// every echo needs.
#[track_caller]
fn expect_text(response: &PluginResponse, status: u16) -> String {
    assert_eq!(response.status, status);
    let content_type = header(response, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "content-type {content_type:?}"
    );
    assert_eq!(header(response, "x-content-type-options"), Some("nosniff"));
    String::from_utf8(response.body.clone()).expect("text body")
}

/// Through the real binary: a gateway whose route `r` is `route` (YAML
/// lines of the route's body, indented by four spaces), delivering to
/// `sink` when one is given, else to a silent `log` destination.
async fn gateway(
    route: &str,
    sink: Option<&crate::support::receiver::MockReceiver>,
) -> TestGateway {
    let destination = match sink {
        Some(sink) => format!("{{ url: \"{}\", timeout: 5s }}", sink.url("/sink")),
        None => "{ kind: log }".to_owned(),
    };
    TestGateway::spawn(&format!(
        "destinations:\n  out: {destination}\nroutes:\n  r:\n{route}\n    to: [out]\n"
    ))
    .await
}

/// Sends `method /hooks/r?query` with `headers` and `body`; returns the
/// status, the content type and the body.
async fn send(
    gw: &TestGateway,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let url = if query.is_empty() {
        gw.url("/hooks/r")
    } else {
        gw.url(&format!("/hooks/r?{query}"))
    };
    let mut req = gw
        .client()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .body(body.to_vec())
        .send()
        .await
        .expect("request to gateway");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, resp.text().await.unwrap())
}

/// The current Unix time in seconds, for requests through the real binary
/// (which stamps arrival with its own clock).
fn now_secs() -> i64 {
    (hookgate::clock::now_ms() / 1000) as i64
}
