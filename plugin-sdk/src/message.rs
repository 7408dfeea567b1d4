//! Helpers on pipeline [`Message`]s.

use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Header, Message, find_header};

impl Message {
    /// A JSON message with `content-type: application/json`, no id (the
    /// gateway assigns or keeps one) and no event type.
    pub fn from_json<T: Serialize>(value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::other(format!("cannot serialise message: {e}")))?;
        Ok(Message {
            id: None,
            event_type: None,
            content_type: "application/json".to_owned(),
            headers: vec![Header::new("content-type", "application/json")],
            body,
        })
    }

    /// A new message with the same id and event type as `self` and a JSON
    /// body: what most transforms return.
    pub fn with_json_body<T: Serialize>(&self, value: &T) -> Result<Self, Error> {
        let mut out = Message::from_json(value)?;
        out.id = self.id.clone();
        out.event_type = self.event_type.clone();
        Ok(out)
    }

    /// A new message with the same id and event type as `self`, `body` as
    /// its body and `content_type` as both its content type and its only
    /// header: for transforms whose output is not (only) JSON. The input's
    /// headers are not carried over, as they describe the old body.
    pub fn with_body(&self, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        let content_type = content_type.into();
        Message {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            headers: vec![Header::new("content-type", content_type.clone())],
            content_type,
            body: body.into(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Sets header `name`, replacing every existing value.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
        self.headers.push(Header::new(name, value));
    }

    /// The body parsed as JSON. A body that is not valid JSON for `T` is an
    /// [`Error::InvalidInput`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::invalid_input(format!("message body is not the expected JSON: {e}"))
        })
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}
