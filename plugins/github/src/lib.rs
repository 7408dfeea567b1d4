//! `github`: verifies GitHub webhook signatures.
//!
//! GitHub signs the raw body with HMAC-SHA256 keyed with the webhook secret
//! and sends `X-Hub-Signature-256: sha256=<hex>`. Older integrations only
//! send the SHA-1 `X-Hub-Signature: sha1=<hex>`; that is accepted only when
//! the route opts in with `allow_sha1: true`, because SHA-1 is weaker.
//!
//! ```yaml
//! verify: { plugin: github, with: { secret: "${GITHUB_SECRET}" } }
//! ```
//!
//! The event type comes from `X-GitHub-Event` and the message id from
//! `X-GitHub-Delivery` (GitHub's per-delivery GUID, the dedup key).
//!
//! This plugin is also the SDK's tutorial: it is the shape every verifier
//! takes.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, crypto::Algorithm, signature,
};

struct Github;

/// The route's `with:` block.
struct Settings {
    secret: String,
    allow_sha1: bool,
}

/// Reads `with:`; also the load-time check (`export!`'s `check:`), so a
/// missing secret fails `hookgate check` rather than every request.
fn settings() -> Result<Settings, Error> {
    Ok(Settings {
        secret: sdk::config::require_str("secret")?,
        allow_sha1: sdk::config::get_bool("allow_sha1", false)?,
    })
}

impl Verifier for Github {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let Settings { secret, allow_sha1 } = settings()?;

        let verdict = if let Some(header) = req.header("x-hub-signature-256") {
            check(
                header,
                "sha256=",
                Algorithm::Sha256,
                &secret,
                &req.body,
                "X-Hub-Signature-256",
            )
        } else if let Some(header) = req.header("x-hub-signature").filter(|_| allow_sha1) {
            check(
                header,
                "sha1=",
                Algorithm::Sha1,
                &secret,
                &req.body,
                "X-Hub-Signature",
            )
        } else if allow_sha1 {
            Err("missing X-Hub-Signature-256 (or X-Hub-Signature) header".to_owned())
        } else {
            Err("missing X-Hub-Signature-256 header".to_owned())
        };

        Ok(match verdict {
            Err(reason) => Verdict::unauthorized(reason),
            Ok(()) => {
                // Tell the gateway which headers were credentials, so it
                // never forwards them.
                let mut accepted = Accepted::new()
                    .consumed("x-hub-signature-256")
                    .consumed("x-hub-signature");
                if let Some(event) = req.header("x-github-event") {
                    accepted = accepted.event_type(event);
                }
                if let Some(delivery) = req.header("x-github-delivery") {
                    accepted = accepted.id(delivery);
                }
                Verdict::accept_with(accepted)
            }
        })
    }
}

/// Checks one `<prefix><hex>` signature header named `name`.
fn check(
    header: &str,
    prefix: &str,
    algorithm: Algorithm,
    secret: &str,
    body: &[u8],
    name: &str,
) -> Result<(), String> {
    let Some(hex) = signature::strip_prefix(header, prefix) else {
        return Err(format!("{name} must look like {prefix}<hex>"));
    };
    if signature::verify_hex(algorithm, secret.as_bytes(), body, hex) {
        Ok(())
    } else {
        Err(format!("{name} does not match the body"))
    }
}

sdk::export!(Github, stages: [verify], config: [secret, allow_sha1], check: settings);
