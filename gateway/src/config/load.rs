//! YAML text → checked [`GatewayConfig`].
//!
//! 1. Parse YAML into a JSON value (serde-saphyr; see ARCHITECTURE.md for
//!    why not serde_yaml).
//! 2. Replace `${VAR}` in every string from the environment; each missing
//!    variable is an error naming the variable and the key.
//! 3. Validate against the JSON Schema generated from the serde types, so
//!    unknown keys and wrong types are reported with their paths, all at
//!    once rather than serde's first-error-only.
//! 4. Deserialize, then run the semantic checks in [`super::validate`].

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use jsonschema::JsonType;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::GatewayConfig;

/// One problem in a config, at a path such as `routes.github.verify.plugin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`""` for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", Printable(&self.message))
        } else {
            write!(f, "{}: {}", Printable(&self.path), Printable(&self.message))
        }
    }
}

/// Text from a config file as a terminal or a log line may show it: a
/// control character in a key or a value (a NUL, a newline, an escape
/// sequence) is written escaped (`\u{0}`, `\n`), so it can neither garble
/// the terminal nor split one problem into two lines.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// Every problem found in a config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// The JSON Schema of the config, generated from the serde types.
pub fn json_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(GatewayConfig))
            .expect("a generated schema is valid JSON")
    })
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(json_schema()).expect("the generated schema compiles")
    })
}

/// Reads and checks a config file, taking `${VAR}` from the process
/// environment.
pub fn from_path(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let config = typed_from_path(path)?;
    super::validate(&config)?;
    Ok(config)
}

/// The config at `path` as far as its shape goes (YAML, `${VAR}`s, the
/// schema, the types), without [`validate`](super::validate)'s checks
/// across keys: for `hookgate check`, which reports those together with
/// what the plugins say, not one stage per run.
pub fn typed_from_path(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("", format!("cannot read {}: {e}", path.display())))?;
    let mut config = typed_from_str(&text, &|name| std::env::var(name).ok())?;
    config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(config)
}

/// Checks config text, taking `${VAR}` from `env`.
pub fn from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigErrors> {
    let config = typed_from_str(text, env)?;
    super::validate(&config)?;
    Ok(config)
}

/// [`from_str`] without the checks across keys.
fn typed_from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigErrors> {
    let mut value: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(&quote_flow_references(text))
            .map_err(|e| ConfigErrors::one("", format!("invalid YAML: {e}")))?
    };
    if value.is_null() {
        value = Value::Object(Default::default());
    }

    let mut errors = Vec::new();
    interpolate(&mut value, &mut String::new(), env, &mut errors);

    for e in validator().iter_errors(&value) {
        errors.extend(schema_error(&e));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let config: GatewayConfig = serde_json::from_value(value)
        .map_err(|e| ConfigErrors::one("", format!("invalid configuration: {e}")))?;
    Ok(config)
}

/// `{ token: ${TOKEN} }` is not valid YAML: `{` and `}` end a flow mapping,
/// so an unquoted reference inside one breaks the parse. A bare `${NAME}`
/// value there is quoted before parsing, so configs can be written the way
/// the docs show them. Quoted and block-context values are left alone.
fn quote_flow_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize; // flow-collection nesting on this line
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\n' => depth = 0,
                b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => {
                    // Comment: copy to end of line.
                    let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                    out.push_str(&text[i..end]);
                    i = end;
                    continue;
                }
                b'"' | b'\'' => quote = Some(b),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'$' if depth > 0 && text[i..].starts_with("${") => {
                    if let Some(len) = text[i + 2..].find('}') {
                        let name = &text[i + 2..i + 2 + len];
                        if is_var_name(name) {
                            out.push('"');
                            out.push_str(&text[i..i + 3 + len]);
                            out.push('"');
                            i += 3 + len;
                            continue;
                        }
                    }
                }
                _ => {}
            },
        }
        // Copy one UTF-8 character.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Replaces `${NAME}` in every string in place; `$${` stands for a literal
/// `${`. A missing variable is an error at `path` and becomes "".
fn interpolate(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(pos) = rest.find('$') {
                out.push_str(&rest[..pos]);
                let tail = &rest[pos..];
                if let Some(after) = tail.strip_prefix("$${") {
                    out.push_str("${");
                    rest = after;
                } else if let Some(inner) = tail.strip_prefix("${") {
                    match inner.find('}') {
                        Some(end) if is_var_name(&inner[..end]) => {
                            let name = &inner[..end];
                            match env(name) {
                                Some(v) => out.push_str(&v),
                                None => errors.push(ConfigError {
                                    path: path.clone(),
                                    message: format!("environment variable {name} is not set"),
                                }),
                            }
                            rest = &inner[end + 1..];
                        }
                        _ => {
                            errors.push(ConfigError {
                                path: path.clone(),
                                message:
                                    "malformed ${...} reference (use ${NAME}, or $${ for a literal)"
                                        .to_owned(),
                            });
                            out.push('$');
                            rest = &tail[1..];
                        }
                    }
                } else {
                    out.push('$');
                    rest = &tail[1..];
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, env, errors);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                interpolate(v, path, env, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// JSON pointer `/routes/github/transform/0` → `routes.github.transform[0]`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn schema_error(e: &jsonschema::ValidationError<'_>) -> Vec<ConfigError> {
    let path = dotted(e.instance_path().as_str());
    let instance: &Value = e.instance();
    match e.kind() {
        // Report each unknown key at its own path, which is what a user
        // looks for ("routes.github.verfy"), not at its parent.
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|key| ConfigError {
                path: join(&path, key),
                message: "unknown key".to_owned(),
            })
            .collect(),
        ValidationErrorKind::Required { property } => vec![ConfigError {
            path: join(&path, property.as_str().unwrap_or_default()),
            message: "missing (required)".to_owned(),
        }],
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![type_words(*t)],
                TypeKind::Multiple(set) => set
                    .iter()
                    .filter(|t| *t != JsonType::Null)
                    .map(type_words)
                    .collect(),
            };
            vec![ConfigError {
                message: wrong_type_message(&path, &expected, instance),
                path,
            }]
        }
        ValidationErrorKind::Pattern { pattern } => vec![ConfigError {
            message: format!("{} {}", describe(instance), pattern_words(pattern)),
            path,
        }],
        // An optional value is `anyOf: [its schema, null]` and a documented
        // enum `oneOf` its values: "not valid under any of the schemas"
        // says neither what was expected nor where inside.
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            alternatives(&path, instance, context).unwrap_or_else(|| {
                vec![ConfigError {
                    path,
                    message: shortened(e),
                }]
            })
        }
        _ => vec![ConfigError {
            path,
            message: shortened(e),
        }],
    }
}

/// The problems of a value that matched none of its alternatives, said as
/// the one alternative it was meant to be, or as the list of allowed values.
fn alternatives(
    path: &str,
    instance: &Value,
    context: &[Vec<jsonschema::ValidationError<'static>>],
) -> Option<Vec<ConfigError>> {
    // A branch that wants another type of value than the one written (the
    // `null` of an optional value, the number of a size written as a
    // string) is not the one the user meant.
    let wrong_type = |errors: &Vec<jsonschema::ValidationError<'static>>| {
        matches!(errors.as_slice(), [only] if matches!(only.kind(), ValidationErrorKind::Type { .. })
            && dotted(only.instance_path().as_str()) == path)
    };
    let meant: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
        .iter()
        .filter(|errors| !wrong_type(errors))
        .collect();
    if meant.is_empty() {
        let mut expected: Vec<&str> = Vec::new();
        for errors in context {
            if let ValidationErrorKind::Type { kind } = errors[0].kind() {
                let types: Vec<JsonType> = match kind {
                    TypeKind::Single(t) => vec![*t],
                    TypeKind::Multiple(set) => set.iter().collect(),
                };
                for t in types.into_iter().filter(|t| *t != JsonType::Null) {
                    if !expected.contains(&type_words(t)) {
                        expected.push(type_words(t));
                    }
                }
            }
        }
        return Some(vec![ConfigError {
            path: path.to_owned(),
            message: wrong_type_message(path, &expected, instance),
        }]);
    }
    // A set of allowed values (`kind: http | log | teams`, with each value
    // its own documented schema).
    let allowed: Option<Vec<String>> = meant
        .iter()
        .map(|errors| match errors.as_slice() {
            [only] => match only.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    Some(vec![scalar(expected_value)])
                }
                ValidationErrorKind::Enum { options } => {
                    Some(options.as_array()?.iter().map(scalar).collect())
                }
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<Vec<String>>>>()
        .map(|v| v.concat());
    if let Some(allowed) = allowed.filter(|a| !a.is_empty()) {
        return Some(vec![ConfigError {
            path: path.to_owned(),
            message: format!(
                "{} is not one of the allowed values: {}",
                describe(instance),
                allowed.join(", ")
            ),
        }]);
    }
    match meant.as_slice() {
        [errors] => Some(errors.iter().flat_map(schema_error).collect()),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A JSON type as the YAML a user writes calls it.
fn type_words(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "nothing",
        JsonType::Boolean => "true or false",
        JsonType::Integer => "a whole number",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "a list",
        JsonType::Object => "a mapping",
    }
}

/// A value as a problem quotes it: scalars in full (cut at 60 characters),
/// lists and mappings by what they are, never a whole subtree.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", quoted(s)),
        Value::Array(items) => format!("a list of {}", items.len()),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("\"{}…\"", &s[..at]),
        None => format!("\"{s}\""),
    }
}

/// What the config's three string patterns (generated from the unit
/// types in `units.rs`) ask for, in words and with examples, instead of
/// the regular expression.
fn pattern_words(pattern: &str) -> String {
    if pattern.contains("msec") {
        "is not a duration: a number and a unit, such as 500ms, 10s, 5m or 2h".to_owned()
    } else if pattern.contains("KiB") {
        "is not a size: bytes, or a number and a unit, such as 512KB, 64KiB or 16MiB".to_owned()
    } else if pattern.contains('/') {
        "is not a rate: a number per unit of time, such as 100/s, 600/min or 5000/h".to_owned()
    } else {
        format!("does not match the pattern {pattern}")
    }
}

fn wrong_type_message(path: &str, expected: &[&str], instance: &Value) -> String {
    let mut message = format!(
        "expected {}, found {}",
        expected.join(" or "),
        describe(instance)
    );
    if instance.is_string() && expected == ["a mapping"] && names_a_plugin(path) {
        message.push_str(" (a plugin is written `{ plugin: NAME, with: { ... } }`)");
    }
    message
}

/// Keys whose value is a plugin reference.
fn names_a_plugin(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    last == "verify" || last == "route" || last.starts_with("transform[")
}

/// jsonschema's own message, with the value it quotes (a whole subtree
/// for a mapping in the wrong place) cut short.
fn shortened(e: &jsonschema::ValidationError<'_>) -> String {
    const MAX: usize = 200;
    let message = e.to_string();
    match message.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "TOKEN" => Some("t0k3n-0123456789abcdef-0123456789".into()),
            _ => None,
        }
    }

    #[test]
    fn a_config_without_limits_gets_the_safe_door_defaults() {
        // The slowloris test (`tests/it/door.rs`) runs with a longer head
        // timeout than the default; the default is pinned here.
        let cfg = from_str("listen: 127.0.0.1:0\n", &env).unwrap();
        assert_eq!(
            cfg.limits.header_read_timeout.0,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(cfg.limits, super::super::LimitsConfig::default());
    }

    #[test]
    fn references_in_flow_mappings_are_interpolated() {
        let cfg = from_str("admin: { token: ${TOKEN} }\n", &env).unwrap();
        assert_eq!(
            cfg.admin.token.as_deref(),
            Some("t0k3n-0123456789abcdef-0123456789")
        );
    }

    #[test]
    fn the_postgres_store_takes_its_url_from_the_environment_and_requires_one() {
        let cfg = from_str(
            "store: { engine: postgres, url: \"postgres://hg:${SECRET}@db:5432/hookgate\", pool_size: 4 }\n\
             delivery: { lease: 30s }\n",
            &env,
        )
        .unwrap();
        assert_eq!(cfg.store.engine, crate::config::StoreEngine::Postgres);
        assert_eq!(
            cfg.store.url.as_deref(),
            Some("postgres://hg:s3cr3t@db:5432/hookgate")
        );
        assert_eq!(cfg.store.pool_size, 4);
        assert_eq!(cfg.delivery.lease.0, std::time::Duration::from_secs(30));
        let err = from_str("store: { engine: postgres }\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.url"), "{err}");
        let err = from_str("store: { engine: postgres, url: \"${NOPE}\" }\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOPE"), "{err}");
        // TLS options are checked by `hookgate check`, at their key, and
        // the password is not shown.
        let err = from_str(
            "store: { engine: postgres, url: \"postgres://hg:${SECRET}@db/h?sslmode=verify\" }\n",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("store.url") && err.contains("verify-full"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        from_str(
            "store: { engine: postgres, url: \"postgres://db/h?sslmode=verify-full&sslrootcert=/ca.pem\" }\n",
            &env,
        )
        .unwrap();
    }

    #[test]
    fn literal_dollar_brace_is_escaped_with_a_double_dollar() {
        let cfg = from_str(
            "admin:\n  token: \"a$${B}c-0123456789abcdef-0123456789\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            cfg.admin.token.as_deref(),
            Some("a${B}c-0123456789abcdef-0123456789")
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let yaml = r#"
listen: 127.0.0.1:0
destinations:
  sink: { url: "http://127.0.0.1:9/x", timeout: 5 }
routes:
  github:
    verfy: { plugin: github }
    transform:
      - { plugin: github-teams, with: { secret: "${NOPE}" } }
    to: [sink]
"#;
        let errs = from_str(yaml, &env).unwrap_err().0;
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"routes.github.verfy"), "{errs:?}");
        assert!(paths.contains(&"destinations.sink.timeout"), "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.path == "routes.github.transform[0].with.secret"
                    && e.message.contains("NOPE")),
            "{errs:?}"
        );
    }

    #[test]
    fn schema_problems_say_what_was_expected_in_the_words_of_the_yaml() {
        let yaml = r#"
listen: 127.0.0.1:0
destinations:
  a: { kind: nope }
  b: { url: 5, timeout: abc, rate: fast }
routes:
  github:
    verify: github
    transform: [ { with: {} } ]
    to: console
limits: { max_body_size: huge, header_read_timeout: true }
"#;
        let errs = from_str(yaml, &env).unwrap_err().0;
        let message = |path: &str| {
            errs.iter()
                .find(|e| e.path == path)
                .map(|e| e.message.clone())
                .unwrap_or_else(|| panic!("no problem at {path}: {errs:#?}"))
        };
        // An enum lists its values, whatever schema shape schemars gave it.
        let kind = message("destinations.a.kind");
        assert!(
            kind.starts_with("the string \"nope\" is not one of the allowed values: "),
            "{kind}"
        );
        for value in ["http", "log", "teams"] {
            assert!(kind.contains(value), "{kind}");
        }
        // An optional value's `null` branch is not what was meant.
        assert_eq!(
            message("destinations.b.url"),
            "expected a string, found the number 5"
        );
        assert!(
            message("destinations.b.timeout")
                .contains("is not a duration: a number and a unit, such as 500ms")
        );
        assert!(message("destinations.b.rate").contains("is not a rate"));
        assert!(message("limits.max_body_size").contains("is not a size"));
        assert_eq!(
            message("limits.header_read_timeout"),
            "expected a string, found true"
        );
        let verify = message("routes.github.verify");
        assert!(
            verify.starts_with("expected a mapping, found the string \"github\""),
            "{verify}"
        );
        assert!(verify.contains("{ plugin: NAME"), "{verify}");
        // Inside the alternative that was meant: the missing key, at its path.
        assert_eq!(
            message("routes.github.transform[0].plugin"),
            "missing (required)"
        );
        assert_eq!(
            message("routes.github.to"),
            "expected a list, found the string \"console\""
        );
        for e in &errs {
            assert!(!e.message.contains("schemas listed"), "{e}");
            assert!(!e.message.contains('^'), "no regular expression: {e}");
        }
        // A subtree in the wrong place is named, not printed.
        let errs = from_str("routes: [ { a: 1, b: [1, 2, 3] } ]\n", &env)
            .unwrap_err()
            .0;
        assert_eq!(
            errs[0].to_string(),
            "routes: expected a mapping, found a list of 1"
        );
    }

    #[test]
    fn omitted_retry_gets_the_documented_jitter_and_the_schema_says_so() {
        let yaml = "destinations:\n  d: { url: \"http://127.0.0.1:9/x\" }\n\
                    subscriptions:\n  api_keys: { t: \"0123456789abcdef0123\" }\n";
        let cfg = from_str(yaml, &env).unwrap();
        assert_eq!(cfg.destinations["d"].retry.jitter, 0.1);
        let subs = cfg.subscriptions.as_ref().unwrap();
        assert_eq!(subs.retry.jitter, 0.1);
        assert_eq!(subs.object_types, ["Group", "Action", "ActionPackage"]);
        assert_eq!(
            crate::delivery::RetryPolicy::from_config(&subs.retry),
            crate::delivery::RetryPolicy::default()
        );
        let schema =
            serde_json::to_value(schemars::schema_for!(crate::config::GatewayConfig)).unwrap();
        for owner in ["DestinationConfig", "SubscriptionsConfig"] {
            assert_eq!(
                schema["$defs"][owner]["properties"]["retry"]["default"]["jitter"], 0.1,
                "{owner}"
            );
        }
    }

    #[test]
    fn a_subscribers_destination_names_a_catalogued_object_type() {
        let yaml = "subscriptions:\n  api_keys: { t: \"0123456789abcdef0123\" }\n\
                    destinations:\n  s: { kind: subscribers, object_type: Planet, object_id: x }\n";
        let errs = from_str(yaml, &env).unwrap_err().0;
        assert!(
            errs.iter()
                .any(|e| e.path == "destinations.s.object_type" && e.message.contains("Planet")),
            "{errs:?}"
        );
    }

    #[test]
    fn control_characters_in_keys_and_values_are_shown_escaped() {
        let yaml = "destinations:\n  \"con\\0sole\": { kind: log }\n\
                    routes:\n  \"pl\\nain\":\n    to: [\"a\\u001b[31mb\"]\n";
        let errs = from_str(yaml, &env).unwrap_err();
        // The key paths themselves keep the names as written.
        assert!(
            errs.0.iter().any(|e| e.path == "destinations.con\0sole"),
            "{errs:?}"
        );
        let shown = errs.to_string();
        assert!(
            shown.lines().all(|l| !l.chars().any(char::is_control)),
            "{shown:?}"
        );
        assert_eq!(
            shown.lines().count(),
            errs.0.len(),
            "one line each: {shown:?}"
        );
        assert!(
            shown.contains("destinations.con\\u{0}sole: names use"),
            "{shown}"
        );
        assert!(shown.contains("routes.pl\\nain: names use"), "{shown}");
        assert!(shown.contains("\"a\\u{1b}[31mb\""), "{shown}");
    }

    #[test]
    fn comments_and_quoted_braces_survive_quoting() {
        let text = "a: { b: \"${X}\" } # { c: ${Y} }\n";
        assert_eq!(quote_flow_references(text), text);
        assert_eq!(
            quote_flow_references("a: { b: ${X}, c: [${Y}] }"),
            "a: { b: \"${X}\", c: [\"${Y}\"] }"
        );
    }
}
