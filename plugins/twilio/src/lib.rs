//! `twilio`: verifies Twilio request signatures (`X-Twilio-Signature`).
//!
//! Twilio signs what it *requested*, not what arrived: the full URL it called
//! (scheme, host, path and query string), followed, for form-encoded `POST`s,
//! by every body parameter sorted by name, each name immediately followed by
//! its value (no separators). The header is the base64 HMAC-SHA1 of that
//! string keyed with the account's auth token.
//!
//! Behind a proxy the gateway cannot know the public URL, so it is
//! configured: `with.url` is the URL exactly as entered in the Twilio
//! console *without* its query string; the query string is taken from the
//! request as received.
//!
//! ```yaml
//! verify:
//!   plugin: twilio
//!   with:
//!     secret: "${TWILIO_AUTH_TOKEN}"
//!     url: "https://hooks.example.com/hooks/twilio"
//! ```
//!
//! Details that follow Twilio's own validators (twilio-node, twilio-python):
//!
//! - Twilio is inconsistent about explicit ports, so the signature is checked
//!   against the URL both without a port and with one (the configured port,
//!   or `:443` / `:80` by scheme when none is given).
//! - A parameter sent several times contributes each distinct value once, in
//!   sorted order.
//! - JSON bodies cannot be sorted into parameters, so Twilio adds a
//!   `bodySHA256=<hex sha256 of the body>` query parameter, signs only the
//!   URL, and the body must hash to that value. A non-form body *without*
//!   `bodySHA256` would be unauthenticated and is refused.
//!
//! Twilio signs no timestamp. The message id is `I-Twilio-Idempotency-Token`
//! when Twilio sends it (it is kept across Twilio's retries).

use std::collections::{BTreeMap, BTreeSet};

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier, crypto::Algorithm, signature,
};

struct Twilio;

/// The route's `with:` block.
struct Settings {
    secret: String,
    url: String,
}

/// Reads `with:`; also the load-time check (`export!`'s `check:`), so a
/// value that would fail every request fails `hookgate check` instead.
fn settings() -> Result<Settings, Error> {
    Ok(Settings {
        secret: sdk::config::require_str("secret")?,
        url: sdk::config::require_str("url")?,
    })
}

impl Verifier for Twilio {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let Settings { secret, url } = settings()?;
        let candidates = url_variants(&url, &req.query)?;

        let Some(header) = req.header("x-twilio-signature") else {
            return Ok(Verdict::unauthorized("missing X-Twilio-Signature header"));
        };

        let body_sha256 = req.query_param("bodySHA256");
        let params = if body_sha256.is_some() {
            // JSON mode: the URL (which carries the body's hash) is signed alone.
            String::new()
        } else if is_form(&req) {
            sorted_params(req.form())
        } else if req.body.is_empty() {
            String::new()
        } else {
            return Ok(Verdict::unauthorized(
                "X-Twilio-Signature does not cover this body: a non-form body needs bodySHA256 in the URL",
            ));
        };

        // Both candidates are always checked, so timing does not reveal which
        // URL form matched.
        let signed = candidates.iter().fold(false, |found, candidate| {
            let data = format!("{candidate}{params}");
            signature::verify_base64(Algorithm::Sha1, secret.as_bytes(), data.as_bytes(), header)
                | found
        });
        if !signed {
            return Ok(Verdict::unauthorized(
                "X-Twilio-Signature does not match the configured URL and the request",
            ));
        }

        if let Some(expected) = body_sha256 {
            let actual = sdk::crypto::digest(Algorithm::Sha256, &req.body);
            let expected = hex::decode(expected.trim()).unwrap_or_default();
            if !sdk::crypto::constant_time_eq(&expected, &actual) {
                return Ok(Verdict::unauthorized(
                    "body does not match bodySHA256 in the signed URL",
                ));
            }
        }

        let mut accepted = Accepted::new();
        if let Some(token) = req.header("i-twilio-idempotency-token") {
            accepted = accepted.id(token);
        }
        Ok(Verdict::accept_with(accepted))
    }
}

/// Whether the body is `application/x-www-form-urlencoded`, as Twilio's
/// form webhooks always declare.
fn is_form(req: &Request) -> bool {
    req.header("content-type").is_some_and(|ct| {
        ct.split(';').next().is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

/// The parameter part of the signed string: names sorted, each distinct
/// value of a name once and sorted, `name` then `value`, no separators.
fn sorted_params(pairs: Vec<(String, String)>) -> String {
    let mut params: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in pairs {
        params.entry(name).or_default().insert(value);
    }
    let mut out = String::new();
    for (name, values) in &params {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// The full URL Twilio may have signed, without and with an explicit port.
fn url_variants(configured: &str, query: &str) -> Result<Vec<String>, Error> {
    let invalid =
        || Error::config("`with.url` must be an absolute http(s) URL such as https://host/path");

    // The query comes from the request; a query in the configured URL is
    // dropped so it is not counted twice.
    let base = configured.split(['?', '#']).next().unwrap_or(configured);
    let (scheme, rest) = base.split_once("://").ok_or_else(invalid)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(invalid()),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (format!("{userinfo}@"), host_port),
        None => (String::new(), authority),
    };
    // A port is what follows the last `:` outside an IPv6 literal's brackets.
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Err(invalid());
    }

    let suffix = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let port = port.filter(|p| !p.is_empty()).unwrap_or(default_port);
    Ok(vec![
        format!("{scheme}://{userinfo}{host}{suffix}"),
        format!("{scheme}://{userinfo}{host}:{port}{suffix}"),
    ])
}

sdk::export!(Twilio, stages: [verify], config: [secret, url], check: settings);
