//! `shopify`: verifies Shopify webhook signatures.
//!
//! Shopify signs every HTTPS delivery with `X-Shopify-Hmac-Sha256: <base64>`,
//! the HMAC-SHA256 of the raw body keyed with the app's client secret (or,
//! for webhooks created in the shop admin, the secret shown there).
//!
//! ```yaml
//! verify: { plugin: shopify, with: { secret: "${SHOPIFY_CLIENT_SECRET}" } }
//! ```
//!
//! The event type is `X-Shopify-Topic` (`orders/create`, ...) and the message
//! id `X-Shopify-Webhook-Id`, which Shopify documents as the per-delivery key
//! to deduplicate on (it is unchanged when a delivery is retried). Shopify
//! signs no timestamp; `X-Shopify-Triggered-At` is not covered by the HMAC,
//! so it is not used for replay checks.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, crypto::Algorithm, signature,
};

struct Shopify;

impl Verifier for Shopify {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::secret()?;

        let Some(mac) = req.header("x-shopify-hmac-sha256") else {
            return Ok(Verdict::unauthorized(
                "missing X-Shopify-Hmac-Sha256 header",
            ));
        };
        if !signature::verify_base64(Algorithm::Sha256, secret.as_bytes(), &req.body, mac) {
            return Ok(Verdict::unauthorized(
                "X-Shopify-Hmac-Sha256 does not match the body",
            ));
        }

        let mut accepted = Accepted::new();
        if let Some(topic) = req.header("x-shopify-topic") {
            accepted = accepted.event_type(topic);
        }
        if let Some(id) = req.header("x-shopify-webhook-id") {
            accepted = accepted.id(id);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

sdk::export!(Shopify, stages: [verify], config: [secret], check: sdk::config::secret);
