//! Request correlation: every HTTP request gets an `x-request-id` (the
//! client's, when it sent a sane one, otherwise a new `req_…`), carried on
//! the request to the handlers, echoed on the response, and attached to
//! every log line of the request through a span (so the `request_id` a
//! 5xx answer carries finds its log lines). One access line per request is
//! logged at debug under the `hookgate::access` target
//! (`RUST_LOG=info,hookgate::access=debug`): at info it would cost the
//! ingest path a log write per webhook.
//!
//! Repeated lines (a failure every request meets) are thinned to one per
//! kind and key every ten seconds by [`flood`].
//!
//! Deliberately not here: metrics (`metrics.rs`) and what a handler logs.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

pub mod flood;

/// Target of the spans around each stage a webhook goes through
/// (`ingress`, `plugin`, `store.commit`, `delivery.attempt`), at debug
/// level: off in the log at the default level (so they cost nothing
/// there), and what the `otel` feature exports as traces.
pub const STAGE_TARGET: &str = "hookgate::stage";

/// The correlation header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id accepted; longer ones are replaced, so a
/// client cannot flood the logs through it.
const MAX_REQUEST_ID: usize = 128;

/// A client's id is kept when it is short, printable ASCII without spaces.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A new id.
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// The request's id as the middleware set it (a new one when called
/// outside it).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_request_id, str::to_owned)
}

/// The middleware: see the module documentation.
pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("req_"));
    req.headers_mut().insert(X_REQUEST_ID, value.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    resp.headers_mut().insert(X_REQUEST_ID, value);
    span.in_scope(|| {
        tracing::debug!(
            target: "hookgate::access",
            %method,
            path,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        );
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(v).unwrap());
            request_id(&h)
        };
        assert_eq!(with("abc-123"), "abc-123");
        assert!(with("has space").starts_with("req_"));
        assert!(with(&"x".repeat(MAX_REQUEST_ID + 1)).starts_with("req_"));
        assert!(request_id(&HeaderMap::new()).starts_with("req_"));
    }
}
