//! Test component: a verifier that allocates until memory runs out. The
//! gateway's memory cap must stop it and answer 5xx.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Hog;

impl Verifier for Hog {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB at a time, touched so it is really committed.
            hoard.push(vec![0xAB; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

sdk::export!(Hog, stages: [verify]);
