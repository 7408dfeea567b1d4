//! One delivery to a subscriber as it goes on the wire: the payload (the
//! published envelope plus this subscription's `subscriptionId`, `context`
//! and `properties`) and the headers (the subscription's extra headers,
//! then the ones the gateway owns: content type, `webhook-id`, the
//! signature of its scheme, `kz-callback-token`).
//!
//! Pure: no I/O, the clock is an argument. Delivery calls [`build`] and
//! sends what it returns; the API calls [`check_headers`] and
//! [`check_properties`] before it stores a subscription.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::signing as signature;
use crate::store::Subscription;

/// The payload key that carries a subscription's `properties`, as
/// ASP.NET WebHooks' notifications carry a registration's `Properties`.
pub const PROPERTIES_KEY: &str = "properties";

/// Most extra headers one subscription may set.
pub const MAX_HEADERS: usize = 32;

/// Longest extra header value, in bytes.
pub const MAX_HEADER_VALUE: usize = 4096;

/// Largest `properties` object, serialised, in bytes: it rides along with
/// every delivery.
pub const MAX_PROPERTIES_BYTES: usize = 16 * 1024;

/// Headers a subscription may not set: hop-by-hop and framing headers
/// (they belong to the connection, not the message) and the headers that
/// identify and sign a delivery (a subscriber must not be able to forge
/// or blank them).
const DENIED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "ms-signature",
    "kz-callback-token",
];

/// Prefixes of denied header names: the Standard Webhooks (and Svix)
/// identity and signature headers.
const DENIED_PREFIXES: &[&str] = &["webhook-", "svix-"];

/// Why the header named `name` may not be set, if it may not.
fn denied(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if DENIED_HEADERS.contains(&lower.as_str()) {
        if ["ms-signature", "kz-callback-token"].contains(&lower.as_str()) {
            Some("is set by the gateway (signature or callback token)")
        } else {
            Some("is a hop-by-hop or framing header the gateway controls")
        }
    } else if DENIED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        Some("is a Standard Webhooks identity or signature header the gateway sets")
    } else {
        None
    }
}

/// Checks a subscription's extra headers: valid names and values, not on
/// the deny-list, within the limits. The error is `(field, reason)`, the
/// field being `headers.<name>` (or `headers`).
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    if headers.len() > MAX_HEADERS {
        return Err((
            "headers".into(),
            format!("at most {MAX_HEADERS} headers, not {}", headers.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((field, "is not a valid HTTP header name".into()));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err((field, "is given twice (header names ignore case)".into()));
        }
        if let Some(why) = denied(name) {
            return Err((field, why.into()));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err((field, format!("is longer than {MAX_HEADER_VALUE} bytes")));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err((
                field,
                "is not a valid HTTP header value (visible ASCII, spaces and tabs)".into(),
            ));
        }
    }
    Ok(())
}

/// Checks a subscription's `properties`: within [`MAX_PROPERTIES_BYTES`].
pub fn check_properties(properties: &serde_json::Map<String, Value>) -> Result<(), String> {
    let size = serde_json::to_vec(properties).map_or(usize::MAX, |v| v.len());
    if size > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "is {size} bytes serialised; at most {MAX_PROPERTIES_BYTES}"
        ));
    }
    Ok(())
}

/// The secrets that sign at `now_ms`: the current one, then the previous
/// one while its rotation overlap lasts.
pub fn signing_secrets(sub: &Subscription, now_ms: u64) -> Vec<&str> {
    let mut secrets = vec![sub.secret.as_str()];
    if let (Some(old), Some(until)) = (&sub.previous_secret, sub.previous_secret_expires_ms)
        && now_ms < until
    {
        secrets.push(old.as_str());
    }
    secrets
}

/// The headers and body of one delivery of `envelope` (the published JSON
/// envelope) to `sub`, whose stable delivery id is `id`, signed at `now_ms`.
pub fn build(sub: &Subscription, envelope: &[u8], id: &str, now_ms: u64) -> (HeaderMap, Bytes) {
    let mut body: Value = serde_json::from_slice(envelope).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.insert("subscriptionId".into(), sub.id.clone().into());
        map.insert("context".into(), sub.context.clone().unwrap_or(Value::Null));
        if let Some(props) = &sub.properties {
            map.insert(PROPERTIES_KEY.into(), Value::Object(props.clone()));
        }
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());

    let mut headers = HeaderMap::with_capacity(sub.headers.len() + 5);
    // The subscription's own first: everything after is the gateway's and
    // wins (the API refuses those names anyway; this keeps old rows safe).
    for (name, value) in &sub.headers {
        if denied(name).is_some() {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    // Receivers deduplicate on webhook-id whatever the signature scheme.
    set("webhook-id", id);
    let secrets = signing_secrets(sub, now_ms);
    signature::apply(
        &mut headers,
        sub.signature_scheme,
        &secrets,
        id,
        now_ms,
        &body,
    );
    if let Some(token) = sub
        .callback_token
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(HeaderName::from_static("kz-callback-token"), token);
    }
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SignatureScheme;

    fn sub() -> Subscription {
        Subscription {
            id: "wh_1".into(),
            tenant: "t".into(),
            object_id: "o".into(),
            object_type: "Group".into(),
            event_types: vec!["*".into()],
            callback_url: "https://example.com/cb".into(),
            callback_token: Some("tok".into()),
            context: Some(Value::String("ctx".into())),
            validity_ms: u64::MAX,
            active: true,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            created_at_ms: 0,
            failing_since_ms: None,
            disabled_reason: None,
            headers: BTreeMap::from([("X-Tenant".to_owned(), "blue".to_owned())]),
            properties: Some(serde_json::Map::from_iter([(
                "region".to_owned(),
                "eu".into(),
            )])),
            signature_scheme: SignatureScheme::StandardWebhooks,
            previous_secret: None,
            previous_secret_expires_ms: None,
        }
    }

    #[test]
    fn payload_carries_subscription_id_context_and_properties() {
        let (headers, body) = build(&sub(), br#"{"eventId":"e","data":{}}"#, "e", 1_000);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["subscriptionId"], "wh_1");
        assert_eq!(v["context"], "ctx");
        assert_eq!(v[PROPERTIES_KEY]["region"], "eu");
        assert_eq!(headers["x-tenant"], "blue");
        assert_eq!(headers["kz-callback-token"], "tok");
        assert_eq!(headers["webhook-id"], "e");
        assert!(headers.get("ms-signature").is_none());
    }

    #[test]
    fn both_secrets_sign_during_the_overlap_and_only_the_new_one_after() {
        let mut s = sub();
        s.previous_secret = Some("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
        s.previous_secret_expires_ms = Some(10_000);
        let (during, _) = build(&s, b"{}", "e", 9_999);
        assert_eq!(
            during["webhook-signature"]
                .to_str()
                .unwrap()
                .split(' ')
                .count(),
            2
        );
        let (after, _) = build(&s, b"{}", "e", 10_000);
        assert_eq!(
            after["webhook-signature"]
                .to_str()
                .unwrap()
                .split(' ')
                .count(),
            1
        );

        s.signature_scheme = SignatureScheme::MsSignature;
        let (during, body) = build(&s, b"{}", "e", 9_999);
        let values: Vec<_> = during.get_all("ms-signature").iter().collect();
        assert_eq!(values.len(), 2);
        assert_eq!(values[0], signature::sign_ms(&s.secret, &body).as_str());
        assert!(during.get("webhook-signature").is_none());
    }

    #[test]
    fn denied_headers_are_refused_and_never_sent() {
        for name in [
            "Connection",
            "transfer-encoding",
            "Webhook-Signature",
            "ms-signature",
            "Host",
            "svix-id",
        ] {
            let h = BTreeMap::from([(name.to_owned(), "x".to_owned())]);
            let (field, _) = check_headers(&h).unwrap_err();
            assert_eq!(field, format!("headers.{name}"));
        }
        assert!(check_headers(&BTreeMap::from([("X-Api-Key".to_owned(), "k".to_owned())])).is_ok());
        assert!(check_headers(&BTreeMap::from([("bad name".to_owned(), "k".to_owned())])).is_err());
        assert!(check_headers(&BTreeMap::from([("X-A".to_owned(), "a\nb".to_owned())])).is_err());

        // A stored row with a denied name (older rules) still cannot forge.
        let mut s = sub();
        s.headers.insert("webhook-id".into(), "forged".into());
        let (headers, _) = build(&s, b"{}", "real", 0);
        assert_eq!(headers["webhook-id"], "real");
    }
}
