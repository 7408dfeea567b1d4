//! Test component: a verifier that panics (a wasm trap). The gateway must
//! answer 5xx for this request only.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Trap;

impl Verifier for Trap {
    fn verify(req: Request) -> Result<Verdict, Error> {
        panic!("test component trap: body was {} bytes", req.body.len());
    }
}

sdk::export!(Trap, stages: [verify]);
