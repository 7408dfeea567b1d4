//! `gitlab`: authenticates GitLab webhooks by secret token, by signing
//! token, or both.
//!
//! - **Secret token** (`with.secret`): GitLab sends the webhook's secret
//!   token verbatim in `X-Gitlab-Token`; it is compared in constant time.
//!   This proves knowledge of a shared password, not the integrity of the
//!   body, and does not stop replays.
//! - **Signing token** (`with.signing_token`, newer GitLab): a
//!   `whsec_<base64>` key. GitLab then signs like [Standard Webhooks]:
//!   `webhook-signature: v1,<base64>` is the HMAC-SHA256 of
//!   `"{webhook-id}.{webhook-timestamp}.{body}"` keyed with the base64 after
//!   `whsec_`, and `webhook-timestamp` must lie within `tolerance` seconds of
//!   the time of receipt.
//!
//! At least one of the two must be configured; when both are, both must
//! pass (a webhook can have both, and checking both costs nothing).
//!
//! ```yaml
//! verify:
//!   plugin: gitlab
//!   with:
//!     secret: "${GITLAB_WEBHOOK_TOKEN}"          # X-Gitlab-Token
//!     signing_token: "${GITLAB_SIGNING_TOKEN}"   # optional, whsec_...
//!     tolerance: 300                             # seconds, signing token only
//! ```
//!
//! The event type is `X-Gitlab-Event` (`Push Hook`, `Merge Request Hook`,
//! ...). The message id is `Idempotency-Key`, which GitLab keeps across
//! retries of one delivery (and which equals `webhook-id` when signing),
//! falling back to `X-Gitlab-Event-UUID` on older GitLab.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, signature::standard_webhooks,
};

struct Gitlab;

/// The route's `with:` block, the signing token decoded.
struct Settings {
    secret: Option<String>,
    signing_key: Option<Vec<u8>>,
    tolerance: u64,
}

/// Reads `with:`; also the load-time check (`export!`'s `check:`), so a
/// missing secret or an undecodable signing token fails `hookgate check`
/// rather than every request.
fn settings() -> Result<Settings, Error> {
    let secret = sdk::config::optional_str("secret")?;
    let signing_token = sdk::config::optional_str("signing_token")?;
    let tolerance = sdk::config::get_u64("tolerance", standard_webhooks::DEFAULT_TOLERANCE_SECS)?;
    if secret.is_none() && signing_token.is_none() {
        return Err(Error::config(
            "`with.secret` is required (or `with.signing_token`, or both)",
        ));
    }
    let signing_key = signing_token
        .as_deref()
        .map(decode_signing_token)
        .transpose()?;
    Ok(Settings {
        secret,
        signing_key,
        tolerance,
    })
}

impl Verifier for Gitlab {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let Settings {
            secret,
            signing_key,
            tolerance,
        } = settings()?;

        if let Some(secret) = &secret {
            let Some(token) = req.header("x-gitlab-token") else {
                return Ok(Verdict::unauthorized("missing X-Gitlab-Token header"));
            };
            if !sdk::crypto::constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                return Ok(Verdict::unauthorized(
                    "X-Gitlab-Token does not match the webhook's secret token",
                ));
            }
        }
        // GitLab signs with the spec's `webhook-` header names.
        if let Some(key) = &signing_key
            && let Err(reason) = standard_webhooks::verify(&req, "webhook", key, tolerance)
        {
            return Ok(Verdict::unauthorized(reason));
        }

        // Both are credentials: the token is the shared secret itself.
        let mut accepted = Accepted::new()
            .consumed("x-gitlab-token")
            .consumed("webhook-signature");
        if let Some(event) = req.header("x-gitlab-event") {
            accepted = accepted.event_type(event);
        }
        if let Some(id) = req
            .header("idempotency-key")
            .or_else(|| req.header("x-gitlab-event-uuid"))
        {
            accepted = accepted.id(id);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The HMAC key of a `whsec_<base64>` signing token.
fn decode_signing_token(token: &str) -> Result<Vec<u8>, Error> {
    standard_webhooks::decode_secret(token)
        .ok_or_else(|| Error::config("`with.signing_token` must be a whsec_<base64> signing token"))
}

sdk::export!(Gitlab, stages: [verify], config: [secret, signing_token, tolerance], check: settings);
