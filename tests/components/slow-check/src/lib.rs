//! Test component: a verifier whose config check (`export!`'s `check:`)
//! sleeps for `with: { check_ms: N }` through WASI's monotonic clock, as a
//! plugin with a heavy start-up (an embedded JS or Python runtime) can take
//! long to check its config. One-off calls at load get their own deadline:
//! a check slower than a request's deadline must pass, one that never ends
//! must fail the load, and neither may hang it.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct SlowCheck;

/// Sleeps for `with.check_ms` (default 0).
fn slow_check() -> Result<(), Error> {
    let ms = sdk::config::get_u64("check_ms", 0)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the point of this component: a slow check, blocked in a WASI poll"
    )]
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(())
}

impl Verifier for SlowCheck {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        Ok(Verdict::accept())
    }
}

sdk::export!(SlowCheck, stages: [verify], config: [check_ms], check: slow_check);
