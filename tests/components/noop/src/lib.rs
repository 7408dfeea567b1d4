//! Test component: every stage doing what the gateway does without a
//! plugin (accept, identity, the route's `to:` list). Measures pure host
//! overhead in benchmarks and stands in as a harmless plugin in tests.
use hookgate_plugin_sdk::{
    self as sdk, Error, Message, Request, Router, Transformer, Verdict, Verifier,
};

struct Noop;

impl Verifier for Noop {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        Ok(Verdict::accept())
    }
}

impl Transformer for Noop {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        Ok(vec![msg])
    }
}

impl Router for Noop {
    fn route(_msg: Message, defaults: Vec<String>) -> Result<Vec<String>, Error> {
        Ok(defaults)
    }
}

sdk::export!(Noop, stages: [verify, transform, route]);
