//! The operator console at `/ui`: server-rendered pages (askama templates
//! under `gateway/templates/console/`, compiled into the binary) to see
//! every webhook and fix it: events with filters and live counts, an
//! event's request, messages, deliveries and attempts with Replay, bulk
//! replay of exactly a filtered set, destination health with inline SVG
//! charts, subscriptions per tenant, plugins and routes with Reload.
//!
//! Served only when the admin API is (`admin.token` set), and signed in
//! with that token ([`session`]). Every page reads without JavaScript; the
//! one vendored script (htmx) only refreshes the live counts. No node build
//! step: static files are `include_bytes!`'d.
//!
//! Deliberately not here: SQL (the console reads through the
//! [`Store`](crate::store::Store) trait's console block) and the JSON admin
//! API (`admin/`), whose contract it does not change.

mod destinations;
mod events;
mod plugins;
pub mod session;
mod subscriptions;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, http::HeaderMap};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;

use crate::observability::flood::{Flood, log_limited};
use crate::state::AppState;
use crate::store::StoreError;
use session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, Session, Sessions};

/// Largest form body the console reads (bulk replay carries a filter).
const MAX_FORM: usize = 64 * 1024;

/// htmx, vendored from the `htmx.org` npm package (0BSD licence); the
/// version is in the path so browsers may cache it for good.
const HTMX: &[u8] = include_bytes!("static/htmx.min.js");
const HTMX_PATH: &str = "/ui/static/htmx-2.0.11.min.js";
const CSS: &[u8] = include_bytes!("static/console.css");

/// The `/ui` routes, or `None` when the admin API is off.
pub fn router(state: AppState) -> Option<Router<AppState>> {
    state.snapshot().config.admin.token.as_ref()?;
    let sessions = Arc::new(Sessions::default());
    let signed_in = Router::new()
        .route("/ui/events", get(events::list))
        .route("/ui/events/counts", get(events::counts))
        .route("/ui/events/{id}", get(events::detail))
        .route("/ui/events/{id}/replay", post(events::replay))
        .route(
            "/ui/replay",
            get(events::confirm_bulk).post(events::bulk_replay),
        )
        .route("/ui/destinations", get(destinations::page))
        .route("/ui/subscriptions", get(subscriptions::page))
        .route("/ui/subscriptions/{id}/enable", post(subscriptions::enable))
        .route("/ui/plugins", get(plugins::page))
        .route("/ui/reload", post(plugins::reload))
        .route("/ui/logout", post(sign_out))
        .layer(middleware::from_fn_with_state(state, require_session));
    let open = Router::new()
        .route("/ui", get(sign_in_page).post(sign_in))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/static/{file}", get(static_file));
    Some(
        signed_in
            .merge(open)
            .layer(Extension(sessions))
            .layer(middleware::from_fn(security_headers)),
    )
}

/// Fields every page's layout needs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The session's CSRF token, for the forms.
    pub csrf: String,
    /// Which tab is active.
    pub active: &'static str,
    /// A one-line notice at the top.
    pub flash: Option<String>,
    /// Path of the vendored htmx.
    pub htmx: &'static str,
}

impl Layout {
    fn new(session: &Session, active: &'static str, flash: Option<String>) -> Self {
        Layout {
            csrf: session.csrf.clone(),
            active,
            flash,
            htmx: HTMX_PATH,
        }
    }
}

/// A rendered page (or an error page when rendering failed).
fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// A plain-text error answer.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// The store could not answer: a retryable 503, logged.
fn store_failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "console request failed in the store");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store could not answer; reload the page",
    )
}

/// Headers every console answer carries: no framing, no inline script, no
/// caching of pages that show operator data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Lets a request through only with a live session, and a POST only with
/// that session's CSRF token in its `csrf` form field. The session is put
/// into the request's extensions for the handlers.
async fn require_session(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    req: Request,
    next: Next,
) -> Response {
    let snapshot = state.snapshot();
    let Some(token) = snapshot.config.admin.token.as_deref() else {
        return refuse(StatusCode::NOT_FOUND, "the console is off");
    };
    let session =
        session::cookie(req.headers(), SESSION_COOKIE).and_then(|id| sessions.get(id, token));
    let Some(session) = session else {
        return if req.method() == Method::GET {
            Redirect::to("/ui").into_response()
        } else {
            refuse(StatusCode::FORBIDDEN, "sign in first")
        };
    };
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        let Ok(collected) = Limited::new(body, MAX_FORM).collect().await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
        };
        let bytes = collected.to_bytes();
        let presented = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !session::csrf_ok(&session.csrf, presented.as_deref()) {
            tracing::warn!(
                path = parts.uri.path(),
                "console form refused: missing or wrong CSRF token"
            );
            return refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
        // A form's fields are ids, names and filters to look up, as the
        // URLs are (`ingress::refusing_nul`): none can hold a NUL.
        if url::form_urlencoded::parse(&bytes).any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a form field holds a NUL character, which no id, name or filter can contain",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    login_csrf: String,
    error: Option<&'static str>,
}

/// The sign-in form with a fresh double-submit token; a signed-in browser
/// goes straight to the events.
async fn sign_in_page(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    let snapshot = state.snapshot();
    let token = snapshot.config.admin.token.as_deref().unwrap_or_default();
    if session::cookie(&headers, SESSION_COOKIE).is_some_and(|id| sessions.get(id, token).is_some())
    {
        return Redirect::to("/ui/events").into_response();
    }
    sign_in_form(&headers, StatusCode::OK, None)
}

fn sign_in_form(headers: &HeaderMap, status: StatusCode, error: Option<&'static str>) -> Response {
    let login_csrf = session::random_token();
    let mut resp = html(
        status,
        &SignInPage {
            login_csrf: login_csrf.clone(),
            error,
        },
    );
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &login_csrf,
        std::time::Duration::from_secs(3600),
        session::over_tls(headers),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    token: Option<String>,
    csrf: Option<String>,
}

/// Checks the token; opens a session and sets its cookie.
async fn sign_in(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::csrf_ok(expected, form.csrf.as_deref()) {
        return sign_in_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some("The form expired; sign in again."),
        );
    }
    let snapshot = state.snapshot();
    let admin_token = snapshot.config.admin.token.as_deref().unwrap_or_default();
    let presented = form.token.unwrap_or_default();
    let Some(session) = sessions.sign_in(presented.trim(), admin_token) else {
        // Every refusal counts (`suppressed` on the next line): a guesser
        // does not flood the log.
        static REFUSED: Flood = Flood::new();
        log_limited!(REFUSED, "", warn, "console sign-in refused: wrong token");
        return sign_in_form(
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    };
    tracing::info!("console sign-in");
    let secure = session::over_tls(&headers);
    let mut resp = Redirect::to("/ui/events").into_response();
    for cookie in [
        session::set_cookie(SESSION_COOKIE, &session.id, SESSION_LIFETIME, secure),
        session::set_cookie(LOGIN_COOKIE, "", std::time::Duration::ZERO, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Ends the session and clears its cookie.
async fn sign_out(
    Extension(sessions): Extension<Arc<Sessions>>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    sessions.sign_out(&session.id);
    let mut resp = Redirect::to("/ui").into_response();
    let cookie = session::set_cookie(
        SESSION_COOKIE,
        "",
        std::time::Duration::ZERO,
        session::over_tls(&headers),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type, cache) = match format!("/ui/static/{file}").as_str() {
        HTMX_PATH => (
            HTMX,
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        "/ui/static/console.css" => (CSS, "text/css; charset=utf-8", "public, max-age=300"),
        _ => return refuse(StatusCode::NOT_FOUND, "no such file"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

/// `Some(s)` unless `s` is missing or blank (a form's "any" choice).
pub(crate) fn given(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A time the console was given: a `datetime-local` value (UTC), RFC 3339
/// or epoch milliseconds.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<u64, String> {
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    let with_seconds = if value.len() == 16 {
        format!("{value}:00")
    } else {
        value.to_owned()
    };
    humantime::parse_rfc3339_weak(&with_seconds)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| format!("{name}: {value:?} is not a time (UTC, e.g. 2026-12-01T09:30)"))
}

/// Milliseconds as the console shows times: UTC, to the second. Times past
/// the year 9999 (a subscription's `validity` is the caller's to choose,
/// and humantime refuses to format them) show as the last second of 9999.
pub(crate) fn show_time(ms: u64) -> String {
    let ms = ms.min(crate::store::RFC3339_MAX_MS);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', "")
}

/// A duration in a short human form (`3m 12s`).
pub(crate) fn show_age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {}h", secs / 86400, (secs % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_forms_are_utc() {
        assert_eq!(parse_time("since", "1970-01-01T00:01").unwrap(), 60_000);
        assert_eq!(parse_time("since", "1970-01-01T00:00:02Z").unwrap(), 2_000);
        assert_eq!(parse_time("since", "1234").unwrap(), 1234);
        assert!(parse_time("since", "yesterday").is_err());
        assert_eq!(show_time(60_000), "1970-01-01 00:01:00");
        assert_eq!(show_time(u64::MAX), "9999-12-31 23:59:59");
        assert_eq!(show_age(3_725_000), "1h 2m");
    }
}
