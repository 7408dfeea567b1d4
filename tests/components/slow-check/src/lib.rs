//! Test component: a verifier whose `validate-config` sleeps for
//! `with: { check_ms: N }` through WASI's monotonic clock, as a plugin with
//! a heavy start-up (an embedded JS or Python runtime) can take long to
//! check its config. One-off calls at load get their own deadline: a check
//! slower than a request's deadline must pass, one that never ends must
//! fail the load, and neither may hang it.
use hookgate_plugin_sdk::bindings::exports::hookgate::plugin::metadata::{Guest, Info};
use hookgate_plugin_sdk::{ConfigError, Error, Request, Stage, Verdict, Verifier};

struct SlowCheck;

impl Guest for SlowCheck {
    fn describe() -> Info {
        Info {
            version: "0.0.0".into(),
            stages: vec![Stage::Verify],
        }
    }

    fn validate_config(config: String) -> Result<(), Vec<ConfigError>> {
        // `{"check_ms":N}`; a test component needs no JSON parser.
        let ms: u64 = config
            .split_once("\"check_ms\":")
            .map(|(_, rest)| {
                rest.chars()
                    .skip_while(|c| c.is_whitespace())
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        #[expect(
            clippy::disallowed_methods,
            reason = "the point of this component: a slow check, blocked in a WASI poll"
        )]
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(())
    }
}

impl Verifier for SlowCheck {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        Ok(Verdict::accept())
    }
}

hookgate_plugin_sdk::bindings::__export_base!(SlowCheck with_types_in hookgate_plugin_sdk::bindings);
hookgate_plugin_sdk::__export_stage!(verify, SlowCheck);
