//! The admin API under `/admin`: bearer-token auth (401 without it), and
//! not served at all when `admin.token` is not configured.
//!
//! Each concern has its own file and adds its routes in [`router`].

pub mod events;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub mod status;

use crate::plugin::constant_time_eq;
use crate::state::AppState;

/// The `/admin` routes, or `None` when no token is configured.
pub fn router(state: AppState) -> Option<Router<AppState>> {
    state.snapshot().config.admin.token.as_ref()?;
    let routes = Router::new()
        // Routes are added here, one line per concern.
        .route("/admin/ping", get(ping))
        .route("/admin/events", get(events::list))
        .route("/admin/events/{id}", get(events::get))
        .route("/admin/events/{id}/replay", post(events::replay_one))
        .route("/admin/replay", post(events::replay_matching))
        .route("/admin/status", get(status::status))
        .route("/admin/reload", post(status::reload));
    Some(routes.layer(middleware::from_fn_with_state(state, require_token)))
}

/// An admin API error: a stable code and a reason.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AdminError {
    /// Stable error code (`unauthorized`, `bad_request`, `not_found`,
    /// `store_unavailable`).
    pub error: String,
    /// Human-readable reason.
    pub message: String,
}

async fn ping() -> impl IntoResponse {
    Json(json!({ "ok": true }))
}

/// Checks `Authorization: Bearer <admin.token>` against the current
/// snapshot's token, in constant time.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let snapshot = state.snapshot();
    let Some(token) = snapshot.config.admin.token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.trim().as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "unauthorized", "message": "admin API needs Authorization: Bearer <admin.token>" })),
        )
            .into_response(),
    }
}
