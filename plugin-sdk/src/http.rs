//! Outbound HTTP, for plugins that must call their provider back (PayPal
//! IPN verify-back, a JWKS). Off unless the route allows it for this plugin
//! with `http: { allow: [host, ...] }`; the gateway sends through its
//! SSRF-guarded client, never follows redirects, stops at the plugin's
//! deadline and caps the response body.

use crate::bindings::hookgate::plugin::http as wit;

pub use wit::{HttpError, IncomingResponse as Response, OutgoingRequest as Request};

/// Sends `req` and returns the whole response.
pub fn send(req: &Request) -> Result<Response, HttpError> {
    wit::send(req)
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    send(&Request {
        method: "GET".to_owned(),
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    })
}

/// `POST url` with `body` and `content_type`.
pub fn post(
    url: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Result<Response, HttpError> {
    send(&Request {
        method: "POST".to_owned(),
        url: url.to_owned(),
        headers: vec![crate::Header::new("content-type", content_type)],
        body: body.into(),
    })
}
