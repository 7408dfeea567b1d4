//! Constructors for verify outcomes and responses.

use serde::Serialize;

use crate::{Accepted, Header, Rejection, Response, Verdict};

impl Verdict {
    /// Accept the request with nothing learnt from it.
    pub fn accept() -> Self {
        Verdict::Accept(Accepted::new())
    }

    /// Accept with what the verifier learnt (delivery id, event type, reply).
    pub fn accept_with(accepted: Accepted) -> Self {
        Verdict::Accept(accepted)
    }

    /// Reject with 401: missing, malformed or wrong credentials.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Verdict::reject(401, reason)
    }

    /// Reject with 403: credentials fine, request not allowed.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Verdict::reject(403, reason)
    }

    /// Reject with a 4xx status and a reason shown to the caller.
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Verdict::Reject(Rejection {
            status,
            reason: reason.into(),
        })
    }

    /// Answer now with `response` and forward nothing (handshakes).
    pub fn respond(response: Response) -> Self {
        Verdict::Respond(response)
    }
}

impl Accepted {
    /// Nothing learnt: the gateway assigns an id.
    pub fn new() -> Self {
        Accepted {
            id: None,
            event_type: None,
            reply: None,
            consumed_headers: Vec::new(),
        }
    }

    /// Sets the delivery id (the message id used for idempotency).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Marks request header `name` as a credential the verifier used (a
    /// signature or token header): the gateway will not forward, store or
    /// show it.
    pub fn consumed(mut self, name: impl Into<String>) -> Self {
        self.consumed_headers.push(name.into().to_ascii_lowercase());
        self
    }

    /// Answers the provider with `reply` and still forwards the message.
    pub fn reply(mut self, reply: Response) -> Self {
        self.reply = Some(reply);
        self
    }
}

impl Default for Accepted {
    fn default() -> Self {
        Accepted::new()
    }
}

impl Response {
    /// A response with no headers and no body, such as the `200` a `HEAD`
    /// probe needs (Trello checks a callback URL that way).
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response, as handshake echoes need.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: vec![
                Header::new("content-type", "text/plain; charset=utf-8"),
                Header::new("x-content-type-options", "nosniff"),
            ],
            body: body.into().into_bytes(),
        }
    }

    /// An `application/json` response.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Response {
            status,
            headers: vec![Header::new("content-type", "application/json")],
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()),
        }
    }
}
