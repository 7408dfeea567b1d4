//! The OpenAPI document of `/v1`, `/admin`, `/hooks/{route}` and
//! `/healthz`, generated from the handlers' annotations (utoipa), served at
//! `GET /openapi.json` and committed as `gateway/openapi.json` (a test keeps
//! the two equal for the default catalogue).
//!
//! The derive cannot say everything the handlers enforce, so [`constrain`]
//! adds it to the generated document: lengths, patterns, formats, and the
//! enums that come from the config (`subscriptions.object_types`, the
//! event-type catalogue). A fuzzer (schemathesis, `tests/it/openapi.rs`)
//! holds the document to the API: what it calls valid is accepted, what it
//! calls invalid is refused, and every answer is documented.

use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::subscriptions::SubscriptionsRuntime;
use crate::{admin, ingress, subscriptions};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookgate", description = "Webhook ingress, subscription API, event publishing and admin API of the hookgate webhook gateway."),
    paths(
        ingress::hook,
        ingress::healthz,
        subscriptions::api::create_webhook,
        subscriptions::api::list_webhooks,
        subscriptions::api::get_webhook,
        subscriptions::api::update_webhook,
        subscriptions::api::delete_webhook,
        subscriptions::api::rotate_secret,
        subscriptions::api::list_parked,
        subscriptions::api::publish,
        admin::events::list,
        admin::events::get,
        admin::events::replay_one,
        admin::events::replay_matching,
        admin::status::status,
        admin::status::reload,
    ),
    modifiers(&Security),
    tags(
        (name = "gateway", description = "Webhooks in, health"),
        (name = "subscriptions", description = "Register callback URLs for events (Kaizala-style /v1/webhook)"),
        (name = "events", description = "Publish events to subscribers"),
        (name = "admin", description = "Inspect and replay stored events, status and reload (Authorization: Bearer <admin.token>)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "accessToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("accessToken"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Not blank: at least one character that is not whitespace (the API
/// trims before it checks), no NUL (see [`NO_NUL`]), and not longer than
/// an indexed key may be.
fn not_blank() -> Value {
    json!({
        "minLength": 1,
        "maxLength": subscriptions::api::MAX_KEY_CHARS,
        "pattern": NOT_BLANK_PATTERN,
    })
}

/// A character that is not whitespace, and no NUL anywhere.
const NOT_BLANK_PATTERN: &str = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$";

/// No NUL character: text the API stores, or reads from a URL to look up,
/// cannot hold one (`crate::text`); the API refuses it with a 400.
const NO_NUL: &str = "^[^\\u0000]*$";

/// Printable ASCII and tabs: what may go out as an HTTP header value.
const HEADER_VALUE_PATTERN: &str = "^[\\t -~]*$";

/// An RFC 7230 token: what an HTTP header name may be.
const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// Epoch milliseconds (a u64 always holds 19 digits), or an RFC 3339 UTC
/// time from 1970 on that the admin API parses.
fn time_param() -> Value {
    json!({
        "type": "string",
        "pattern": "^([0-9]{1,19}|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z)$"
    })
}

/// Merges `patch` into the object at `pointer` (a JSON pointer), if there
/// is one: the document is ours, so a pointer that misses is a bug that
/// the document test catches (the constraint would be missing).
fn merge(doc: &mut Value, pointer: &str, patch: Value) {
    if let (Some(Value::Object(target)), Value::Object(patch)) = (doc.pointer_mut(pointer), patch) {
        target.extend(patch);
        // An optional field takes `null` (the same as absent): an enum
        // must list it too, or `null` would read as invalid.
        let nullable = target
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        if nullable && let Some(Value::Array(values)) = target.get_mut("enum") {
            values.push(Value::Null);
        }
    }
}

/// Patches the schema of query parameter `name` of `path`'s `method`.
fn merge_param(doc: &mut Value, path: &str, method: &str, name: &str, patch: Value) {
    let pointer = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
    if let Some(Value::Array(params)) = doc.pointer_mut(&pointer) {
        for p in params {
            if p["name"] == name
                && let (Some(Value::Object(schema)), Value::Object(patch)) =
                    (p.get_mut("schema"), patch.clone())
            {
                schema.extend(patch);
            }
        }
    }
}

/// A query parameter is a string on the wire or absent, never `null`:
/// utoipa types optional ones as `[T, "null"]`, which tells a fuzzer that
/// `null` (sent as nothing at all) is a value to test.
fn unnull_query_params(doc: &mut Value) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for item in paths.values_mut() {
        let Value::Object(ops) = item else { continue };
        for op in ops.values_mut() {
            let Some(Value::Array(params)) = op.get_mut("parameters") else {
                continue;
            };
            for p in params {
                // Scalars either way; for a fuzzer's wrong-typed object or
                // array it means `name=` rather than no parameter at all.
                if p["in"] == "query" {
                    p["style"] = json!("form");
                    p["explode"] = json!(false);
                }
                if let Some(Value::Array(types)) = p.pointer_mut("/schema/type") {
                    types.retain(|t| t != "null");
                    if let [only] = types.as_slice() {
                        let only = only.clone();
                        p["schema"]["type"] = only;
                    }
                }
            }
        }
    }
}

/// A string schema with nothing else that keeps a NUL out gets [`NO_NUL`]
/// (an array of strings, its items).
fn no_nul(schema: &mut Value) {
    let is = |s: &Value, t: &str| {
        s["type"] == t
            || s["type"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|x| x == t))
    };
    if is(schema, "array") {
        if let Some(items) = schema.get_mut("items") {
            no_nul(items);
        }
    } else if is(schema, "string")
        && ["pattern", "enum", "format", "const"]
            .iter()
            .all(|k| schema.get(k).is_none())
    {
        schema["pattern"] = json!(NO_NUL);
    }
}

/// What `ingress::refuse_encoded_nul` and the `/v1` body check enforce:
/// no NUL in a URL's parameters (outside `/hooks`, whose query is the
/// provider's) nor in a `/v1` body's text fields; each operation that
/// reads either documents its 400.
fn refuse_nul(doc: &mut Value) {
    for body in [
        "CreateWebhook",
        "UpdateWebhook",
        "PublishEvent",
        "RotateSecret",
    ] {
        if let Some(Value::Object(props)) =
            doc.pointer_mut(&format!("/components/schemas/{body}/properties"))
        {
            props.values_mut().for_each(no_nul);
        }
    }
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if path.starts_with("/hooks/") {
            continue;
        }
        let error = if path.starts_with("/admin") {
            "#/components/schemas/AdminError"
        } else {
            "#/components/schemas/ApiErrorBody"
        };
        let Value::Object(ops) = item else { continue };
        for op in ops.values_mut() {
            let Some(Value::Array(params)) = op.get_mut("parameters") else {
                continue;
            };
            params
                .iter_mut()
                .filter_map(|p| p.get_mut("schema"))
                .for_each(no_nul);
            if op.pointer("/responses/400").is_none() {
                op["responses"]["400"] = json!({
                    "description": "The URL holds an encoded NUL (%00), which no id, name or filter can contain",
                    "content": { "application/json": { "schema": { "$ref": error } } },
                });
            }
        }
    }
}

/// Adds the constraints the handlers enforce; `rt` gives the configured
/// enums (the defaults when `None`).
fn constrain(doc: &mut Value, rt: Option<&SubscriptionsRuntime>) {
    unnull_query_params(doc);
    let object_types: Vec<String> = rt.map_or_else(
        || {
            crate::config::SubscriptionsConfig::default_object_types()
                .into_iter()
                .collect()
        },
        |rt| rt.object_types.clone(),
    );
    let event_types: Option<Vec<String>> = rt
        .and_then(|rt| rt.event_types.as_ref())
        .map(|t| t.keys().cloned().collect());
    let object_type = json!({ "enum": object_types });
    let subscribed_type = {
        let mut t = json!({ "type": "string", "minLength": 1, "pattern": NOT_BLANK_PATTERN });
        if let Some(types) = &event_types {
            let mut all = vec!["*".to_owned()];
            all.extend(types.iter().cloned());
            t["enum"] = json!(all);
        }
        t
    };
    let published_type = match &event_types {
        Some(types) => json!({ "enum": types }),
        None => {
            let mut t = not_blank();
            t["not"] = json!({ "const": "*" });
            t
        }
    };
    let headers = json!({
        "maxProperties": subscriptions::outbound::MAX_HEADERS,
        "propertyNames": { "pattern": HEADER_NAME_PATTERN },
        "additionalProperties": {
            "type": "string",
            "maxLength": subscriptions::outbound::MAX_HEADER_VALUE,
            "pattern": HEADER_VALUE_PATTERN,
        },
        "description": "Extra HTTP headers sent with every delivery. Refused: hop-by-hop and framing headers (Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*, Host, Content-Length, Content-Type, Content-Encoding, Expect) and the headers the gateway signs with (webhook-*, svix-*, ms-signature, kz-callback-token); names ignore case.",
    });
    // A chosen secret: `whsec_` + base64 of 24–64 bytes (Standard
    // Webhooks) or 32–64 printable characters (ms-signature).
    let secret = json!({ "minLength": 32, "maxLength": 94, "pattern": "^[!-~]+$" });
    for body in ["CreateWebhook", "UpdateWebhook"] {
        let at = |field: &str| format!("/components/schemas/{body}/properties/{field}");
        merge(doc, &at("objectId"), not_blank());
        merge(doc, &at("objectType"), object_type.clone());
        merge(
            doc,
            &at("eventTypes"),
            json!({ "minItems": 1, "items": subscribed_type.clone() }),
        );
        merge(
            doc,
            &at("callBackUrl"),
            json!({ "minLength": 1, "format": "uri" }),
        );
        merge(
            doc,
            &at("callBackToken"),
            json!({ "pattern": HEADER_VALUE_PATTERN }),
        );
        merge(doc, &at("headers"), headers.clone());
        merge(doc, &at("secret"), secret.clone());
    }
    let at = |field: &str| format!("/components/schemas/PublishEvent/properties/{field}");
    merge(doc, &at("objectId"), not_blank());
    merge(doc, &at("objectType"), object_type.clone());
    merge(doc, &at("eventType"), published_type);
    merge(doc, &at("id"), not_blank());
    merge(
        doc,
        "/components/schemas/RotateSecret/properties/secret",
        secret,
    );
    merge_param(doc, "/v1/webhook", "get", "objectType", object_type);
    for (path, method) in [("/admin/events", "get"), ("/admin/replay", "post")] {
        merge_param(
            doc,
            path,
            method,
            "status",
            json!({ "enum": ["pending", "delivered", "dead"] }),
        );
        merge_param(doc, path, method, "since", time_param());
        merge_param(doc, path, method, "until", time_param());
    }
    merge_param(
        doc,
        "/admin/events",
        "get",
        "limit",
        json!({ "minimum": 1, "maximum": 1000 }),
    );
    refuse_nul(doc);
}

/// The document for a gateway whose subscription settings are `rt`.
pub fn document(rt: Option<&SubscriptionsRuntime>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    constrain(&mut doc, rt);
    doc
}

/// The document with the default catalogue, as pretty JSON (what
/// `gateway/openapi.json` holds).
pub fn json() -> String {
    json_for(None)
}

/// The document for a gateway whose subscription settings are `rt`, as
/// pretty JSON.
pub fn json_for(rt: Option<&SubscriptionsRuntime>) -> String {
    serde_json::to_string_pretty(&document(rt)).unwrap_or_default()
}
