//! Test component: a verifier that sleeps for 20 s through WASI's monotonic
//! clock (`std::thread::sleep` becomes `subscribe-duration` + `poll`). The
//! guest runs no wasm while it waits, so an epoch deadline alone never fires:
//! the gateway must cut it off with its own wall-clock timer and answer 5xx,
//! and a crowd of these on one route must not starve the others.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Sleep;

impl Verifier for Sleep {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        #[expect(
            clippy::disallowed_methods,
            reason = "the point of this component: a guest blocked in a WASI poll"
        )]
        std::thread::sleep(std::time::Duration::from_secs(20));
        Ok(Verdict::accept())
    }
}

sdk::export!(Sleep, stages: [verify]);
