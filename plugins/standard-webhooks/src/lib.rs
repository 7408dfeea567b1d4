//! `standard-webhooks`: verifies [Standard Webhooks] signatures, which is
//! also what Svix sends (with `svix-` header names).
//!
//! The sender sets three headers:
//!
//! - `webhook-id`: the message id, unchanged across retries (the dedup key,
//!   and this plugin's message id);
//! - `webhook-timestamp`: Unix seconds;
//! - `webhook-signature`: space-separated `<version>,<base64>` entries over
//!   `"{id}.{timestamp}.{body}"`:
//!   - `v1`: HMAC-SHA256 keyed with the base64 decoding of a `whsec_`
//!     secret;
//!   - `v1a`: an Ed25519 signature, checked with the sender's `whpk_`
//!     public key (the spec's asymmetric scheme: the receiver holds nothing
//!     that could forge a message).
//!
//!   Several entries appear while keys rotate: one match is enough. Entries
//!   of versions no configured key can check are skipped.
//!
//! Svix senders use `svix-id`, `svix-timestamp` and `svix-signature` with the
//! same meaning; they are used when no `webhook-signature` header is present.
//!
//! ```yaml
//! verify:
//!   plugin: standard-webhooks
//!   with:
//!     secret: "${WEBHOOK_SECRET}"   # whsec_<base64>; the prefix is optional
//!     tolerance: 300                # seconds, optional (default 300)
//! # Ed25519 (v1a), two public keys while the sender rotates:
//! verify:
//!   plugin: standard-webhooks
//!   with:
//!     secret: ["${WHPK_NEW}", "${WHPK_OLD}"]   # whpk_<base64 of 32 bytes>
//! ```
//!
//! `with:` keys:
//!
//! - `secret` (required): one key or a list of keys (rotation). Each is a
//!   `whsec_` HMAC secret (checks `v1`; a key without a prefix is taken as
//!   one) or a `whpk_` Ed25519 public key (checks `v1a`); a list may mix
//!   both. A `whsk_` key is the sender's private signing key and is refused:
//!   configure its `whpk_` public key instead.
//! - `tolerance` (default 300): how far, in seconds, `webhook-timestamp` may
//!   be from the time of receipt, either way (the spec's replay rule).
//!
//! The event type is the body's top-level `type`, when the body is JSON and
//! has one (the spec's recommended payload shape).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier,
    crypto::{self, Algorithm},
    signature::{Encoding, Outcome, matches_any, standard_webhooks},
};
use serde::Deserialize;

struct StandardWebhooks;

/// One configured key.
enum Key {
    /// `whsec_`: checks `v1`.
    Hmac(Vec<u8>),
    /// `whpk_`: checks `v1a`.
    Ed25519(VerifyingKey),
}

/// Reads `with:`; also the load-time check (`export!`'s `check:`), so a
/// key that does not parse fails `hookgate check` rather than every request.
fn settings() -> Result<(Vec<Key>, u64), Error> {
    let keys = keys()?;
    let tolerance = sdk::config::get_u64("tolerance", standard_webhooks::DEFAULT_TOLERANCE_SECS)?;
    Ok((keys, tolerance))
}

impl Verifier for StandardWebhooks {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let (keys, tolerance) = settings()?;

        // Svix's own headers, only when the standard ones are absent, so a
        // sender that sets both is checked against the standard set.
        let prefix = if req.header("webhook-signature").is_none()
            && req.header("svix-signature").is_some()
        {
            "svix"
        } else {
            "webhook"
        };
        let id = match verify(&req, prefix, &keys, tolerance) {
            Ok(id) => id,
            Err(reason) => return Ok(Verdict::unauthorized(reason)),
        };

        let mut accepted = Accepted::new().id(id);
        if let Ok(Payload { kind: Some(kind) }) = serde_json::from_slice::<Payload>(&req.body) {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// `with.secret`: one key or a list.
fn keys() -> Result<Vec<Key>, Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Secrets {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    struct With {
        secret: Option<Secrets>,
    }
    let with: With = sdk::config::parse()?;
    let secrets = match with.secret {
        None => return Err(Error::config("`with.secret` is required")),
        Some(Secrets::One(one)) => vec![one],
        Some(Secrets::Many(many)) => many,
    };
    if secrets.is_empty() {
        return Err(Error::config("`with.secret` lists no key"));
    }
    secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_key(s.trim())
                .map_err(|why| Error::config(format!("`with.secret` key {}: {why}", i + 1)))
        })
        .collect()
}

/// One key by its prefix; the error never quotes the key.
fn parse_key(text: &str) -> Result<Key, &'static str> {
    if text.is_empty() {
        return Err("is empty");
    }
    if text.starts_with("whsk_") {
        return Err("is a whsk_ private signing key; configure the sender's whpk_ public key");
    }
    if let Some(public) = text.strip_prefix("whpk_") {
        let bytes = STANDARD
            .decode(public)
            .map_err(|_| "must be whpk_ and the base64 of a 32-byte Ed25519 public key")?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be whpk_ and the base64 of a 32-byte Ed25519 public key")?;
        return VerifyingKey::from_bytes(&bytes)
            .map(Key::Ed25519)
            .map_err(|_| "is not a valid Ed25519 public key");
    }
    standard_webhooks::decode_secret(text)
        .map(Key::Hmac)
        .ok_or("must be a whsec_<base64> signing secret or a whpk_<base64> public key")
}

/// Checks the `{header_prefix}-id`, `-timestamp` and `-signature` headers
/// against the body with every key; returns the id on success, else the
/// rejection reason (naming the header at fault, never a signature). The
/// timestamp is checked after the signature, so a forged timestamp is
/// reported as a mismatch.
fn verify<'r>(
    req: &'r Request,
    header_prefix: &str,
    keys: &[Key],
    tolerance_secs: u64,
) -> Result<&'r str, String> {
    let header = |suffix: &str| {
        let name = format!("{header_prefix}-{suffix}");
        req.header(&name)
            .map(str::trim)
            .ok_or_else(|| format!("missing {name} header"))
    };
    let id = header("id")?;
    let timestamp = header("timestamp")?;
    let signatures = header("signature")?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("{header_prefix}-timestamp is not a Unix timestamp"))?;

    let entries = |version: &str| -> Vec<&str> {
        signatures
            .split(' ')
            .filter_map(|entry| match entry.split_once(',') {
                Some((v, signature)) if v == version => Some(signature),
                _ => None,
            })
            .collect()
    };
    let has_hmac = keys.iter().any(|k| matches!(k, Key::Hmac(_)));
    let has_ed25519 = keys.iter().any(|k| matches!(k, Key::Ed25519(_)));
    let v1 = if has_hmac { entries("v1") } else { Vec::new() };
    let v1a = if has_ed25519 {
        entries("v1a")
    } else {
        Vec::new()
    };
    if v1.is_empty() && v1a.is_empty() {
        let wanted = match (has_hmac, has_ed25519) {
            (true, true) => "v1 or v1a",
            (false, true) => "v1a",
            _ => "v1",
        };
        return Err(format!(
            "{header_prefix}-signature has no {wanted} signature"
        ));
    }

    // The reference libraries sign the timestamp as the integer parsed, not
    // the header's text.
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&req.body);
    if !signed_by_any(&content, keys, &v1, &v1a) {
        return Err(format!("{header_prefix}-signature does not match the body"));
    }
    if !sdk::time::within_tolerance(timestamp, req.received_at_ms, tolerance_secs) {
        return Err(format!(
            "{header_prefix}-timestamp is more than {tolerance_secs} s away from the time of receipt"
        ));
    }
    Ok(id)
}

/// Whether one of the `v1` entries is the HMAC of `content` under one of
/// the `whsec_` keys, or one of the `v1a` entries an Ed25519 signature of it
/// under one of the `whpk_` keys. Every pair is tried even after a match,
/// so the time taken does not tell which key matched.
fn signed_by_any(content: &[u8], keys: &[Key], v1: &[&str], v1a: &[&str]) -> bool {
    let signatures: Vec<Signature> = v1a
        .iter()
        .filter_map(|s| STANDARD.decode(s.trim()).ok())
        .filter_map(|bytes| Signature::from_slice(&bytes).ok())
        .collect();
    let mut matched = false;
    for key in keys {
        match key {
            Key::Hmac(secret) if !v1.is_empty() => {
                let expected = crypto::hmac(Algorithm::Sha256, secret, content);
                matched |=
                    matches_any(&expected, Encoding::Base64, v1.iter().copied()) == Outcome::Match;
            }
            Key::Ed25519(public) => {
                for signature in &signatures {
                    // Strict: refuses weak keys and malleable signatures,
                    // which an honest signer never produces.
                    matched |= public.verify_strict(content, signature).is_ok();
                }
            }
            Key::Hmac(_) => {}
        }
    }
    matched
}

/// The spec's recommended payload shape: only `type` is read.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
}

sdk::export!(StandardWebhooks, stages: [verify], config: [secret, tolerance], check: settings);
