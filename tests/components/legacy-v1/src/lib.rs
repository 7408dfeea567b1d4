//! Test component: a plugin built against the frozen WIT
//! `hookgate:plugin@0.1.0` (as every plugin was before 0.2.0), with raw
//! `wit-bindgen` since the SDK now speaks 0.2.0. The gateway must keep
//! loading and running it: it verifies an `x-token` header against
//! `with.secret`, and its transform stamps the message.
wit_bindgen::generate!({
    path: "../../../wit/deps/plugin-0.1.0/plugin.wit",
    world: "hookgate:plugin/plugin@0.1.0",
});

use exports::hookgate::plugin::{metadata, router, transformer, verifier};
use hookgate::plugin::host;
use hookgate::plugin::types::{
    Accepted, Error, Header, Message, Rejection, Request, Stage, Verdict,
};

struct Legacy;

impl metadata::Guest for Legacy {
    fn describe() -> metadata::Info {
        metadata::Info {
            version: "0.1.0-legacy".into(),
            stages: vec![Stage::Verify, Stage::Transform],
        }
    }
}

impl verifier::Guest for Legacy {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let secret =
            host::config_get("secret").ok_or(Error::Config("`with.secret` is required".into()))?;
        let token = req
            .headers
            .iter()
            .find(|h| h.name == "x-token")
            .map(|h| h.value.as_str());
        match token {
            Some(t) if host::constant_time_eq(t.as_bytes(), secret.as_bytes()) => {
                Ok(Verdict::Accept(Accepted {
                    id: None,
                    event_type: Some("legacy".into()),
                    reply: None,
                }))
            }
            _ => Ok(Verdict::Reject(Rejection {
                status: 401,
                reason: "bad x-token".into(),
            })),
        }
    }
}

impl transformer::Guest for Legacy {
    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        msg.headers.push(Header {
            name: "x-legacy".into(),
            value: "0.1.0".into(),
        });
        Ok(vec![msg])
    }
}

impl router::Guest for Legacy {
    fn route(_msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
        Ok(defaults)
    }
}

export!(Legacy);
