//! The one place errors become HTTP responses.
//!
//! Client faults get precise codes (401/403 bad signature, 413 too large,
//! 404 unknown route, 400 bad input). Our own faults get 5xx with a request
//! id and a reason that names the failing plugin but no internals. A
//! verification failure is never a 5xx: providers retry 5xx forever.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::pipeline::PipelineError;
use crate::plugin::{GuestError, PluginError};
use crate::reload::ReloadError;

/// An error answer from the gateway.
#[derive(Debug)]
pub enum ApiError {
    /// No such route.
    UnknownRoute(String),
    /// Body over the route's limit.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body could not be read.
    BadBody(String),
    /// The body arrived too slowly (`limits.body_read_timeout`,
    /// `limits.min_body_rate`).
    BodyTimeout,
    /// The verifier refused the request.
    Rejected {
        /// 4xx status.
        status: u16,
        /// Reason.
        reason: String,
    },
    /// The pipeline failed.
    Pipeline {
        /// Correlates the answer with the log line.
        request_id: String,
        /// What failed.
        error: PipelineError,
    },
    /// The store could not take the event.
    Store(crate::store::StoreError),
    /// A reload asked for over the admin API was refused.
    ReloadRefused {
        /// The generation that keeps serving.
        generation: u64,
        /// Why.
        error: ReloadError,
    },
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Rejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            ApiError::Pipeline { error, .. } => match error {
                PipelineError::Plugin { source, .. } => match source {
                    PluginError::Guest {
                        error: GuestError::InvalidInput(_),
                        ..
                    } => StatusCode::BAD_REQUEST,
                    PluginError::Instantiate { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                },
                PipelineError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                PipelineError::TooManyMessages { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                PipelineError::UnknownDestination { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReloadRefused { error, .. } => match error {
                ReloadError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::UnknownRoute(route) => {
                json!({ "error": "unknown_route", "message": format!("no route named {route:?}") })
            }
            ApiError::PayloadTooLarge { limit } => json!({
                "error": "payload_too_large",
                "message": format!("request body is larger than this route's limit of {limit} bytes"),
            }),
            ApiError::BadBody(reason) => json!({ "error": "bad_request", "message": reason }),
            ApiError::BodyTimeout => json!({
                "error": "request_timeout",
                "message": "the request body arrived too slowly",
            }),
            ApiError::Rejected { reason, .. } => {
                json!({ "error": "verification_failed", "message": reason })
            }
            ApiError::Pipeline { request_id, error } => {
                let code = match error {
                    PipelineError::Plugin { source, .. } => source.kind(),
                    PipelineError::Busy { .. } => "busy",
                    PipelineError::TooManyMessages { .. } => "too_many_messages",
                    PipelineError::UnknownDestination { .. } => "unknown_destination",
                };
                // A 4xx is about the request, and the plugin's reason helps
                // the sender. A 5xx is ours: its details (trap messages,
                // plugin config errors that may quote config values) stay
                // in the log under the request id.
                let message = if status.is_server_error() {
                    generic_message(error, request_id)
                } else {
                    error.to_string()
                };
                json!({ "error": code, "message": message, "request_id": request_id })
            }
            ApiError::Store(crate::store::StoreError::Overloaded) => json!({
                "error": "overloaded",
                "message": "the gateway is saturated; retry later",
            }),
            ApiError::Store(_) => json!({
                "error": "unavailable",
                "message": "the webhook could not be stored; retry later",
            }),
            ApiError::ReloadRefused { generation, error } => json!({
                "error": "reload_refused",
                "message": format!("reload refused, still serving generation {generation}"),
                "generation": generation,
                "errors": error.errors().iter().map(|e| json!({ "path": e.path, "message": e.message })).collect::<Vec<_>>(),
            }),
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(
            self,
            ApiError::Pipeline {
                error: PipelineError::Busy { .. }
                    | PipelineError::Plugin {
                        source: PluginError::Instantiate { .. },
                        ..
                    },
                ..
            }
        ) {
            // A route over its plugin cap, or a pool with no free
            // instance: both clear within a plugin deadline.
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, ApiError::Store(_)) {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if matches!(self, ApiError::BodyTimeout) {
            // The rest of the body may still be on its way: the connection
            // cannot be reused.
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Answers a handler that panicked with a 500 carrying a request id (the
/// panic goes to the log under it) instead of dropping the connection.
pub fn catch_panics(app: axum::Router) -> axum::Router {
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |panic: Box<dyn std::any::Any + Send + 'static>| {
            let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(request_id, panic = what, "a handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({
                    "error": "internal",
                    "message": format!("internal error; details are in the gateway log under request id {request_id}"),
                    "request_id": request_id,
                })),
            )
                .into_response()
        },
    ))
}

/// What a 5xx body says about a pipeline failure: the stage, the plugin
/// and the kind of failure, nothing the plugin or its config wrote.
fn generic_message(error: &PipelineError, request_id: &str) -> String {
    match error {
        PipelineError::Plugin { stage, source } => format!(
            "{stage} plugin `{}` failed ({}); details are in the gateway log under request id {request_id}",
            source.plugin(),
            source.kind()
        ),
        PipelineError::UnknownDestination { plugin, .. } => format!(
            "router `{plugin}` chose a destination that does not exist; details are in the gateway log under request id {request_id}"
        ),
        // Neither quotes anything a plugin or its config wrote.
        PipelineError::Busy { .. } | PipelineError::TooManyMessages { .. } => {
            format!("{error}; request id {request_id}")
        }
    }
}
