//! Test component: declares `verify` and `transform` in `describe` but
//! exports only the verifier, as a hand-written or buggy component could
//! (the SDK's `export!` cannot produce this). The gateway must refuse it at
//! load instead of trusting either list.
use hookgate_plugin_sdk::bindings::exports::hookgate::plugin::metadata::{Guest, Info};
use hookgate_plugin_sdk::{ConfigError, Error, Request, Stage, Verdict, Verifier};

struct Liar;

impl Guest for Liar {
    fn describe() -> Info {
        Info {
            version: "0.0.0".into(),
            stages: vec![Stage::Verify, Stage::Transform],
        }
    }

    fn validate_config(_config: String) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }
}

impl Verifier for Liar {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        Ok(Verdict::accept())
    }
}

hookgate_plugin_sdk::bindings::__export_base!(Liar with_types_in hookgate_plugin_sdk::bindings);
hookgate_plugin_sdk::__export_stage!(verify, Liar);
