//! `paypal`: verifies PayPal IPN (Instant Payment Notification) messages
//! the one way PayPal offers: by posting each message back to PayPal.
//!
//! An IPN carries no signature. PayPal's listener protocol is: take the
//! form-encoded body exactly as received, prefix it with
//! `cmd=_notify-validate&`, POST it to PayPal's verify-back endpoint, and
//! trust the message only if PayPal answers `VERIFIED` (`INVALID`
//! otherwise). This plugin does that through the gateway's outbound HTTP
//! (the WIT `http` import): the body is sent back byte for byte (field
//! order and character encoding unchanged, as PayPal requires), and the
//! IPN itself is answered `200` with an empty body, so PayPal stops
//! resending it.
//!
//! ```yaml
//! routes:
//!   paypal:
//!     verify:
//!       plugin: paypal
//!       with: { sandbox: false }   # optional
//!       timeout: 10s               # the verify-back is a round trip to PayPal
//!     max_plugin_time: 10s
//!     to: [orders]
//! ```
//!
//! The built-in `paypal` may call `ipnpb.paypal.com` and
//! `ipnpb.sandbox.paypal.com` without an `http:` block on the route (the
//! gateway's default for this plugin); an `http:` block replaces that
//! allow-list, for example for a stand-in in tests.
//!
//! `with:` keys:
//!
//! - `sandbox` (default `false`): verify against PayPal's sandbox
//!   (`https://ipnpb.sandbox.paypal.com/cgi-bin/webscr`, for the IPN
//!   simulator) instead of the live endpoint
//!   (`https://ipnpb.paypal.com/cgi-bin/webscr`).
//! - `url`: the verify-back URL itself, overriding `sandbox` (a stand-in of
//!   PayPal's API). Its host must be on the route's `http.allow`.
//!
//! Outcomes: `VERIFIED` accepts (message id: the IPN's `ipn_track_id`,
//! which PayPal keeps when it resends a message, else `txn_id`; event type:
//! `txn_type`, else `reason_code`/`case_type`). `INVALID` is `403`. A
//! request that is not a `POST` with a body is refused without calling
//! PayPal (`405`, `400`). When PayPal cannot be asked or answers anything
//! else, the IPN is refused with `401` and the reason: PayPal resends an
//! IPN that was not answered `200`, so it is verified again later.
//!
//! The message forwarded is the IPN's form body as received
//! (`application/x-www-form-urlencoded`).

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Header, Request, Response, Verdict, Verifier,
};

/// PayPal's live verify-back endpoint.
const LIVE_URL: &str = "https://ipnpb.paypal.com/cgi-bin/webscr";
/// PayPal's sandbox verify-back endpoint (IPN simulator, sandbox accounts).
const SANDBOX_URL: &str = "https://ipnpb.sandbox.paypal.com/cgi-bin/webscr";
/// What PayPal's listener protocol prefixes to the message.
const VALIDATE_PREFIX: &[u8] = b"cmd=_notify-validate&";

struct PayPal;

/// Where to post the message back, from `with:`; also the load-time check
/// (`export!`'s `check:`).
fn ipn_url() -> Result<String, Error> {
    Ok(match sdk::config::optional_str("url")? {
        Some(url) => url,
        None if sdk::config::get_bool("sandbox", false)? => SANDBOX_URL.to_owned(),
        None => LIVE_URL.to_owned(),
    })
}

impl Verifier for PayPal {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let url = ipn_url()?;
        if req.method != "POST" {
            return Ok(Verdict::reject(405, "PayPal IPN messages are POSTs"));
        }
        if req.body.is_empty() {
            return Ok(Verdict::reject(400, "empty IPN message"));
        }

        let mut body = Vec::with_capacity(VALIDATE_PREFIX.len() + req.body.len());
        body.extend_from_slice(VALIDATE_PREFIX);
        body.extend_from_slice(&req.body);
        let answer = sdk::http::send(&sdk::http::Request {
            method: "POST".to_owned(),
            url,
            headers: vec![Header::new(
                "content-type",
                "application/x-www-form-urlencoded",
            )],
            body,
        });
        let answer = match answer {
            Ok(resp) if resp.status == 200 => resp.body,
            Ok(resp) => {
                return Ok(Verdict::unauthorized(format!(
                    "PayPal's verify-back answered HTTP {}; PayPal will resend the IPN",
                    resp.status
                )));
            }
            Err(e) => {
                return Ok(Verdict::unauthorized(format!(
                    "PayPal's verify-back failed ({e:?}); PayPal will resend the IPN"
                )));
            }
        };
        match answer.trim_ascii() {
            b"VERIFIED" => {}
            b"INVALID" => return Ok(Verdict::forbidden("PayPal answered INVALID")),
            _ => {
                return Ok(Verdict::unauthorized(
                    "PayPal's verify-back answered neither VERIFIED nor INVALID",
                ));
            }
        }

        let mut accepted = Accepted::new().reply(Response::empty(200));
        if let Some(id) = field(&req.body, "ipn_track_id").or_else(|| field(&req.body, "txn_id")) {
            accepted = accepted.id(id);
        }
        if let Some(kind) = field(&req.body, "txn_type")
            .or_else(|| field(&req.body, "reason_code"))
            .or_else(|| field(&req.body, "case_type"))
        {
            accepted = accepted.event_type(kind);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// The decoded value of form field `name`, when present and not empty.
fn field(form: &[u8], name: &str) -> Option<String> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        (k == name.as_bytes())
            .then(|| percent_decode(&v[1..]))
            .filter(|v| !v.is_empty())
    })
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space); bytes
/// that are not UTF-8 (PayPal's default charset is windows-1252) are
/// replaced.
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < v.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(v[i + 1]), hex(v[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

sdk::export!(PayPal, stages: [verify], config: [sandbox, url], check: ipn_url);
