//! `hmac`: a configurable HMAC signature check for providers without a
//! dedicated plugin.
//!
//! The provider computes an HMAC over some content built from the request
//! (usually the raw body, sometimes a timestamp and the body) and sends it,
//! encoded, in a header. Every key of the `with:` block:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `secret` | required | the shared secret |
//! | `secret_encoding` | `utf8` | how `secret` is written: `utf8` (its bytes are the key), `base64` or `hex` (the decoded bytes are the key) |
//! | `header` | required | the header carrying the signature, e.g. `X-Signature` |
//! | `algorithm` | `sha256` | `sha1`, `sha256` or `sha512` |
//! | `encoding` | `hex` | the signature's encoding: `hex` (either case) or `base64` (standard, padded) |
//! | `prefix` | `""` | text before the signature in the header, e.g. `sha256=`; compared case-insensitively and required when set |
//! | `separator` | none | when the header holds several signatures (key rotation), the text between them, e.g. `" "` or `","`; one match is enough |
//! | `signed` | `body` | what is signed: `body`, or a template such as `"{timestamp}.{body}"` |
//! | `timestamp_header` | none | header carrying the signed timestamp; turns on the replay check |
//! | `timestamp_format` | `seconds` | `seconds` or `milliseconds` since the Unix epoch, or `rfc3339` |
//! | `tolerance` | `300` | seconds the timestamp may be from the time of receipt, either way |
//! | `id_header` | none | header whose value becomes the message id (the dedup key) |
//! | `event_type_header` | none | header whose value becomes the event type |
//!
//! Template placeholders in `signed`: `{body}` (the raw body bytes),
//! `{timestamp}` (the `timestamp_header` value as sent), `{method}`,
//! `{path}`, `{query}` (raw, without `?`) and `{header:<name>}` (any header's
//! value; a missing header rejects the request). `{{` and `}}` are literal
//! braces; everything else is literal text.
//!
//! A timestamp only prevents replays if it is signed, so a configured
//! `timestamp_header` must appear in `signed` (as `{timestamp}`), or the
//! route is refused as misconfigured.
//!
//! ```yaml
//! # Body signed with a hex HMAC-SHA256 in `X-Signature: sha256=<hex>`:
//! verify:
//!   plugin: hmac
//!   with: { secret: "${SECRET}", header: X-Signature, prefix: "sha256=" }
//!
//! # A timestamped scheme with base64 signatures:
//! verify:
//!   plugin: hmac
//!   with:
//!     secret: "${SECRET}"
//!     header: X-Webhook-Signature
//!     encoding: base64
//!     signed: "{timestamp}.{body}"
//!     timestamp_header: X-Webhook-Timestamp
//!     tolerance: 300
//!     id_header: X-Webhook-Id
//!     event_type_header: X-Webhook-Event
//! ```

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Request, Verdict, Verifier,
    crypto::Algorithm,
    signature::{self, Encoding, Outcome},
};
use serde::{Deserialize, Deserializer};

/// Five minutes, the window most providers and libraries use.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

struct Hmac;

/// Reads and prepares `with:`; also the load-time check (`export!`'s
/// `check:`), so an unknown algorithm, a secret that does not decode or a
/// malformed `signed` template fails `hookgate check` rather than every
/// request.
fn settings() -> Result<Prepared, Error> {
    sdk::config::parse::<Config>()?.prepare()
}

impl Verifier for Hmac {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let prepared = settings()?;
        Ok(match check(&prepared, &req) {
            Ok(accepted) => Verdict::accept_with(accepted),
            Err(reason) => Verdict::unauthorized(reason),
        })
    }
}

/// The `with:` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    secret: Option<String>,
    #[serde(default)]
    secret_encoding: SecretEncoding,
    header: Option<String>,
    #[serde(default)]
    algorithm: HashName,
    #[serde(default)]
    encoding: SignatureEncoding,
    #[serde(default)]
    prefix: String,
    separator: Option<String>,
    signed: Option<String>,
    timestamp_header: Option<String>,
    #[serde(default)]
    timestamp_format: TimestampFormat,
    #[serde(default, deserialize_with = "number_or_text")]
    tolerance: Option<u64>,
    id_header: Option<String>,
    event_type_header: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SecretEncoding {
    #[default]
    Utf8,
    Base64,
    Hex,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum HashName {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TimestampFormat {
    #[default]
    Seconds,
    Milliseconds,
    Rfc3339,
}

/// `tolerance: 300` and `tolerance: "300"` (from `${VAR}`) both work.
fn number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => {
            t.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom("`tolerance` must be a whole number of seconds")
            })
        }
    }
}

/// The config checked and turned into what a request is checked against.
struct Prepared {
    key: Vec<u8>,
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    separator: Option<String>,
    template: Vec<Part>,
    timestamp: Option<(String, TimestampFormat)>,
    tolerance: u64,
    id_header: Option<String>,
    event_type_header: Option<String>,
}

/// One piece of the `signed` template.
#[derive(PartialEq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Method,
    Path,
    Query,
    Header(String),
}

impl Config {
    fn prepare(self) -> Result<Prepared, Error> {
        let secret = required(self.secret, "secret")?;
        let key = match self.secret_encoding {
            SecretEncoding::Utf8 => Some(secret.into_bytes()),
            SecretEncoding::Base64 => Encoding::Base64.decode(&secret),
            SecretEncoding::Hex => Encoding::Hex.decode(&secret),
        }
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            Error::config("`with.secret` does not decode with `with.secret_encoding`")
        })?;
        let header = required(self.header, "header")?;

        let template = match self.signed.as_deref() {
            None | Some("body") => vec![Part::Body],
            Some(text) => parse_template(text)?,
        };
        let timestamp_header = self.timestamp_header.filter(|h| !h.is_empty());
        let uses_timestamp = template.contains(&Part::Timestamp);
        match (&timestamp_header, uses_timestamp) {
            (None, true) => {
                return Err(Error::config(
                    "`with.signed` uses {timestamp} but `with.timestamp_header` is not set",
                ));
            }
            (Some(_), false) => {
                return Err(Error::config(
                    "`with.timestamp_header` is set but `with.signed` has no {timestamp}: an unsigned timestamp cannot stop replays",
                ));
            }
            _ => {}
        }

        Ok(Prepared {
            key,
            header,
            algorithm: match self.algorithm {
                HashName::Sha1 => Algorithm::Sha1,
                HashName::Sha256 => Algorithm::Sha256,
                HashName::Sha512 => Algorithm::Sha512,
            },
            encoding: match self.encoding {
                SignatureEncoding::Hex => Encoding::Hex,
                SignatureEncoding::Base64 => Encoding::Base64,
            },
            prefix: self.prefix,
            separator: self.separator.filter(|s| !s.is_empty()),
            template,
            timestamp: timestamp_header.map(|h| (h, self.timestamp_format)),
            tolerance: self.tolerance.unwrap_or(DEFAULT_TOLERANCE_SECS),
            id_header: self.id_header.filter(|h| !h.is_empty()),
            event_type_header: self.event_type_header.filter(|h| !h.is_empty()),
        })
    }
}

fn required(value: Option<String>, key: &str) -> Result<String, Error> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Error::config(format!("`with.{key}` is empty"))),
        None => Err(Error::config(format!("`with.{key}` is required"))),
    }
}

/// Parses `"{timestamp}.{body}"`-style templates.
fn parse_template(text: &str) -> Result<Vec<Part>, Error> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(Error::config("`with.signed` has an unclosed `{`"));
                        }
                    }
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(match name.as_str() {
                    "body" => Part::Body,
                    "timestamp" => Part::Timestamp,
                    "method" => Part::Method,
                    "path" => Part::Path,
                    "query" => Part::Query,
                    other => match other.strip_prefix("header:") {
                        Some(header) if !header.is_empty() => Part::Header(header.to_owned()),
                        _ => {
                            return Err(Error::config(format!(
                                "`with.signed` has an unknown placeholder {{{other}}}"
                            )));
                        }
                    },
                });
            }
            '}' => {
                return Err(Error::config(
                    "`with.signed` has a `}` without `{` (write `}}`)",
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

/// Checks one request; the error is the rejection reason.
fn check(cfg: &Prepared, req: &Request) -> Result<Accepted, String> {
    let header_value = req
        .header(&cfg.header)
        .ok_or_else(|| format!("missing {} header", cfg.header))?;

    let timestamp = match &cfg.timestamp {
        None => None,
        Some((name, format)) => {
            let text = req
                .header(name)
                .ok_or_else(|| format!("missing {name} header"))?;
            let secs = parse_timestamp(text.trim(), *format)
                .ok_or_else(|| format!("{name} is not a valid timestamp"))?;
            Some((text, secs, name))
        }
    };

    let mut content = Vec::with_capacity(req.body.len() + 64);
    for part in &cfg.template {
        match part {
            Part::Literal(text) => content.extend_from_slice(text.as_bytes()),
            Part::Body => content.extend_from_slice(&req.body),
            Part::Timestamp => {
                // `prepare` guarantees a timestamp header when this is used.
                if let Some((text, _, _)) = &timestamp {
                    content.extend_from_slice(text.as_bytes());
                }
            }
            Part::Method => content.extend_from_slice(req.method.as_bytes()),
            Part::Path => content.extend_from_slice(req.path.as_bytes()),
            Part::Query => content.extend_from_slice(req.query.as_bytes()),
            Part::Header(name) => {
                let value = req
                    .header(name)
                    .ok_or_else(|| format!("missing {name} header"))?;
                content.extend_from_slice(value.as_bytes());
            }
        }
    }
    let expected = sdk::crypto::hmac(cfg.algorithm, &cfg.key, &content);

    let candidates: Vec<&str> = match &cfg.separator {
        Some(sep) => header_value.split(sep.as_str()).collect(),
        None => vec![header_value],
    };
    let encoded = candidates
        .into_iter()
        .map(str::trim)
        .filter(|candidate| !candidate.is_empty())
        .filter_map(|candidate| {
            if cfg.prefix.is_empty() {
                Some(candidate)
            } else {
                signature::strip_prefix(candidate, &cfg.prefix)
            }
        });
    match signature::matches_any(&expected, cfg.encoding, encoded) {
        Outcome::Match => {}
        Outcome::Mismatch => {
            return Err(format!("{} does not match the request", cfg.header));
        }
        Outcome::Malformed => {
            let encoding = match cfg.encoding {
                Encoding::Hex => "hex",
                Encoding::Base64 => "base64",
            };
            return Err(format!(
                "{} must look like {}<{encoding}>",
                cfg.header, cfg.prefix
            ));
        }
    }
    if let Some((_, secs, name)) = timestamp
        && !sdk::time::within_tolerance(secs, req.received_at_ms, cfg.tolerance)
    {
        return Err(format!(
            "{name} is more than {} s away from the time of receipt",
            cfg.tolerance
        ));
    }

    // The signature header is this route's credential, whatever its name.
    let mut accepted = Accepted::new().consumed(cfg.header.as_str());
    if let Some(id) = cfg.id_header.as_deref().and_then(|h| req.header(h)) {
        accepted = accepted.id(id);
    }
    if let Some(kind) = cfg.event_type_header.as_deref().and_then(|h| req.header(h)) {
        accepted = accepted.event_type(kind);
    }
    Ok(accepted)
}

/// Unix seconds of a timestamp header in the configured format.
fn parse_timestamp(text: &str, format: TimestampFormat) -> Option<i64> {
    match format {
        TimestampFormat::Seconds => text.parse().ok(),
        TimestampFormat::Milliseconds => text.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
        TimestampFormat::Rfc3339 => sdk::time::parse_rfc3339(text),
    }
}

sdk::export!(Hmac, stages: [verify], config: [secret, secret_encoding, header, algorithm, encoding, prefix, separator, signed, timestamp_header, timestamp_format, tolerance, id_header, event_type_header], check: settings);
