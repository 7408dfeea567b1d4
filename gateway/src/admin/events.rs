//! `/admin/events`: list, inspect and replay stored events.
//!
//! - `GET /admin/events?status=&route=&destination=&since=&until=&limit=&cursor=`
//!   → `{ "events": [ { "id", "route", "status", … } ], "next": cursor | null }`
//! - `GET /admin/events/{id}` → the event with its messages, deliveries and
//!   their attempts
//! - `POST /admin/events/{id}/replay[?destination=]` → `{ "replayed": n }`
//! - `POST /admin/replay?status=&route=&destination=&since=&until=` → bulk
//!   replay of the deliveries matching the filter (`status` is the
//!   delivery's state, e.g. `dead` for dead letters) → `{ "replayed": n }`
//! - Either replay with `&to=NAME` (and a `destination`) also moves the
//!   replayed deliveries to destination `NAME` of the current config: the
//!   way to send what waits for a renamed or replaced destination.
//!
//! Times are RFC 3339 (`2026-11-23T10:00:00Z`) or milliseconds since the
//! epoch. These paths and fields are a contract.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use crate::store::{EventFilter, EventStatus, ReplayTarget, StoreError};

/// Default and largest page size.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Query parameters shared by listing and bulk replay.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FilterQuery {
    /// `pending`, `delivered` or `dead` (for replay: the delivery's state).
    status: Option<String>,
    /// Route name.
    route: Option<String>,
    /// Destination name.
    destination: Option<String>,
    /// Received at or after (RFC 3339 or epoch ms).
    since: Option<String>,
    /// Received before (RFC 3339 or epoch ms).
    until: Option<String>,
    /// Page size (listing; 1 to 1000, default 100).
    limit: Option<usize>,
    /// `next` of the previous page (listing).
    cursor: Option<String>,
    /// Move the replayed deliveries to this destination of the current
    /// config (replay; needs `destination`, the one they leave).
    to: Option<String>,
}

/// The answer of a replay.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Deliveries requeued.
    pub replayed: u64,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "bad_request", "message": message })),
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "admin request failed in the store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({ "error": "store_unavailable", "message": "the store could not answer; retry" }),
        ),
    )
        .into_response()
}

/// RFC 3339 or epoch milliseconds.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<u64, String> {
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| format!("`{name}` must be RFC 3339 or epoch milliseconds, not {value:?}"))
}

impl FilterQuery {
    fn filter(&self) -> Result<EventFilter, String> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
                format!("`status` must be pending, delivered or dead, not {s:?}")
            })?),
        };
        Ok(EventFilter {
            status,
            route: self.route.clone(),
            destination: self.destination.clone(),
            since_ms: self
                .since
                .as_deref()
                .map(|v| parse_time("since", v))
                .transpose()?,
            until_ms: self
                .until
                .as_deref()
                .map(|v| parse_time("until", v))
                .transpose()?,
        })
    }
}

/// List stored events, newest first.
#[utoipa::path(get, path = "/admin/events", tag = "admin", params(FilterQuery),
    responses(
        (status = 200, body = crate::store::EventPage),
        (status = 400, description = "A parameter that does not parse", body = super::AdminError),
        (status = 401, body = super::AdminError),
        (status = 404, description = "The admin API is not configured"),
        (status = 503, body = super::AdminError),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(message) => return bad_request(message),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return bad_request(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, not {limit}"
        ));
    }
    match state.store().list(filter, limit, q.cursor.clone()).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e),
    }
}

/// One event with its messages, deliveries and attempts.
#[utoipa::path(get, path = "/admin/events/{id}", tag = "admin",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, body = crate::store::EventDetail),
        (status = 401, body = super::AdminError),
        (status = 404, description = "No such event (or the admin API is not configured)", body = super::AdminError),
        (status = 503, body = super::AdminError),
    ),
    security(("bearer" = [])))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store().get(id.clone()).await {
        Ok(Some(mut event)) => {
            // Credentials a route chose to forward are still nobody's to
            // read here.
            for m in &mut event.messages {
                crate::pipeline::credential::redact(&mut m.headers, &[]);
            }
            Json(event).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not_found", "message": format!("no event {id:?}") })),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// Query of a single-event replay.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayOneQuery {
    /// Only deliveries to this destination.
    destination: Option<String>,
    /// Move the replayed deliveries to this destination of the current
    /// config (needs `destination`, the one they leave).
    to: Option<String>,
}

/// Requeue an event's deliveries with a fresh retry budget.
#[utoipa::path(post, path = "/admin/events/{id}/replay", tag = "admin",
    params(("id" = String, Path, description = "Event id"), ReplayOneQuery),
    responses(
        (status = 200, body = Replayed),
        (status = 400, description = "A parameter that does not parse", body = super::AdminError),
        (status = 401, body = super::AdminError),
        (status = 404, description = "No such event (or the admin API is not configured)", body = super::AdminError),
        (status = 503, body = super::AdminError),
    ),
    security(("bearer" = [])))]
pub async fn replay_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ReplayOneQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    match state.store().get(id.clone()).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "not_found", "message": format!("no event {id:?}") })),
            )
                .into_response();
        }
        Err(e) => return store_error(e),
    }
    if let Err(message) = crate::delivery::retarget::check(
        &state.snapshot().config,
        q.destination.as_deref(),
        q.to.as_deref(),
    ) {
        return bad_request(message);
    }
    let target = ReplayTarget::Event {
        id,
        destination: q.destination,
    };
    replay(&state, target, q.to).await
}

/// Requeue every delivery matching the filter (e.g. dead letters of a
/// destination since a time).
#[utoipa::path(post, path = "/admin/replay", tag = "admin", params(FilterQuery),
    responses(
        (status = 200, body = Replayed),
        (status = 400, description = "A parameter that does not parse, or none of status, route, destination and since (replaying everything is refused)", body = super::AdminError),
        (status = 401, body = super::AdminError),
        (status = 404, description = "The admin API is not configured"),
        (status = 503, body = super::AdminError),
    ),
    security(("bearer" = [])))]
pub async fn replay_matching(
    State(state): State<AppState>,
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(message) => return bad_request(message),
    };
    if filter.status.is_none()
        && filter.route.is_none()
        && filter.destination.is_none()
        && filter.since_ms.is_none()
    {
        // Replaying everything ever stored is never what anyone meant.
        return bad_request(
            "bulk replay needs at least one of status, route, destination or since".into(),
        );
    }
    if let Err(message) = crate::delivery::retarget::check(
        &state.snapshot().config,
        q.destination.as_deref(),
        q.to.as_deref(),
    ) {
        return bad_request(message);
    }
    replay(&state, ReplayTarget::Matching(filter), q.to).await
}

async fn replay(state: &AppState, target: ReplayTarget, to: Option<String>) -> Response {
    match state.store().replay(target, to.clone()).await {
        Ok(n) => {
            if n > 0 {
                state.delivery().wake();
            }
            tracing::info!(
                replayed = n,
                to = to.as_deref(),
                "replay requested through the admin API"
            );
            Json(Replayed { replayed: n }).into_response()
        }
        Err(e) => store_error(e),
    }
}
