// The body of the stamp test components, shared by stamp-a and stamp-b:
// each crate defines `STAMP` and includes this file, so the two builds
// differ in that constant and nothing else.

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Message, Request, Transformer, Verdict, Verifier, Response, crypto::Algorithm,
    signature,
};

struct Stamp;

impl Verifier for Stamp {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret = sdk::config::require_str("secret")?;
        let Some(sig) = req
            .header("x-hub-signature-256")
            .and_then(|h| signature::strip_prefix(h, "sha256="))
        else {
            return Ok(Verdict::unauthorized("missing X-Hub-Signature-256"));
        };
        if !signature::verify_hex(Algorithm::Sha256, secret.as_bytes(), &req.body, sig) {
            return Ok(Verdict::unauthorized("X-Hub-Signature-256 does not match"));
        }
        Ok(Verdict::accept_with(
            Accepted::new()
                .event_type(format!("stamp-{STAMP}"))
                .reply(Response::text(200, format!("stamp-{STAMP}"))),
        ))
    }
}

impl Transformer for Stamp {
    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        let verified_by = msg.event_type.clone().unwrap_or_else(|| "none".into());
        msg.set_header("x-verify-stamp", verified_by);
        msg.set_header("x-transform-stamp", STAMP);
        if let Some(tag) = sdk::config::get("tag") {
            msg.set_header("x-tag", tag);
        }
        Ok(vec![msg])
    }
}

sdk::export!(Stamp, stages: [verify, transform]);
