//! `token`: authenticates a request by a shared secret it carries, for the
//! senders that sign nothing and put a secret in the URL or in a header.
//!
//! That is how ASP.NET WebHooks received WordPress, Azure Monitor alerts,
//! Kudu and MyGet (`?code=<secret>` on the webhook URL), and how Azure DevOps
//! service hooks authenticate (HTTP Basic credentials, or a custom header,
//! set on the hook).
//!
//! ```yaml
//! # WordPress, Azure Monitor alerts, Kudu, MyGet: https://gw/hooks/NAME?code=<secret>
//! verify: { plugin: token, with: { secret: "${CODE}" } }
//! # another query parameter
//! verify: { plugin: token, with: { secret: "${CODE}", param: key } }
//! # a header
//! verify: { plugin: token, with: { secret: "${TOKEN}", header: x-hook-token } }
//! # HTTP Basic (Azure DevOps "Basic authentication username/password")
//! verify: { plugin: token, with: { secret: "${PASSWORD}", basic: true, username: devops } }
//! ```
//!
//! `with:` keys:
//!
//! - `secret` (required): the shared secret. Use a long random value
//!   (ASP.NET required 32 to 128 characters for `?code=`): it is the only
//!   credential these senders have.
//! - `param` (default `code`): the query parameter that carries the secret.
//! - `header`: take the secret from this request header instead.
//! - `basic` (default `false`): take it from `Authorization: Basic`, as the
//!   password.
//! - `username` (only with `basic: true`, optional): the user name must be
//!   this too.
//!
//! Only one place is checked: `header`, `basic` and `param` exclude each
//! other (naming two is a config error, rather than guessing which wins).
//! Every comparison is constant-time. A missing or wrong secret is `401`.
//! `Authorization` is never forwarded to destinations; the query string
//! never reaches them either, since messages carry no URL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier, crypto};

/// ASP.NET WebHooks' query parameter, which these senders are set up with.
const DEFAULT_PARAM: &str = "code";

struct Token;

/// Where the secret is looked for.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Query(String),
    Header(String),
    Basic { username: Option<String> },
}

/// Reads `with:` (the secret and where it is sent); also the load-time
/// check (`export!`'s `check:`), so a `with:` that names two places fails
/// `hookgate check` rather than every request.
fn settings() -> Result<(String, Place), Error> {
    let secret = sdk::config::require_str("secret")?;
    let place = place(
        sdk::config::optional_str("param")?,
        sdk::config::optional_str("header")?,
        sdk::config::get_bool("basic", false)?,
        sdk::config::optional_str("username")?,
    )?;
    Ok((secret, place))
}

impl Verifier for Token {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let (secret, place) = settings()?;
        Ok(match check(&req, &place, &secret) {
            Ok(()) => Verdict::accept(),
            Err(reason) => Verdict::unauthorized(reason),
        })
    }
}

/// The one place the `with:` block names.
fn place(
    param: Option<String>,
    header: Option<String>,
    basic: bool,
    username: Option<String>,
) -> Result<Place, Error> {
    if username.is_some() && !basic {
        return Err(Error::config("`with.username` needs `basic: true`"));
    }
    match (param, header, basic) {
        (None, None, false) => Ok(Place::Query(DEFAULT_PARAM.to_owned())),
        (Some(param), None, false) => Ok(Place::Query(param)),
        (None, Some(header), false) => Ok(Place::Header(header)),
        (None, None, true) => Ok(Place::Basic { username }),
        _ => Err(Error::config(
            "name one place for the secret: `param`, `header` or `basic: true`",
        )),
    }
}

/// Checks the request against the secret; the error is a reason that names
/// where the secret was expected and never quotes it.
fn check(req: &Request, place: &Place, secret: &str) -> Result<(), String> {
    match place {
        Place::Query(param) => match req.query_param(param) {
            None => Err(format!("missing ?{param}= query parameter")),
            Some(value) if eq(&value, secret) => Ok(()),
            Some(_) => Err(format!("?{param}= does not match")),
        },
        Place::Header(name) => match req.header(name) {
            None => Err(format!("missing {name} header")),
            Some(value) if eq(value.trim(), secret) => Ok(()),
            Some(_) => Err(format!("{name} does not match")),
        },
        Place::Basic { username } => {
            let Some(header) = req.header("authorization") else {
                return Err("missing Authorization header".to_owned());
            };
            let Some((user, password)) = basic_credentials(header) else {
                return Err("Authorization must be Basic <base64 user:password>".to_owned());
            };
            // Both compared before deciding, so the time taken does not tell
            // which one was wrong.
            let user_ok = username.as_deref().is_none_or(|u| eq(&user, u));
            let password_ok = eq(&password, secret);
            if user_ok && password_ok {
                Ok(())
            } else {
                Err("Basic credentials do not match".to_owned())
            }
        }
    }
}

/// `(user, password)` of an `Authorization: Basic` value.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = sdk::signature::strip_prefix(header, "Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn eq(a: &str, b: &str) -> bool {
    crypto::constant_time_eq(a.as_bytes(), b.as_bytes())
}

sdk::export!(Token, stages: [verify], config: [secret, param, header, basic, username], check: settings);
