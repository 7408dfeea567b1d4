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
                json!({ "error": code, "message": error.to_string(), "request_id": request_id })
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
        resp
    }
}
