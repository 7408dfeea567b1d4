//! `/v1`: the subscription API (`/v1/webhook`, shaped like Kaizala's) and
//! event publishing (`/v1/events`). JSON in camelCase; keys are also taken
//! in PascalCase (and in the spellings GET answers with), flags as
//! `"true"`/`"false"` strings, as Kaizala's reference sends them (see
//! `input`). Every request carries an `accessToken` header naming its
//! tenant.
//!
//! Beyond Kaizala, a registration carries what ASP.NET WebHooks' sender
//! allows: extra `headers`, `properties` merged into each payload, a
//! subscriber-chosen `secret` and a `signatureScheme`; a secret rotation
//! keeps the previous secret signing for `secret_rotation_overlap`.
//!
//! The paths and field names are a contract.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::SubscriptionsRuntime;
use super::input::{BadInput, EpochMs, Flag, canonical_object, epoch_ms_schema, flag_schema};
use super::outbound::{check_headers, check_properties};
use crate::clock::now_ms;
use crate::delivery::Committed;
use crate::delivery::client::SendError;
use crate::delivery::ssrf;
use crate::pipeline::new_event_id;
use crate::plugin::Message;
use crate::signing::{check_secret, new_secret, new_token};
use crate::state::AppState;
use crate::store::{
    Fanout, NewEvent, SecretRotation, SignatureScheme, StoreError, Subscription, SubscriptionPatch,
    rfc3339,
};

/// The `/v1` routes (served only when `subscriptions:` is configured).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhook", post(create_webhook).get(list_webhooks))
        .route(
            "/v1/webhook/{id}",
            get(get_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route("/v1/webhook/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/webhook/{id}/parked", get(list_parked))
        .route("/v1/events", post(publish))
}

/// An error answer: `error` is a stable code, `field` names the offending
/// input when there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// Stable error code.
    pub error: String,
    /// The request field at fault, when there is one (e.g. `callBackUrl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Human-readable reason.
    pub message: String,
}

/// A refusal of the `/v1` API: status plus [`ApiErrorBody`].
#[derive(Debug)]
pub struct V1Error {
    status: StatusCode,
    body: Box<ApiErrorBody>,
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        (self.status, Json(*self.body)).into_response()
    }
}

impl From<StoreError> for V1Error {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Overloaded) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                None,
                "retry later",
            );
        }
        tracing::error!(error = %e, "subscription API: store failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            None,
            "retry later",
        )
    }
}

type V1Result = Result<Response, V1Error>;

fn error(
    status: StatusCode,
    code: &str,
    field: Option<&str>,
    message: impl Into<String>,
) -> V1Error {
    V1Error {
        status,
        body: Box::new(ApiErrorBody {
            error: code.to_owned(),
            field: field.map(str::to_owned),
            message: message.into(),
        }),
    }
}

fn bad(field: &str, message: impl Into<String>) -> V1Error {
    error(StatusCode::BAD_REQUEST, "bad_request", Some(field), message)
}

fn not_found(id: &str) -> V1Error {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        format!("no webhook {id:?}"),
    )
}

/// The caller's tenant, from `accessToken`.
fn tenant(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Arc<SubscriptionsRuntime>), V1Error> {
    let snapshot = state.snapshot();
    let Some(rt) = snapshot.subscriptions.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            "the subscription API is not configured",
        ));
    };
    let token = headers
        .get("accesstoken")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match rt.tenant_for(token) {
        Some(t) => Ok((t.to_owned(), rt.clone())),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some("accessToken"),
            "a valid accessToken header is required",
        )),
    }
}

/// Parses a JSON body the Kaizala way (keys in any case, see `input`),
/// naming the field at fault on error.
fn parse<T: DeserializeOwned>(
    body: &[u8],
    fields: &[&str],
    aliases: &[(&str, &str)],
) -> Result<T, V1Error> {
    typed(canonical(body, fields, aliases)?)
}

/// `body` as a JSON object with its keys canonically spelt (see `input`).
fn canonical(
    body: &[u8],
    fields: &[&str],
    aliases: &[(&str, &str)],
) -> Result<Map<String, Value>, V1Error> {
    canonical_object(body, fields, aliases).map_err(|BadInput { field, message }| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            field.as_deref(),
            message,
        )
    })
}

/// A canonical object as `T`, naming the field at fault on error.
fn typed<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, V1Error> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Unknown and missing fields name themselves in serde's message.
        let field = if path == "." {
            None
        } else {
            Some(path.as_str())
        };
        let message = inner.to_string();
        let field = field
            .map(str::to_owned)
            .or_else(|| message.split('`').nth(1).map(str::to_owned));
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            field.as_deref(),
            message,
        )
    })
}

/// A query string that does not fit: 400 in the API's JSON shape (axum's
/// own rejection is plain text).
fn bad_query(e: QueryRejection) -> V1Error {
    error(StatusCode::BAD_REQUEST, "bad_request", None, e.body_text())
}

/// A path segment that does not decode: 400 in the API's JSON shape.
fn bad_path(e: PathRejection) -> V1Error {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("id"),
        e.body_text(),
    )
}

/// Aliases of create and update bodies: GET's `events` is `eventTypes`.
/// (`callbackUrl` and the like need none: keys ignore case.)
const WEBHOOK_ALIASES: &[(&str, &str)] = &[("events", "eventTypes")];

/// Keys of `POST /v1/webhook`.
const CREATE_FIELDS: &[&str] = &[
    "objectId",
    "objectType",
    "eventTypes",
    "callBackUrl",
    "callBackToken",
    "callBackContext",
    "validity",
    "headers",
    "properties",
    "secret",
    "signatureScheme",
];

/// Keys of `PUT /v1/webhook/{id}`: the create keys, `active`, and every
/// read-only key GET answers with (accepted and ignored, so a GET body can
/// be sent back as it is).
const UPDATE_FIELDS: &[&str] = &[
    "objectId",
    "objectType",
    "eventTypes",
    "callBackUrl",
    "callBackToken",
    "callBackContext",
    "validity",
    "headers",
    "properties",
    "secret",
    "signatureScheme",
    "active",
    "id",
    "filters",
    "ts",
    "createdAt",
    "disabledReason",
    "failingSince",
    "previousSecretExpiresAt",
];

/// Keys of `POST /v1/events`.
const PUBLISH_FIELDS: &[&str] = &["objectId", "objectType", "eventType", "data", "id"];

/// A signature scheme as the API names it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeName {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64>` (the default).
    StandardWebhooks,
    /// ASP.NET WebHooks: `ms-signature: sha256=<hex>` over the body,
    /// keyed with the secret's UTF-8 bytes.
    MsSignature,
}

impl From<SchemeName> for SignatureScheme {
    fn from(s: SchemeName) -> Self {
        match s {
            SchemeName::StandardWebhooks => SignatureScheme::StandardWebhooks,
            SchemeName::MsSignature => SignatureScheme::MsSignature,
        }
    }
}

impl From<SignatureScheme> for SchemeName {
    fn from(s: SignatureScheme) -> Self {
        match s {
            SignatureScheme::StandardWebhooks => SchemeName::StandardWebhooks,
            SignatureScheme::MsSignature => SchemeName::MsSignature,
        }
    }
}

/// Refuses blank strings (all whitespace, or empty).
fn not_blank(field: &str, v: &str) -> Result<(), V1Error> {
    if v.trim().is_empty() {
        Err(bad(field, "must not be empty"))
    } else if v.chars().count() > MAX_KEY_CHARS {
        Err(bad(
            field,
            format!("must be at most {MAX_KEY_CHARS} characters"),
        ))
    } else {
        Ok(())
    }
}

/// The longest object id, event id or published event type: each is
/// stored and indexed as text, and an index entry is bounded (see
/// [`crate::text`]). Counted in characters, as JSON Schema's `maxLength`.
pub const MAX_KEY_CHARS: usize = crate::text::MAX_KEY_BYTES;

/// Checks `objectType` against the catalogue.
fn check_object_type(rt: &SubscriptionsRuntime, v: &str) -> Result<(), V1Error> {
    if rt.knows_object_type(v) {
        Ok(())
    } else {
        Err(bad(
            "objectType",
            format!(
                "{v:?} is not an object type; one of: {}",
                rt.object_types.join(", ")
            ),
        ))
    }
}

/// A callback token goes out as the `kz-callback-token` header, so it must
/// be a valid header value.
fn check_callback_token(v: &str) -> Result<(), V1Error> {
    if v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(bad(
            "callBackToken",
            "must be printable ASCII: it is sent as the kz-callback-token header",
        ))
    }
}

fn check_extras(
    headers: Option<&BTreeMap<String, String>>,
    properties: Option<&serde_json::Map<String, Value>>,
) -> Result<(), V1Error> {
    if let Some(h) = headers {
        check_headers(h).map_err(|(field, why)| bad(&field, why))?;
    }
    if let Some(p) = properties {
        check_properties(p).map_err(|why| bad("properties", why))?;
    }
    Ok(())
}

/// A rotation to `new`: the current secret keeps signing next to it until
/// the overlap ends.
fn rotation(new: String, now: u64, rt: &SubscriptionsRuntime) -> SecretRotation {
    let overlap = u64::try_from(rt.secret_rotation_overlap.as_millis()).unwrap_or(u64::MAX);
    SecretRotation {
        secret: new,
        previous_expires_ms: now.saturating_add(overlap),
    }
}

/// Two years from `now`, in ms: the default `validity`.
fn default_validity(now: u64) -> u64 {
    now.saturating_add(u64::try_from(super::DEFAULT_VALIDITY.as_millis()).unwrap_or(u64::MAX))
}

/// `POST /v1/webhook` body. Keys are also accepted in PascalCase (any
/// ASCII case) and `events` for `eventTypes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Object whose events are wanted.
    pub object_id: String,
    /// Type of that object, from `subscriptions.object_types` (default
    /// `Group`, `Action`, `ActionPackage`).
    pub object_type: String,
    /// Event types (`*` for all).
    pub event_types: Vec<String>,
    /// Where to POST events. HTTPS, unless the address is allow-listed.
    /// The callback must echo a validation token first.
    pub call_back_url: String,
    /// Sent back in `kz-callback-token` with every event.
    #[serde(default)]
    pub call_back_token: Option<String>,
    /// Sent back as `context` with every event (any JSON; Kaizala's
    /// reference sends a string).
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub call_back_context: Option<Value>,
    /// Expiry, epoch milliseconds (default: two years from now).
    #[serde(default)]
    #[schema(schema_with = epoch_ms_schema)]
    pub validity: Option<EpochMs>,
    /// Extra HTTP headers sent with every delivery (ASP.NET WebHooks'
    /// registration headers). Hop-by-hop, framing and signature headers
    /// (`Connection`, `Host`, `Content-Type`, `webhook-*`, `ms-signature`,
    /// `kz-callback-token`, …) are refused; at most 32.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Extra properties merged into every payload under `properties`
    /// (ASP.NET WebHooks' registration properties); at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Map<String, Value>>,
    /// The signing secret, chosen by the subscriber (default: a generated
    /// `whsec_…`). Standard Webhooks: `whsec_` + base64 of 24 to 64 bytes.
    /// ms-signature: 32 to 64 printable ASCII characters.
    #[serde(default)]
    pub secret: Option<String>,
    /// How deliveries are signed (default `standard-webhooks`).
    #[serde(default)]
    pub signature_scheme: Option<SchemeName>,
}

// Constraints the derive cannot express (patterns, lengths, formats, the
// configured enums) are added to these schemas in `crate::openapi`.

/// `POST /v1/webhook` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The subscription's id.
    pub webhook_id: String,
    /// Its signing secret (the chosen one, or a generated `whsec_…`).
    pub secret: String,
    /// How deliveries are signed.
    pub signature_scheme: SchemeName,
}

/// A subscription as the API shows it. Every key is accepted back by
/// `PUT` (the read-only ones are ignored there).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Id.
    pub id: String,
    /// Object id.
    pub object_id: String,
    /// Object type.
    pub object_type: String,
    /// Event types.
    pub events: Vec<String>,
    /// Always empty; kept because Kaizala's GET answers it.
    pub filters: Vec<String>,
    /// Callback URL.
    pub callback_url: String,
    /// Callback token.
    pub callback_token: Option<String>,
    /// Callback context.
    #[schema(value_type = Option<Value>)]
    pub callback_context: Option<Value>,
    /// Created, epoch milliseconds (Kaizala's `ts`).
    pub ts: u64,
    /// Expiry, epoch milliseconds.
    pub validity: u64,
    /// Receives events.
    pub active: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Failing without success since (RFC 3339).
    pub failing_since: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Extra HTTP headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// Properties merged into every payload under `properties`.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Map<String, Value>>,
    /// How deliveries are signed.
    pub signature_scheme: SchemeName,
    /// While a rotation overlaps: when the previous secret stops signing
    /// (RFC 3339).
    pub previous_secret_expires_at: Option<String>,
}

impl WebhookView {
    fn new(s: Subscription, now: u64) -> Self {
        let overlapping =
            s.previous_secret.is_some() && s.previous_secret_expires_ms.is_some_and(|t| t > now);
        WebhookView {
            id: s.id,
            object_id: s.object_id,
            object_type: s.object_type,
            events: s.event_types,
            filters: Vec::new(),
            callback_url: s.callback_url,
            callback_token: s.callback_token,
            callback_context: s.context,
            ts: s.created_at_ms,
            validity: s.validity_ms,
            active: s.active,
            disabled_reason: s.disabled_reason,
            failing_since: s.failing_since_ms.map(rfc3339),
            created_at: rfc3339(s.created_at_ms),
            headers: s.headers,
            properties: s.properties,
            signature_scheme: s.signature_scheme.into(),
            previous_secret_expires_at: s
                .previous_secret_expires_ms
                .filter(|_| overlapping)
                .map(rfc3339),
        }
    }
}

/// `GET /v1/webhook` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The tenant's matching subscriptions.
    pub webhooks: Vec<WebhookView>,
}

/// Checks event types against the catalogue.
fn check_event_types(rt: &SubscriptionsRuntime, types: &[String]) -> Result<(), V1Error> {
    if types.is_empty() {
        return Err(bad(
            "eventTypes",
            "at least one event type (or \"*\") is required",
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(bad(&format!("eventTypes[{i}]"), "must not be empty"));
        }
        if !rt.declares(t) {
            return Err(bad(
                &format!("eventTypes[{i}]"),
                format!("{t:?} is not a declared event type"),
            ));
        }
    }
    Ok(())
}

/// How much of a validation answer's body is read: a token's echo is a
/// few dozen bytes, and a callback that answers more is not echoing it.
const VALIDATION_ANSWER_READ: usize = 64 * 1024;

/// Proves the subscriber controls `url`: POST a fresh token as
/// `?validationToken=` and as `{"validationToken": …}`, expect 200 with
/// exactly that token within `validation_timeout`.
async fn validate_callback(
    state: &AppState,
    rt: &SubscriptionsRuntime,
    url: &str,
) -> Result<(), V1Error> {
    let mut parsed =
        reqwest::Url::parse(url).map_err(|e| bad("callBackUrl", format!("not a URL: {e}")))?;
    ssrf::check_url(&parsed, &rt.allow)
        .await
        .map_err(|reason| bad("callBackUrl", reason))?;
    let token = new_token();
    parsed
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let answer = state
        .delivery()
        .subscriber_client()
        .post(
            &parsed,
            rt.validation_timeout,
            headers,
            json!({ "validationToken": token }).to_string().into(),
            VALIDATION_ANSWER_READ,
        )
        .await;
    let failed = |reason: String| {
        error(
            StatusCode::BAD_REQUEST,
            "callback_validation_failed",
            Some("callBackUrl"),
            reason,
        )
    };
    match answer {
        Err(SendError::Timeout) => Err(failed(format!(
            "the callback did not answer the validation request within {:?}",
            rt.validation_timeout
        ))),
        Err(e) => Err(failed(format!(
            "the validation request failed: {}",
            e.describe(rt.validation_timeout)
        ))),
        Ok(answer) if answer.status != StatusCode::OK => Err(failed(format!(
            "the callback answered the validation request with {} (expected 200 echoing the validationToken)",
            answer.status.as_u16()
        ))),
        Ok(answer) => {
            let body = String::from_utf8_lossy(&answer.body);
            let echoed = body.trim().trim_matches('"');
            if crate::plugin::constant_time_eq(echoed.as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err(failed(
                    "the callback did not echo the validationToken as its body".into(),
                ))
            }
        }
    }
}

/// Register a callback URL for an object's events.
#[utoipa::path(post, path = "/v1/webhook", tag = "subscriptions",
    request_body = CreateWebhook,
    responses(
        (status = 200, description = "Created after the callback echoed its validation token", body = Created),
        (status = 400, description = "Bad input, or the callback failed validation (a URL the gateway may not reach, or no echo)", body = ApiErrorBody),
        (status = 401, description = "Missing or unknown accessToken", body = ApiErrorBody),
        (status = 404, description = "The subscription API is not configured (no `subscriptions:` section)", body = ApiErrorBody),
        (status = 413, description = "Body over 2 MiB"),
        (status = 503, description = "The store is saturated or unavailable; retry", body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let req: CreateWebhook = parse(&body, CREATE_FIELDS, WEBHOOK_ALIASES)?;
    not_blank("objectId", &req.object_id)?;
    check_object_type(&rt, &req.object_type)?;
    check_event_types(&rt, &req.event_types)?;
    if let Some(t) = &req.call_back_token {
        check_callback_token(t)?;
    }
    check_extras(req.headers.as_ref(), req.properties.as_ref())?;
    let scheme: SignatureScheme = req.signature_scheme.map(Into::into).unwrap_or_default();
    if let Some(secret) = &req.secret {
        check_secret(scheme, secret).map_err(|why| bad("secret", why))?;
    }
    let now = now_ms();
    let validity = req.validity.map_or_else(|| default_validity(now), |v| v.0);
    if validity <= now {
        return Err(bad(
            "validity",
            "must be in the future (epoch milliseconds)",
        ));
    }
    validate_callback(&state, &rt, &req.call_back_url).await?;
    let sub = Subscription {
        id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
        tenant,
        object_id: req.object_id,
        object_type: req.object_type,
        event_types: req.event_types,
        callback_url: req.call_back_url,
        callback_token: req.call_back_token,
        context: req.call_back_context,
        validity_ms: validity,
        active: true,
        secret: req.secret.unwrap_or_else(new_secret),
        created_at_ms: now,
        failing_since_ms: None,
        disabled_reason: None,
        headers: req.headers.unwrap_or_default(),
        properties: req.properties,
        signature_scheme: scheme,
        previous_secret: None,
        previous_secret_expires_ms: None,
    };
    let created = Created {
        webhook_id: sub.id.clone(),
        secret: sub.secret.clone(),
        signature_scheme: scheme.into(),
    };
    state.store().create_subscription(sub).await?;
    Ok((StatusCode::OK, Json(created)).into_response())
}

/// `GET /v1/webhook` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only this object.
    pub object_id: Option<String>,
    /// Only this object type (from `subscriptions.object_types`).
    pub object_type: Option<String>,
}

/// List the caller's subscriptions.
#[utoipa::path(get, path = "/v1/webhook", tag = "subscriptions",
    params(ListQuery),
    responses(
        (status = 200, body = WebhookList),
        (status = 400, description = "Unknown query parameter or object type", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "The subscription API is not configured (no `subscriptions:` section)", body = ApiErrorBody),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    if let Some(t) = &q.object_type {
        check_object_type(&rt, t)?;
    }
    let subs = state
        .store()
        .list_subscriptions(tenant, q.object_id, q.object_type)
        .await?;
    let now = now_ms();
    Ok(Json(WebhookList {
        webhooks: subs.into_iter().map(|s| WebhookView::new(s, now)).collect(),
    })
    .into_response())
}

/// One of the caller's subscriptions.
#[utoipa::path(get, path = "/v1/webhook/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, body = WebhookView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "No such webhook for this tenant", body = ApiErrorBody),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> V1Result {
    let sub = callers_subscription(&state, &headers, id).await?;
    Ok(Json(WebhookView::new(sub, now_ms())).into_response())
}

/// The caller's subscription `id`: another tenant's id is a 404 like an
/// unknown one.
async fn callers_subscription(
    state: &AppState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Subscription, V1Error> {
    let (tenant, _) = tenant(state, headers)?;
    let Path(id) = id.map_err(bad_path)?;
    state
        .store()
        .get_subscription(Some(tenant), id.clone())
        .await?
        .ok_or_else(|| not_found(&id))
}

/// Most parked deliveries one `GET /v1/webhook/{id}/parked` lists.
const MAX_PARKED_LISTED: usize = 1000;

/// A delivery kept for a disabled subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParkedView {
    /// The delivery's id (as in the admin API).
    pub delivery_id: i64,
    /// The gateway's id of the stored event (what `/admin/events/{id}`
    /// and the console show; the payload's `eventId` is the published id).
    pub stored_event_id: String,
    /// The published event's type.
    pub event_type: Option<String>,
    /// When the event was published, RFC 3339.
    pub received_at: String,
}

/// `GET /v1/webhook/{id}/parked` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedList {
    /// Oldest first, at most 1000: the order they are sent in once the
    /// subscription is enabled again.
    pub parked: Vec<ParkedView>,
}

/// The deliveries kept for one of the caller's subscriptions while it is
/// disabled (none while it is active): they are sent, oldest first, when
/// `PUT {"active": true}` enables it again.
#[utoipa::path(get, path = "/v1/webhook/{id}/parked", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, body = ParkedList),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "No such webhook for this tenant", body = ApiErrorBody),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn list_parked(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> V1Result {
    let sub = callers_subscription(&state, &headers, id).await?;
    let parked = state.store().parked(sub.id, MAX_PARKED_LISTED).await?;
    Ok(Json(ParkedList {
        parked: parked
            .into_iter()
            .map(|p| ParkedView {
                delivery_id: p.delivery_id,
                stored_event_id: p.event_id,
                event_type: p.event_type,
                received_at: p.received_at,
            })
            .collect(),
    })
    .into_response())
}

/// `PUT /v1/webhook/{id}` body: any subset of fields. Keys are also
/// accepted in PascalCase (any ASCII case) and in the spellings GET
/// answers with; GET's read-only keys are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New object id.
    pub object_id: Option<String>,
    /// New object type (from `subscriptions.object_types`).
    pub object_type: Option<String>,
    /// New event types (`events` works too).
    pub event_types: Option<Vec<String>>,
    /// New callback URL (validated again).
    pub call_back_url: Option<String>,
    /// New callback token.
    pub call_back_token: Option<String>,
    /// New callback context.
    #[schema(value_type = Option<Value>)]
    pub call_back_context: Option<Value>,
    /// New expiry (epoch ms).
    #[serde(default)]
    #[schema(schema_with = epoch_ms_schema)]
    pub validity: Option<EpochMs>,
    /// Replaces the extra headers (`{}` removes them).
    pub headers: Option<BTreeMap<String, String>>,
    /// Replaces the properties.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Map<String, Value>>,
    /// A new secret: a rotation (the current one keeps signing for
    /// `secret_rotation_overlap`).
    pub secret: Option<String>,
    /// New signature scheme (the secret must suit it).
    pub signature_scheme: Option<SchemeName>,
    /// `true` re-enables a disabled subscription; `false` pauses it.
    /// Kaizala's reference sends `"Active": "true"`.
    #[serde(default)]
    #[schema(schema_with = flag_schema)]
    pub active: Option<Flag>,
    /// Read-only (from GET): ignored.
    pub id: Option<String>,
    /// Read-only (from GET): ignored.
    pub filters: Option<Vec<String>>,
    /// Read-only (from GET): ignored.
    #[serde(default)]
    #[schema(schema_with = epoch_ms_schema)]
    pub ts: Option<EpochMs>,
    /// Read-only (from GET): ignored.
    pub created_at: Option<String>,
    /// Read-only (from GET): ignored.
    pub disabled_reason: Option<String>,
    /// Read-only (from GET): ignored.
    pub failing_since: Option<String>,
    /// Read-only (from GET): ignored.
    pub previous_secret_expires_at: Option<String>,
}

/// Change a subscription (re-enable with `{"active": true}` or
/// `{"Active": "true"}`).
#[utoipa::path(put, path = "/v1/webhook/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = WebhookView),
        (status = 400, description = "Bad input, or the new callback failed validation", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 413, description = "Body over 2 MiB"),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn update_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let Path(id) = id.map_err(bad_path)?;
    let req: UpdateWebhook = parse(&body, UPDATE_FIELDS, WEBHOOK_ALIASES)?;
    // Read to check the request against the subscription; then write a
    // patch of only the fields the request names, so a concurrent disable
    // by delivery health, or a secret rotation, is never undone by a PUT.
    let sub = state
        .store()
        .get_subscription(Some(tenant.clone()), id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    let now = now_ms();
    let mut patch = SubscriptionPatch::default();
    if let Some(v) = req.object_id {
        not_blank("objectId", &v)?;
        patch.object_id = Some(v);
    }
    if let Some(v) = req.object_type {
        check_object_type(&rt, &v)?;
        patch.object_type = Some(v);
    }
    if let Some(v) = req.event_types {
        check_event_types(&rt, &v)?;
        patch.event_types = Some(v);
    }
    if let Some(EpochMs(v)) = req.validity {
        if v <= now {
            return Err(bad(
                "validity",
                "must be in the future (epoch milliseconds)",
            ));
        }
        patch.validity_ms = Some(v);
    }
    if let Some(t) = &req.call_back_token {
        check_callback_token(t)?;
    }
    check_extras(req.headers.as_ref(), req.properties.as_ref())?;
    let scheme = req
        .signature_scheme
        .map_or(sub.signature_scheme, SignatureScheme::from);
    match req.secret {
        Some(new) => {
            check_secret(scheme, &new).map_err(|why| bad("secret", why))?;
            if new != sub.secret {
                patch.rotation = Some(rotation(new, now, &rt));
            }
        }
        // The current secret is checked only when the scheme changes: a
        // GET body sent back (same scheme) must not fail on it.
        None if scheme != sub.signature_scheme => {
            check_secret(scheme, &sub.secret).map_err(|why| {
                bad(
                    "signatureScheme",
                    format!(
                        "the current secret does not suit this scheme ({why}); send a `secret` too"
                    ),
                )
            })?
        }
        None => {}
    }
    if scheme != sub.signature_scheme {
        patch.signature_scheme = Some(scheme);
    }
    if let Some(url) = req.call_back_url {
        // Unchanged (a GET body sent back): no new validation round-trip.
        if url != sub.callback_url {
            validate_callback(&state, &rt, &url).await?;
            patch.callback_url = Some(url);
        }
    }
    if req.call_back_token.is_some() {
        patch.callback_token = Some(req.call_back_token);
    }
    if req.call_back_context.is_some() {
        patch.context = Some(req.call_back_context);
    }
    patch.headers = req.headers;
    if let Some(p) = req.properties {
        patch.properties = Some(Some(p));
    }
    patch.active = req.active.map(|Flag(a)| a);
    let sub = state
        .store()
        .update_subscription(tenant, id.clone(), patch)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if req.active == Some(Flag(true)) {
        // Deliveries parked while it was off are due now.
        state.delivery().wake();
    }
    Ok(Json(WebhookView::new(sub, now)).into_response())
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/v1/webhook/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> V1Result {
    let (tenant, _) = tenant(&state, &headers)?;
    let Path(id) = id.map_err(bad_path)?;
    if !state
        .store()
        .delete_subscription(tenant, id.clone())
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhook/{id}/rotate-secret` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret, chosen by the subscriber (default: generated). It
    /// must suit the subscription's signature scheme.
    pub secret: Option<String>,
}

/// `POST /v1/webhook/{id}/rotate-secret` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    /// The new secret.
    pub secret: String,
    /// Until then (RFC 3339) the previous secret signs too, next to the
    /// new one (`subscriptions.secret_rotation_overlap`).
    pub previous_secret_expires_at: String,
}

/// Replace a subscription's signing secret. Both secrets sign during the
/// overlap: Standard Webhooks sends two `v1,` signatures, ms-signature two
/// `ms-signature` header fields (newest first).
#[utoipa::path(post, path = "/v1/webhook/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    request_body(content = Option<RotateSecret>, description = "Optional: `{\"secret\": …}` to choose the new secret"),
    responses(
        (status = 200, body = Rotated),
        (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 413, description = "Body over 2 MiB"),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let Path(id) = id.map_err(bad_path)?;
    // The body is optional: nothing, or `null`, asks for a generated secret.
    let req: RotateSecret =
        if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
            RotateSecret::default()
        } else {
            parse(&body, &["secret"], &[])?
        };
    let new = match req.secret {
        Some(s) => {
            // A chosen secret must suit the subscription's scheme.
            let sub = state
                .store()
                .get_subscription(Some(tenant.clone()), id.clone())
                .await?
                .ok_or_else(|| not_found(&id))?;
            check_secret(sub.signature_scheme, &s).map_err(|why| bad("secret", why))?;
            s
        }
        None => new_secret(),
    };
    let rotation = rotation(new, now_ms(), &rt);
    let rotated = Rotated {
        secret: rotation.secret.clone(),
        previous_secret_expires_at: rfc3339(rotation.previous_expires_ms),
    };
    let patch = SubscriptionPatch {
        rotation: Some(rotation),
        ..Default::default()
    };
    state
        .store()
        .update_subscription(tenant, id.clone(), patch)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(rotated).into_response())
}

/// `POST /v1/events` body. Keys are also accepted in PascalCase.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEvent {
    /// Object the event is about.
    pub object_id: String,
    /// Type of that object (from `subscriptions.object_types`).
    pub object_type: String,
    /// Event type (not `*`, which only subscriptions use).
    pub event_type: String,
    /// Payload (validated against the type's schema when declared).
    #[schema(value_type = Value)]
    pub data: Value,
    /// Idempotency key: the same id again within `store.dedup_window` is
    /// accepted but not delivered again.
    #[serde(default)]
    pub id: Option<String>,
}

/// [`PublishEvent`] less its `data` (see `publish`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishHead {
    object_id: String,
    object_type: String,
    event_type: String,
    #[serde(default)]
    id: Option<String>,
}

/// `POST /v1/events` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// Event id (the given `id`, or a new one).
    pub id: String,
    /// Deliveries created (matching active subscriptions).
    pub deliveries: usize,
    /// True when this id was already published.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Publish an event to every matching subscription.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = PublishEvent,
    responses(
        (status = 202, description = "Stored durably; deliveries follow", body = Published),
        (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "The subscription API is not configured (no `subscriptions:` section)", body = ApiErrorBody),
        (status = 413, description = "Body over 2 MiB"),
        (status = 503, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let mut object = canonical(&body, PUBLISH_FIELDS, &[])?;
    // `data` is taken out as parsed: deserializing a `Value` into a
    // `Value` would build every map and array of it again.
    let data = object.remove("data");
    let head: PublishHead = typed(object)?;
    // Checked after the others, where serde puts a missing field.
    let data = data.ok_or_else(|| bad("data", "missing field `data`"))?;
    let req = PublishEvent {
        object_id: head.object_id,
        object_type: head.object_type,
        event_type: head.event_type,
        data,
        id: head.id,
    };
    not_blank("objectId", &req.object_id)?;
    check_object_type(&rt, &req.object_type)?;
    not_blank("eventType", &req.event_type)?;
    if let Some(id) = &req.id {
        not_blank("id", id)?;
    }
    if req.event_type == "*" || !rt.declares(&req.event_type) {
        return Err(bad(
            "eventType",
            format!("{:?} is not a declared event type", req.event_type),
        ));
    }
    if let Some(Some(schema)) = rt.event_types.as_ref().and_then(|t| t.get(&req.event_type))
        && let Some(e) = schema.iter_errors(&req.data).next()
    {
        let path = e.instance_path().as_str();
        return Err(bad(
            &format!("data{}", path.replace('/', ".")),
            e.to_string(),
        ));
    }
    let received = now_ms();
    // Without a publisher's id the event's own id is the one its
    // subscribers see (`eventId`, `webhook-id`), so that an operator finds
    // it by that id in the console (which looks a message id up by its
    // event or provider id). A publisher's id is the dedup key instead.
    let stored_id = new_event_id();
    let event_id = req.id.clone().unwrap_or_else(|| stored_id.clone());
    let envelope = json!({
        "eventId": event_id,
        "eventType": req.event_type,
        "objectId": req.object_id,
        "objectType": req.object_type,
        "createdAt": rfc3339(received),
        "data": req.data,
    });
    let mut message = Message::json(Some(&req.event_type), &envelope);
    message.id = Some(event_id.clone());
    let event = NewEvent {
        id: stored_id,
        route: format!("v1:{tenant}"),
        source_id: req.id.clone(),
        received_at_ms: received,
        messages: Vec::new(),
        fanout: vec![Fanout {
            tenant: Some(tenant),
            object_type: req.object_type,
            object_id: req.object_id,
            event_type: req.event_type,
            envelope: message,
        }],
        inbound: None,
    };
    let dedup_window = state.snapshot().config.store.dedup_window.0;
    let published = match state
        .delivery()
        .insert(state.store(), event, dedup_window, None)
        .await?
    {
        Committed::New {
            deliveries,
            handoff,
            ..
        } => {
            handoff.submit();
            Published {
                id: event_id,
                deliveries,
                duplicate: false,
            }
        }
        Committed::Duplicate { .. } => Published {
            id: event_id,
            deliveries: 0,
            duplicate: true,
        },
    };
    Ok((StatusCode::ACCEPTED, Json(published)).into_response())
}
