//! `/v1`: the subscription API (`/v1/webhook`, shaped like Kaizala's) and
//! event publishing (`/v1/events`). JSON in camelCase; every request
//! carries an `accessToken` header naming its tenant.
//!
//! The paths and field names are a contract.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::SubscriptionsRuntime;
use super::signature::{new_secret, new_token};
use crate::clock::now_ms;
use crate::delivery::ssrf;
use crate::pipeline::new_event_id;
use crate::plugin::Message;
use crate::state::AppState;
use crate::store::{Fanout, Inserted, NewEvent, StoreError, Subscription, rfc3339};

/// The `/v1` routes (served only when `subscriptions:` is configured).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhook", post(create_webhook).get(list_webhooks))
        .route(
            "/v1/webhook/{id}",
            put(update_webhook).delete(delete_webhook),
        )
        .route("/v1/webhook/{id}/rotate-secret", post(rotate_secret))
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

/// Parses a JSON body, naming the field at fault on error.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, V1Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
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

/// `POST /v1/webhook` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Object whose events are wanted.
    pub object_id: String,
    /// Type of that object.
    pub object_type: String,
    /// Event types (`*` for all).
    pub event_types: Vec<String>,
    /// Where to POST events. HTTPS, unless the address is allow-listed.
    pub call_back_url: String,
    /// Sent back in `kz-callback-token` with every event.
    #[serde(default)]
    pub call_back_token: Option<String>,
    /// Sent back as `context` with every event.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub call_back_context: Option<Value>,
    /// Expiry, epoch milliseconds (default: two years).
    #[serde(default)]
    pub validity: Option<u64>,
}

/// `POST /v1/webhook` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The subscription's id.
    pub webhook_id: String,
    /// Its signing secret (`whsec_…`): deliveries carry Standard Webhooks
    /// signatures made with it.
    pub secret: String,
}

/// A subscription as the API shows it.
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
    /// Callback URL.
    pub callback_url: String,
    /// Callback token.
    pub callback_token: Option<String>,
    /// Callback context.
    #[schema(value_type = Option<Object>)]
    pub callback_context: Option<Value>,
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
}

impl From<Subscription> for WebhookView {
    fn from(s: Subscription) -> Self {
        WebhookView {
            id: s.id,
            object_id: s.object_id,
            object_type: s.object_type,
            events: s.event_types,
            callback_url: s.callback_url,
            callback_token: s.callback_token,
            callback_context: s.context,
            validity: s.validity_ms,
            active: s.active,
            disabled_reason: s.disabled_reason,
            failing_since: s.failing_since_ms.map(rfc3339),
            created_at: rfc3339(s.created_at_ms),
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
    let answer = state
        .delivery()
        .subscriber_client()
        .post(parsed)
        .timeout(rt.validation_timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(json!({ "validationToken": token }).to_string())
        .send()
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
        Err(e) if e.is_timeout() => Err(failed(format!(
            "the callback did not answer the validation request within {:?}",
            rt.validation_timeout
        ))),
        Err(e) => Err(failed(format!("the validation request failed: {e}"))),
        Ok(resp) if resp.status() != StatusCode::OK => Err(failed(format!(
            "the callback answered the validation request with {} (expected 200 echoing the validationToken)",
            resp.status().as_u16()
        ))),
        Ok(resp) => {
            let body = resp.text().await.unwrap_or_default();
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
        (status = 400, description = "Bad input or failed callback validation", body = ApiErrorBody),
        (status = 401, description = "Missing or unknown accessToken", body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let req: CreateWebhook = parse(&body)?;
    if req.object_id.trim().is_empty() {
        return Err(bad("objectId", "must not be empty"));
    }
    if req.object_type.trim().is_empty() {
        return Err(bad("objectType", "must not be empty"));
    }
    check_event_types(&rt, &req.event_types)?;
    let now = now_ms();
    let validity = req
        .validity
        .unwrap_or(now + super::DEFAULT_VALIDITY.as_millis() as u64);
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
        secret: new_secret(),
        created_at_ms: now,
        failing_since_ms: None,
        disabled_reason: None,
    };
    let created = Created {
        webhook_id: sub.id.clone(),
        secret: sub.secret.clone(),
    };
    state.store().create_subscription(sub).await?;
    Ok((StatusCode::OK, Json(created)).into_response())
}

/// `GET /v1/webhook` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only this object.
    pub object_id: Option<String>,
    /// Only this object type.
    pub object_type: Option<String>,
}

/// List the caller's subscriptions.
#[utoipa::path(get, path = "/v1/webhook", tag = "subscriptions",
    params(ListQuery),
    responses(
        (status = 200, body = WebhookList),
        (status = 401, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> V1Result {
    let (tenant, _) = tenant(&state, &headers)?;
    let subs = state
        .store()
        .list_subscriptions(tenant, q.object_id, q.object_type)
        .await?;
    Ok(Json(WebhookList {
        webhooks: subs.into_iter().map(WebhookView::from).collect(),
    })
    .into_response())
}

/// `PUT /v1/webhook/{id}` body: any subset of fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New object id.
    pub object_id: Option<String>,
    /// New object type.
    pub object_type: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New callback URL (validated again).
    pub call_back_url: Option<String>,
    /// New callback token.
    pub call_back_token: Option<String>,
    /// New callback context.
    #[schema(value_type = Option<Object>)]
    pub call_back_context: Option<Value>,
    /// New expiry (epoch ms).
    pub validity: Option<u64>,
    /// `true` re-enables a disabled subscription; `false` pauses it.
    pub active: Option<bool>,
}

/// Change a subscription (re-enable with `{"active": true}`).
#[utoipa::path(put, path = "/v1/webhook/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, body = WebhookView),
        (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn update_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let req: UpdateWebhook = parse(&body)?;
    let mut sub = state
        .store()
        .get_subscription(Some(tenant), id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    if let Some(v) = req.object_id {
        if v.trim().is_empty() {
            return Err(bad("objectId", "must not be empty"));
        }
        sub.object_id = v;
    }
    if let Some(v) = req.object_type {
        if v.trim().is_empty() {
            return Err(bad("objectType", "must not be empty"));
        }
        sub.object_type = v;
    }
    if let Some(v) = req.event_types {
        check_event_types(&rt, &v)?;
        sub.event_types = v;
    }
    if let Some(v) = req.validity {
        if v <= now_ms() {
            return Err(bad(
                "validity",
                "must be in the future (epoch milliseconds)",
            ));
        }
        sub.validity_ms = v;
    }
    if let Some(url) = req.call_back_url {
        validate_callback(&state, &rt, &url).await?;
        sub.callback_url = url;
    }
    if req.call_back_token.is_some() {
        sub.callback_token = req.call_back_token;
    }
    if req.call_back_context.is_some() {
        sub.context = req.call_back_context;
    }
    if let Some(active) = req.active {
        sub.active = active;
        if active {
            // A fresh start: the failure streak that disabled it is over.
            sub.failing_since_ms = None;
            sub.disabled_reason = None;
        } else {
            sub.disabled_reason = Some("paused through the API".into());
        }
    }
    if !state.store().update_subscription(sub.clone()).await? {
        return Err(not_found(&id));
    }
    Ok(Json(WebhookView::from(sub)).into_response())
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/v1/webhook/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> V1Result {
    let (tenant, _) = tenant(&state, &headers)?;
    if !state
        .store()
        .delete_subscription(tenant, id.clone())
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhook/{id}/rotate-secret` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    /// The new `whsec_…` secret; the old one stops signing at once.
    pub secret: String,
}

/// Replace a subscription's signing secret.
#[utoipa::path(post, path = "/v1/webhook/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, body = Rotated),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
    ),
    security(("accessToken" = [])))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> V1Result {
    let (tenant, _) = tenant(&state, &headers)?;
    let mut sub = state
        .store()
        .get_subscription(Some(tenant), id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    sub.secret = new_secret();
    let secret = sub.secret.clone();
    if !state.store().update_subscription(sub).await? {
        return Err(not_found(&id));
    }
    Ok(Json(Rotated { secret }).into_response())
}

/// `POST /v1/events` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEvent {
    /// Object the event is about.
    pub object_id: String,
    /// Type of that object.
    pub object_type: String,
    /// Event type.
    pub event_type: String,
    /// Payload (validated against the type's schema when declared).
    #[schema(value_type = Object)]
    pub data: Value,
    /// Idempotency key: the same id again within `store.dedup_window` is
    /// accepted but not delivered again.
    #[serde(default)]
    pub id: Option<String>,
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
    ),
    security(("accessToken" = [])))]
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> V1Result {
    let (tenant, rt) = tenant(&state, &headers)?;
    let req: PublishEvent = parse(&body)?;
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
    let event_id = req.id.clone().unwrap_or_else(new_event_id);
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
    let dedup_since =
        received.saturating_sub(state.snapshot().config.store.dedup_window.0.as_millis() as u64);
    let event = NewEvent {
        id: new_event_id(),
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
    let published = match state.store().insert(event, dedup_since).await? {
        Inserted::New { deliveries } => {
            if deliveries > 0 {
                state.delivery().wake();
            }
            Published {
                id: event_id,
                deliveries,
                duplicate: false,
            }
        }
        Inserted::Duplicate { .. } => Published {
            id: event_id,
            deliveries: 0,
            duplicate: true,
        },
    };
    Ok((StatusCode::ACCEPTED, Json(published)).into_response())
}
