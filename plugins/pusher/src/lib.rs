//! `pusher`: verifies [Pusher](https://pusher.com/docs/channels/server_api/webhooks/)
//! webhooks.
//!
//! Pusher sends `X-Pusher-Key: <app key>` and `X-Pusher-Signature: <hex>`,
//! the HMAC-SHA256 of the raw body keyed with that app's secret. The key
//! chooses the secret, so one route can take the webhooks of several apps
//! (or of one app while its secret is rotated under a new key).
//!
//! ```yaml
//! verify:
//!   plugin: pusher
//!   with:
//!     keys:                                   # app key → app secret
//!       "${PUSHER_KEY}": "${PUSHER_SECRET}"
//! ```
//!
//! `with:` keys:
//!
//! - `keys` (required): a map from app key to app secret.
//!
//! The body is `{"time_ms": …, "events": [{"name": …, "channel": …}, …]}`;
//! when every event has the same `name`, that is the event type. Pusher
//! sends no delivery id, and its signature covers no header timestamp (the
//! `time_ms` it signs is in the body, for the receiver to judge).

use std::collections::BTreeMap;

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, crypto::Algorithm, signature,
};
use serde_json::Value;

struct Pusher;

impl Verifier for Pusher {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let keys = keys()?;
        if let Err(reason) = check(&req, &keys) {
            return Ok(Verdict::unauthorized(reason));
        }
        let mut accepted = Accepted::new();
        if let Some(name) = event_type(&req.body) {
            accepted = accepted.event_type(name);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// `with.keys`: app key → secret, none empty.
fn keys() -> Result<BTreeMap<String, String>, Error> {
    let raw = sdk::config::get("keys").ok_or_else(|| Error::config("`with.keys` is required"))?;
    let keys: BTreeMap<String, String> = serde_json::from_str(&raw)
        .map_err(|_| Error::config("`with.keys` must map each app key to its secret"))?;
    if keys.is_empty() {
        return Err(Error::config("`with.keys` names no app key"));
    }
    if let Some((key, _)) = keys.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
        return Err(Error::config(format!(
            "`with.keys` has an empty app key or secret (key {key:?})"
        )));
    }
    Ok(keys)
}

/// Checks the key and the signature; the error is the rejection reason.
fn check(req: &Request, keys: &BTreeMap<String, String>) -> Result<(), String> {
    let key = req
        .header("x-pusher-key")
        .map(str::trim)
        .ok_or("missing X-Pusher-Key header")?;
    let Some(secret) = keys.get(key) else {
        return Err("X-Pusher-Key is not a configured app key".to_owned());
    };
    let signature = req
        .header("x-pusher-signature")
        .ok_or("missing X-Pusher-Signature header")?;
    if signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, signature) {
        Ok(())
    } else {
        Err("X-Pusher-Signature does not match the body".to_owned())
    }
}

/// The events' common name, if they share one.
fn event_type(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let mut names = body
        .get("events")?
        .as_array()?
        .iter()
        .map(|e| e.get("name")?.as_str());
    let first = names.next()??;
    names.all(|n| n == Some(first)).then(|| first.to_owned())
}

sdk::export!(Pusher, stages: [verify], config: [keys], check: keys);
