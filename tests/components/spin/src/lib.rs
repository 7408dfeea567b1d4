//! Test component: a verifier that never returns. The gateway must cut it
//! off at the plugin deadline and answer 5xx.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Spin;

impl Verifier for Spin {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let mut n: u64 = req.body.len() as u64;
        loop {
            // black_box keeps the optimiser from proving the loop useless.
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

sdk::export!(Spin, stages: [verify]);
