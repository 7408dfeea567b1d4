//! {{name}}: a verifier. Accepts a request whose `X-Signature` header is
//! the hex HMAC-SHA256 of the raw body, keyed with `with: { secret: ... }`.

use hookgate_plugin_sdk::{self as sdk, Accepted, Error, Request, Verdict, Verifier};
use sdk::crypto::Algorithm;

struct Plugin;

/// Reads `with:`. `export!`'s `check:` also runs it when the gateway loads
/// the route, so a missing secret fails `hookgate check`, not every request.
fn secret() -> Result<String, Error> {
    sdk::config::require_str("secret")
}

impl Verifier for Plugin {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = secret()?;
        let Some(signature) = req.header("x-signature") else {
            return Ok(Verdict::unauthorized("missing X-Signature header"));
        };
        if !sdk::signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, signature) {
            return Ok(Verdict::unauthorized("X-Signature does not match"));
        }
        // The signature is a credential: the gateway must not forward it.
        let mut accepted = Accepted::new().consumed("x-signature");
        if let Some(event) = req.header("x-event-type") {
            accepted = accepted.event_type(event);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

sdk::export!(Plugin, stages: [verify], config: [secret], check: secret);
