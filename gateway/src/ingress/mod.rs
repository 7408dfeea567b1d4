//! The HTTP front door: `/hooks/{route}` for webhooks (any method: some
//! handshakes are GETs), `/healthz` and `/metrics`.
//!
//! [`server`] accepts connections and enforces the limits that hold before
//! any handler runs (timeouts, connection and request caps, header
//! limits). A request is then bounded before any plugin sees it (body limit
//! per route, checked against `Content-Length` first and enforced while
//! reading, within the body deadline), then handed to the pipeline with the
//! snapshot loaded once for its lifetime.

pub mod server;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::clock;
use crate::config::DestinationKind;
use crate::delivery::Committed;
use crate::error::ApiError;
use crate::observability::flood::{Flood, log_limited};
use crate::pipeline::CompiledDestination;
use crate::pipeline::Outcome;
use crate::plugin::Message;
use crate::plugin::{InboundRequest, PluginResponse};
use crate::state::AppState;
use crate::store::stats::InboundView;
use crate::store::{Fanout, NewEvent, NewMessage, StoreError};

/// Metric label for requests to routes that do not exist, so unknown names
/// from the internet never become label values. Made once: a flood of
/// unknown routes allocates no label per request.
static UNKNOWN_ROUTE_LABEL: std::sync::LazyLock<std::sync::Arc<str>> =
    std::sync::LazyLock::new(|| std::sync::Arc::from("_unknown"));

/// The gateway's HTTP routes on `listen`. With `admin.listen` set,
/// `/metrics` and `/admin` are left to [`operator_router`].
pub fn router(state: AppState) -> Router {
    let separate = state.snapshot().config.admin.listen.is_some();
    let mut app = Router::new()
        .route("/hooks/{route}", any(hook))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi));
    if !separate {
        app = app.route("/metrics", get(metrics));
        if let Some(admin) = crate::admin::router(state.clone()) {
            app = app.merge(refusing_nul(admin));
        }
        // The console sits next to the admin API and is served when it is.
        if let Some(console) = crate::console::router(state.clone()) {
            app = app.merge(refusing_nul(console));
        }
    }
    if state.snapshot().subscriptions.is_some() {
        app = app.merge(refusing_nul(crate::subscriptions::api::router()));
    }
    app.fallback(not_found)
        .layer(axum::middleware::from_fn(
            crate::observability::request_id_layer,
        ))
        .with_state(state)
}

/// The routes of the operator's listener (`admin.listen`): `/metrics`,
/// `/admin` (with a token) and `/healthz`.
pub fn operator_router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    if let Some(admin) = crate::admin::router(state.clone()) {
        app = app.merge(refusing_nul(admin));
    }
    if let Some(console) = crate::console::router(state.clone()) {
        app = app.merge(refusing_nul(console));
    }
    app.fallback(not_found)
        .layer(axum::middleware::from_fn(
            crate::observability::request_id_layer,
        ))
        .with_state(state)
}

/// 200 while the gateway can accept webhooks; 503 with the reason when the
/// store cannot take writes (its writer stopped or its commits fail), so a
/// load balancer stops sending webhooks that would be refused.
#[utoipa::path(get, path = "/healthz", tag = "gateway",
    responses(
        (status = 200, description = "`{\"status\": \"ok\", \"generation\": n}`, with `\"store_panics\": n` once a store operation has panicked (it was rolled back and the store went on; a bug to report)", body = Object),
        (status = 503, description = "`{\"status\": \"unavailable\", \"generation\": n, \"store\": reason}`: the store cannot take writes", body = Object),
    ))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshot();
    match state.store().health() {
        Ok(()) => {
            let mut body = json!({ "status": "ok", "generation": snapshot.generation });
            let panics = state.store().operation_panics();
            if panics > 0 {
                body["store_panics"] = panics.into();
            }
            Json(body).into_response()
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "generation": snapshot.generation, "store": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // The backlog gauges are read from the store at scrape time: exact when
    // read, and free when nobody scrapes.
    match state.store().backlog().await {
        Ok(backlog) => state.metrics().set_backlog(&backlog, clock::now_ms()),
        Err(e) => tracing::warn!(error = %e, "cannot read the delivery backlog for /metrics"),
    }
    state
        .metrics()
        .set_store_free(state.store().free_disk_bytes());
    let snapshot = state.snapshot();
    state.metrics().set_paused(
        snapshot
            .destinations
            .iter()
            .filter(|(_, d)| d.paused)
            .map(|(name, _)| name.as_str()),
    );
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::json_for(state.snapshot().subscriptions.as_deref()),
    )
}

/// `routes` refusing a URL with an encoded NUL (`%00`) in its path or
/// query. What the admin API, the console and `/v1` read from a URL is an
/// id, a name or a filter to look up, and none can hold a NUL: PostgreSQL
/// refuses the statement outright, which would answer a typo with "store
/// unavailable" (see [`crate::text`]). A webhook's URL is not checked: its
/// query is the provider's, to its plugins. A raw NUL never gets this far:
/// HTTP/1 parsing refuses it.
fn refusing_nul(routes: Router<AppState>) -> Router<AppState> {
    routes.layer(axum::middleware::from_fn(refuse_encoded_nul))
}

async fn refuse_encoded_nul(req: Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri();
    if has_encoded_nul(uri.path()) || uri.query().is_some_and(has_encoded_nul) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "bad_request",
                "message": "the URL holds an encoded NUL character (%00), which no id, name or filter can contain",
            })),
        )
            .into_response();
    }
    next.run(req).await
}

/// Whether `s` has `%00`. A query's `+` and other escapes never decode to
/// NUL, and `%2500` is a literal `%00`, not this.
fn has_encoded_nul(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "message": "no such path" })),
    )
}

/// A webhook for route `route`, with any method (some handshakes are GETs
/// or HEADs). The route's verify plugin may answer in its own way (a
/// handshake echo, a Teams reply, its own 4xx).
#[utoipa::path(method(get, post, put, delete, patch, head, options, trace), path = "/hooks/{route}", tag = "gateway",
    params(("route" = String, Path, description = "Route name from the config")),
    request_body(content = Vec<u8>, content_type = "*/*", description = "The provider's payload, passed to the plugins as raw bytes"),
    responses(
        (status = 202, description = "Stored durably; deliveries follow: `{\"id\", \"source_id\", \"messages\", \"deliveries\"}`, or `{\"id\", \"duplicate\": true}`", body = Object),
        (status = 401, description = "Verification failed: `{\"error\": \"verification_failed\", \"message\"}`", body = Object),
        (status = 404, description = "No such route", body = Object),
        (status = 413, description = "Body over the route's limit", body = Object),
        (status = 500, description = "A plugin trapped, timed out or ran out of memory: the plugin named, with a request id", body = Object),
        (status = 503, description = "The store is saturated (with Retry-After) or a plugin could not be instantiated", body = Object),
        (status = "default", description = "The verify plugin's own answer (handshakes such as Slack's challenge, Graph's validationToken; a Teams reply; its own 4xx refusal)", content_type = "*/*"),
    ))]
pub async fn hook(
    State(state): State<AppState>,
    Path(route_name): Path<String>,
    req: Request,
) -> Response {
    let received_at_ms = clock::now_ms();
    let snapshot = state.snapshot();
    let Some(route) = snapshot.routes.get(&route_name).cloned() else {
        state.metrics().request(&UNKNOWN_ROUTE_LABEL, 404);
        return ApiError::UnknownRoute(route_name).into_response();
    };

    // One span per request, the trace's root; `event_id` is filled in once
    // the pipeline has named the event.
    let span = tracing::debug_span!(target: crate::observability::STAGE_TARGET, "ingress",
        route = &*route.name, event_id = tracing::field::Empty);
    let handled = handle(&state, &snapshot, &route, req, received_at_ms);
    let response = match tracing::Instrument::instrument(handled, span).await {
        Ok(resp) => resp,
        Err(e) => {
            match &e {
                // Shedding load is the cap working, not a fault.
                ApiError::Pipeline {
                    error: crate::pipeline::PipelineError::Busy { .. },
                    ..
                } => {
                    tracing::debug!(route = &*route.name, "route at max_in_flight: answered 503");
                }
                // A failing plugin or router is the operator's to fix.
                ApiError::Pipeline { request_id, error } => {
                    static FAILED: Flood = Flood::new();
                    log_limited!(FAILED, &route.name, error, route = &*route.name, request_id, error = %error, "webhook failed in the pipeline");
                }
                _ => {}
            }
            e.into_response()
        }
    };
    state
        .metrics()
        .request(&route.name, response.status().as_u16());
    response
}

async fn handle(
    state: &AppState,
    snapshot: &crate::pipeline::Snapshot,
    route: &crate::pipeline::CompiledRoute,
    req: Request,
    received_at_ms: u64,
) -> Result<Response, ApiError> {
    let limit = route.max_body_size;
    let (parts, body) = req.into_parts();
    // Set (or accepted from the client) by the request-id layer in front.
    let request_id = crate::observability::request_id(&parts.headers);
    // Refuse early when the sender announces an oversized body.
    if let Some(len) = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::PayloadTooLarge { limit }
            } else if server::is_body_timeout(&*e) {
                ApiError::BodyTimeout
            } else {
                ApiError::BadBody(format!("could not read the request body: {e}"))
            }
        })?
        .to_bytes();

    let inbound = inbound_request(&parts, body, &route.name, received_at_ms);

    let outcome = snapshot
        .process(route, &inbound, state.metrics())
        .await
        .map_err(|error| ApiError::Pipeline {
            request_id: request_id.clone(),
            error,
        })?;

    match outcome {
        Outcome::Rejected { status, reason } => {
            // A misconfigured sender, or someone probing the route, sends
            // nothing else: one line per route every window.
            static REJECTED: Flood = Flood::new();
            log_limited!(
                REJECTED,
                &route.name,
                info,
                route = &*route.name,
                status,
                reason,
                "webhook rejected by verifier"
            );
            Err(ApiError::Rejected { status, reason })
        }
        Outcome::Respond(r) => Ok(plugin_response(r)),
        Outcome::Accepted {
            event_id,
            source_id,
            routed,
            reply,
            consumed,
        } => {
            tracing::Span::current().record("event_id", event_id.as_str());
            let messages = routed.len();
            let config = &snapshot.config;
            let mut fanout = Vec::new();
            let new_messages: Vec<NewMessage> = routed
                .into_iter()
                .map(|r| {
                    let (subscribers, named): (Vec<_>, Vec<_>) = r
                        .destinations
                        .iter()
                        .partition(|d| d.kind == DestinationKind::Subscribers);
                    for dest in subscribers {
                        if let Some(f) = fanout_of(dest, &r.message, received_at_ms) {
                            fanout.push(f);
                        }
                    }
                    let mut destinations: Vec<String> =
                        named.iter().map(|d| d.name.to_string()).collect();
                    // A relayed route's messages all go to the relay too.
                    if let Some(relay) = &route.relay
                        && !destinations.contains(&relay.to)
                    {
                        destinations.push(relay.to.clone());
                    }
                    NewMessage {
                        destinations,
                        message: r.message,
                    }
                })
                .collect();
            // The request's own parts are not needed past this point: they
            // move into the stored view rather than being copied.
            let InboundRequest {
                method,
                mut path,
                query,
                mut headers,
                ..
            } = inbound;
            if !query.is_empty() {
                path = format!("{path}?{query}");
            }
            // Credentials never reach the store: the same rules as for what
            // is forwarded, the verifier's consumed headers included.
            crate::pipeline::credential::redact(&mut headers, &consumed);
            let event = NewEvent {
                id: event_id.clone(),
                route: route.name.to_string(),
                source_id: source_id.clone(),
                received_at_ms,
                messages: new_messages,
                fanout,
                inbound: Some(InboundView {
                    method,
                    path,
                    headers,
                }),
            };
            // The provider hears 2xx only once the event is committed. The
            // deliveries whose lanes have room are claimed in the insert's
            // own transaction and go straight to the dispatcher.
            let commit = tracing::debug_span!(target: crate::observability::STAGE_TARGET,
                "store.commit", event_id = event_id.as_str());
            let relay_to = route.relay.as_ref().map(|r| r.to.clone());
            let committed = tracing::Instrument::instrument(
                state.delivery().insert(
                    state.store(),
                    event,
                    config.store.dedup_window.0,
                    relay_to,
                ),
                commit,
            )
            .await;
            let inserted = committed.map_err(|e| {
                // One store serves every route: one line per window for
                // all of them.
                static OVERLOADED: Flood = Flood::new();
                static FAILED: Flood = Flood::new();
                if matches!(e, StoreError::Overloaded) {
                    log_limited!(OVERLOADED, "", warn, route = &*route.name, "store overloaded; shedding load");
                } else {
                    log_limited!(FAILED, "", error, route = &*route.name, error = %e, "cannot store an accepted webhook");
                }
                ApiError::Store(e)
            })?;
            let mut relay_wait = None;
            let body = match inserted {
                Committed::New {
                    deliveries,
                    relay,
                    handoff,
                } => {
                    relay_wait = relay;
                    handoff.submit();
                    tracing::debug!(
                        route = &*route.name,
                        event_id,
                        source_id,
                        messages,
                        deliveries,
                        "webhook accepted"
                    );
                    json!({
                        "id": event_id,
                        "source_id": source_id,
                        "messages": messages,
                        "deliveries": deliveries,
                    })
                }
                Committed::Duplicate { existing_id } => {
                    static DUPLICATE: Flood = Flood::new();
                    log_limited!(
                        DUPLICATE,
                        &route.name,
                        info,
                        route = &*route.name,
                        existing_id,
                        source_id,
                        "duplicate webhook; not delivered again"
                    );
                    json!({
                        "id": existing_id,
                        "source_id": source_id,
                        "duplicate": true,
                    })
                }
            };
            if let (Some(wait), Some(relay)) = (relay_wait, &route.relay)
                && let Some(answer) = relayed_reply(wait, relay, received_at_ms).await
            {
                return Ok(answer);
            }
            Ok(match reply {
                Some(r) => plugin_response(r),
                None => (StatusCode::ACCEPTED, Json(body)).into_response(),
            })
        }
    }
}

/// The relay destination's reply as a Teams reply message, if its first
/// attempt succeeded with one before `reply_timeout` (counted from the
/// request's arrival); `None` means: answer the fallback.
async fn relayed_reply(
    wait: crate::delivery::relay::RelayWait,
    relay: &crate::config::RelayConfig,
    received_at_ms: u64,
) -> Option<Response> {
    let spent = std::time::Duration::from_millis(clock::now_ms().saturating_sub(received_at_ms));
    let budget = relay.reply_timeout.0.saturating_sub(spent);
    let answer = wait
        .reply_within(budget)
        .await
        .as_ref()
        .and_then(crate::delivery::relay::teams_reply);
    if answer.is_none() {
        static FELL_BACK: Flood = Flood::new();
        log_limited!(
            FELL_BACK,
            &relay.to,
            info,
            destination = relay.to,
            "relay: no reply within reply_timeout; answered the fallback (the delivery goes on)"
        );
    }
    answer.map(|a| (StatusCode::OK, Json(a)).into_response())
}

/// The request as plugins see it. Header values that are not UTF-8 are
/// passed on lossily: a verifier then refuses them, nothing panics.
pub fn inbound_request(
    parts: &http::request::Parts,
    body: bytes::Bytes,
    route: &str,
    received_at_ms: u64,
) -> InboundRequest {
    InboundRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        route: route.to_owned(),
        received_at_ms,
    }
}

/// A message routed to a `kind: subscribers` destination, as the envelope
/// subscribers receive: object from the destination (static, or a JSON
/// pointer into the body), event type from the message.
fn fanout_of(dest: &CompiledDestination, message: &Message, received_at_ms: u64) -> Option<Fanout> {
    let data: serde_json::Value = serde_json::from_slice(&message.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&message.body).into_owned())
    });
    let object_type = dest.object_type.clone()?;
    // Read from the body, and matched against subscriptions as text.
    let object_id = crate::text::without_nul(match dest.object_id.as_deref()? {
        ptr if ptr.starts_with('/') => match data.pointer(ptr)? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        id => id.to_owned(),
    });
    let event_type = message
        .event_type
        .clone()
        .unwrap_or_else(|| "message".to_owned());
    let id = message.id.clone().unwrap_or_default();
    let envelope = json!({
        "eventId": id,
        "eventType": event_type,
        "objectId": object_id,
        "objectType": object_type,
        "createdAt": crate::store::rfc3339(received_at_ms),
        "data": data,
    });
    let mut envelope_message = Message::json(Some(&event_type), &envelope);
    envelope_message.id = message.id.clone();
    Some(Fanout {
        tenant: dest.tenant.clone(),
        object_type,
        object_id,
        event_type,
        envelope: envelope_message,
    })
}

/// A plugin's response as HTTP. Framing headers are the server's to set;
/// an out-of-range status is our fault and becomes 500.
pub fn plugin_response(r: PluginResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    for (k, v) in r.headers {
        if matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.append(k, v);
        }
    }
    (status, headers, Body::from(r.body)).into_response()
}
