//! `template`: reshapes a message with a [MiniJinja](https://docs.rs/minijinja)
//! (Jinja2) template, for the many destinations that only need a different
//! JSON shape and no Rust.
//!
//! ```yaml
//! transform:
//!   - plugin: template
//!     with:
//!       template: |
//!         {"text": {{ ("New issue: " ~ issue.title) | tojson }},
//!          "url": {{ issue.html_url | tojson }}}
//! ```
//!
//! `with:` keys:
//!
//! - `template` (required): the template. Its output is the new body.
//! - `content_type` (default `application/json`): the output's media type.
//!   When it is JSON (`application/json` or `*+json`) the output must parse as
//!   JSON, so insert values with the `tojson` filter (`{{ x | tojson }}`
//!   quotes and escapes strings); without it a title containing `"` would
//!   break the document.
//! - `undefined` (default `chainable`): what a missing value does.
//!   `chainable`: renders as nothing, and so do its attributes
//!   (`{{ a.b.c }}` never fails); `lenient`: renders as nothing, but an
//!   attribute of it is an error; `strict`: any use is an error (answered
//!   400, since the input lacked something the template needs).
//!
//! What the template sees:
//!
//! - `body`: the input body parsed as JSON (or, when it is not JSON, as
//!   text);
//! - the body's top-level keys directly (`issue` is `body.issue`), except
//!   where they collide with the names below, which win;
//! - `headers`: a map of the message's headers, lowercase names (repeated
//!   headers joined with `, `);
//! - `event_type` and `id`: the message's event type and id, or none.
//!
//! The output keeps the message's id and event type, and has only a
//! `content-type` header. A template that does not compile is a config
//! error naming the line; so is a template that produces invalid JSON.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hookgate_plugin_sdk::{self as sdk, Error, Message, Transformer};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

struct Template;

/// The route's `with:` block.
struct Settings {
    source: String,
    content_type: String,
    undefined: UndefinedBehavior,
}

fn settings() -> Result<Settings, Error> {
    let source = sdk::config::require_str("template")?;
    let content_type = sdk::config::get("content_type")
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "application/json".to_owned());
    let undefined = match sdk::config::get("undefined").as_deref() {
        None | Some("chainable") => UndefinedBehavior::Chainable,
        Some("lenient") => UndefinedBehavior::Lenient,
        Some("strict") => UndefinedBehavior::Strict,
        Some(other) => {
            return Err(Error::config(format!(
                "`with.undefined` must be chainable, lenient or strict, not {other:?}"
            )));
        }
    };
    Ok(Settings {
        source,
        content_type,
        undefined,
    })
}

/// The load-time check (`export!`'s `check:`): the settings, and the
/// template compiled, so a syntax error fails `hookgate check` with its
/// line rather than every webhook.
fn check() -> Result<(), Error> {
    let Settings {
        source, undefined, ..
    } = settings()?;
    with_template(source, undefined, |_| Ok(()))
}

impl Transformer for Template {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        let Settings {
            source,
            content_type,
            undefined,
        } = settings()?;

        let rendered = with_template(source, undefined, |tmpl| {
            tmpl.render(context(&msg)?).map_err(render_error)
        })?;

        if is_json(&content_type)
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&rendered)
        {
            return Err(Error::config(format!(
                "`with.template` output is not valid JSON (output line {}, column {}: {e}); \
                 insert values with `| tojson`, or set `with.content_type` if the output is not JSON",
                e.line(),
                e.column()
            )));
        }

        Ok(vec![msg.with_body(content_type, rendered)])
    }
}

sdk::export!(Template, stages: [transform], config: [template, content_type, undefined], check: check);

/// The compiled template of this instance, with what it was compiled from.
struct Compiled {
    source: String,
    undefined: UndefinedBehavior,
    env: Environment<'static>,
}

thread_local! {
    /// The gateway keeps an instance per use of the plugin across calls,
    /// so the template is compiled at the first call, not at every one.
    /// Keyed by its source all the same: an instance that were ever handed
    /// another `with:` block compiles that one.
    static COMPILED: RefCell<Option<Compiled>> = const { RefCell::new(None) };
}

/// Runs `f` on the template compiled from `source`, compiling it when this
/// instance has not yet (or had another source).
fn with_template<T>(
    source: String,
    undefined: UndefinedBehavior,
    f: impl FnOnce(&minijinja::Template<'_, '_>) -> Result<T, Error>,
) -> Result<T, Error> {
    COMPILED.with_borrow_mut(|compiled| {
        let fresh = compiled
            .as_ref()
            .is_none_or(|c| c.source != source || c.undefined != undefined);
        if fresh {
            let mut env = Environment::new();
            env.set_undefined_behavior(undefined);
            // Leaked once per instance and source (the instance's memory
            // goes with the instance): the environment borrows it.
            let leaked: &'static str = Box::leak(source.clone().into_boxed_str());
            // Named without an extension so nothing is auto-escaped: the
            // output is whatever the template says, `tojson` is the
            // explicit escape.
            env.add_template("template", leaked)
                .map_err(|e| Error::config(describe("`with.template` does not compile", &e)))?;
            *compiled = Some(Compiled {
                source,
                undefined,
                env,
            });
        }
        let Some(c) = compiled.as_ref() else {
            return Err(Error::other("template cache is empty"));
        };
        let tmpl = c
            .env
            .get_template("template")
            .map_err(|e| Error::config(describe("`with.template` does not compile", &e)))?;
        f(&tmpl)
    })
}

/// What a failed render means: the input's fault (400) or the template's.
fn render_error(e: minijinja::Error) -> Error {
    let what = describe("`with.template` failed to render", &e);
    match e.kind() {
        // The input lacks or mistypes something the template uses.
        ErrorKind::UndefinedError
        | ErrorKind::InvalidOperation
        | ErrorKind::NonKey
        | ErrorKind::NonPrimitive
        | ErrorKind::CannotUnpack
        | ErrorKind::BadSerialization => Error::invalid_input(what),
        // The template itself is wrong (unknown filter, bad call...).
        _ => Error::config(what),
    }
}

/// Whether `content_type` is a JSON media type.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// A MiniJinja error as one sentence with its line.
fn describe(prefix: &str, e: &minijinja::Error) -> String {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    match e.line() {
        Some(line) => format!("{prefix} (line {line}): {}{detail}", e.kind()),
        None => format!("{prefix}: {}{detail}", e.kind()),
    }
}

/// The template's context (see the crate doc).
fn context(msg: &Message) -> Result<Value, Error> {
    let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
    let body = match serde_json::from_slice::<serde_json::Value>(&msg.body) {
        Ok(json) => {
            if let serde_json::Value::Object(map) = &json {
                for (k, v) in map {
                    ctx.insert(k.clone(), to_value(v));
                }
            }
            to_value(&json)
        }
        Err(_) => match msg.body_str() {
            Some(text) => Value::from(text),
            None => {
                return Err(Error::invalid_input(
                    "message body is neither JSON nor UTF-8 text",
                ));
            }
        },
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for h in &msg.headers {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(&h.value);
        headers
            .entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    ctx.insert("body".into(), body);
    ctx.insert(
        "headers".into(),
        Value::from(
            headers
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    );
    ctx.insert("event_type".into(), Value::from(msg.event_type.clone()));
    ctx.insert("id".into(), Value::from(msg.id.clone()));
    Ok(Value::from(ctx))
}

/// JSON to a MiniJinja value.
fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(to_value).collect(),
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}
