//! The gateway-side view of what plugins consume and produce, decoupled from
//! the generated bindings so the pipeline, store and tests never see them.

use bytes::Bytes;

/// A header as (lowercase name, value).
pub type HeaderPair = (String, String);

/// The raw inbound request handed to a verifier.
#[derive(Clone, Debug)]
pub struct InboundRequest {
    /// Uppercase method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Lowercase header names, in arrival order.
    pub headers: Vec<HeaderPair>,
    /// The exact body bytes.
    pub body: Bytes,
    /// Route id.
    pub route: String,
    /// Arrival time, ms since the Unix epoch.
    pub received_at_ms: u64,
}

/// A full HTTP response chosen by a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<HeaderPair>,
    /// Body.
    pub body: Vec<u8>,
}

/// A message on its way to destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Idempotency id; `None` until the gateway or a plugin assigns one.
    pub id: Option<String>,
    /// Provider event type.
    pub event_type: Option<String>,
    /// Media type of `body`.
    pub content_type: String,
    /// Headers sent to destinations (lowercase names).
    pub headers: Vec<HeaderPair>,
    /// Payload.
    pub body: Bytes,
}

impl Message {
    /// A JSON message (tests and built-in producers).
    pub fn json(event_type: Option<&str>, value: &serde_json::Value) -> Self {
        Message {
            id: None,
            event_type: event_type.map(str::to_owned),
            content_type: "application/json".to_owned(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a verifier decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic; carry on.
    Accept {
        /// Provider delivery id.
        id: Option<String>,
        /// Provider event type.
        event_type: Option<String>,
        /// Reply to send instead of the default 202 (still forwards).
        reply: Option<PluginResponse>,
        /// Request headers the verifier used as credentials (lowercase);
        /// never forwarded. Empty from 0.1 plugins, which cannot say.
        consumed: Vec<String>,
    },
    /// Refused with a 4xx status and reason.
    Reject {
        /// 4xx status.
        status: u16,
        /// Reason shown to the caller.
        reason: String,
    },
    /// Answer now; forward nothing.
    Respond(PluginResponse),
}

/// A failure reported by the guest itself (as opposed to a trap).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Bad `with:` block.
    #[error("plugin configuration error: {0}")]
    Config(String),
    /// Input the plugin cannot handle.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Anything else.
    #[error("plugin error: {0}")]
    Other(String),
}

/// Conversions to and from one WIT version's generated types; the same
/// code for each version, which differ only where noted.
macro_rules! wit_conversions {
    ($wit:path, $header_to:expr, $header_from:expr, $consumed:expr) => {
        use crate::text::{key, without_nul};
        use $wit as wit;

        /// A call's headers, borrowed from the gateway's own: the call
        /// copies them into the guest's memory once, and nothing copies them
        /// on the host side first.
        pub(in crate::plugin) fn headers_to_wit(
            headers: &[HeaderPair],
        ) -> Vec<wit::HeaderParam<'_>> {
            headers
                .iter()
                .map(|(name, value)| wit::HeaderParam {
                    name,
                    value: $header_to(value),
                })
                .collect()
        }

        fn headers_from_wit(headers: Vec<wit::HeaderResult>) -> Vec<HeaderPair> {
            headers
                .into_iter()
                .map(|h| {
                    let mut name = h.name;
                    name.make_ascii_lowercase();
                    (name, $header_from(h.value))
                })
                .collect()
        }

        /// `r` as a verifier's argument, with its headers from
        /// [`headers_to_wit`].
        pub(in crate::plugin) fn request<'a>(
            r: &'a InboundRequest,
            headers: &'a [wit::HeaderParam<'a>],
        ) -> wit::Request<'a> {
            wit::Request {
                method: &r.method,
                path: &r.path,
                query: &r.query,
                headers,
                body: &r.body,
                route: &r.route,
                received_at_ms: r.received_at_ms,
            }
        }

        /// `m` as a transformer's or router's argument, with its headers
        /// from [`headers_to_wit`].
        pub(in crate::plugin) fn message<'a>(
            m: &'a Message,
            headers: &'a [wit::HeaderParam<'a>],
        ) -> wit::MessageParam<'a> {
            wit::MessageParam {
                id: m.id.as_deref(),
                event_type: m.event_type.as_deref(),
                content_type: &m.content_type,
                headers,
                body: &m.body,
            }
        }

        /// A plugin's message as the gateway keeps it: its id and event
        /// type are stored and indexed as text, its content type stored
        /// (see [`crate::text`]).
        pub(in crate::plugin) fn message_from(m: wit::MessageResult) -> Message {
            Message {
                id: m.id.map(key),
                event_type: m.event_type.map(key),
                content_type: without_nul(m.content_type),
                headers: headers_from_wit(m.headers),
                body: Bytes::from(m.body),
            }
        }

        fn response_from(r: wit::Response) -> PluginResponse {
            PluginResponse {
                status: r.status,
                headers: headers_from_wit(r.headers),
                body: r.body,
            }
        }

        pub(in crate::plugin) fn verdict_from(v: wit::Verdict) -> Verdict {
            match v {
                wit::Verdict::Accept(a) => Verdict::Accept {
                    consumed: $consumed(&a),
                    // The dedup key and the event's type, stored and
                    // indexed as text.
                    id: a.id.map(key),
                    event_type: a.event_type.map(key),
                    reply: a.reply.map(response_from),
                },
                wit::Verdict::Reject(r) => Verdict::Reject {
                    status: r.status,
                    reason: r.reason,
                },
                wit::Verdict::Respond(r) => Verdict::Respond(response_from(r)),
            }
        }

        pub(in crate::plugin) fn error_from(e: wit::Error) -> GuestError {
            match e {
                wit::Error::Config(s) => GuestError::Config(s),
                wit::Error::InvalidInput(s) => GuestError::InvalidInput(s),
                wit::Error::Other(s) => GuestError::Other(s),
            }
        }
    };
}

/// `hookgate:plugin@0.1.0`: text header values, no consumed headers.
pub(super) mod v1 {
    use super::*;
    wit_conversions!(
        crate::plugin::bindings::v1::hookgate::plugin::types,
        String::as_str,
        |v: String| v,
        |_: &wit::Accepted| Vec::new()
    );
}

/// `hookgate:plugin@0.2.0`: header values as bytes (the gateway keeps
/// text, so a value that is not UTF-8 on the way back is replaced
/// lossily), and the verifier's consumed headers.
pub(super) mod v2 {
    use super::*;
    wit_conversions!(
        crate::plugin::bindings::v2::hookgate::plugin::types,
        String::as_bytes,
        |v: Vec<u8>| String::from_utf8(v)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        |a: &wit::Accepted| a
            .consumed_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    );
}
