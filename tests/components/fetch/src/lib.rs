//! Test component: a verify-back verifier, as PayPal IPN needs. It GETs
//! `with.url` through the host's outbound HTTP and accepts when the answer
//! is `200 VERIFIED`; any refusal or failure is a rejection whose reason
//! says what the host answered.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Fetch;

impl Verifier for Fetch {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        let url = sdk::config::require_str("url")?;
        match sdk::http::get(&url) {
            Ok(resp) if resp.status == 200 && resp.body == b"VERIFIED" => Ok(Verdict::accept()),
            Ok(resp) => Ok(Verdict::forbidden(format!(
                "verify-back answered {}",
                resp.status
            ))),
            Err(e) => Ok(Verdict::forbidden(format!("verify-back failed: {e:?}"))),
        }
    }
}

sdk::export!(Fetch, stages: [verify], config: [url]);
