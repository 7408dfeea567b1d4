//! `GET /admin/status`: what runs now (generation, each route's plugin per
//! stage, each plugin's version, content hash and load time, the plugin
//! cache, the destinations `paused:` holds) and what reloads did (last success, last error with its time,
//! settings waiting for a restart). `POST /admin/reload`: reload now and
//! answer with the new generation or every error.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::pipeline::PluginStep;
use crate::reload::Trigger;
use crate::state::AppState;

/// What runs now and what reloads did.
#[utoipa::path(get, path = "/admin/status", tag = "admin",
    responses(
        (status = 200, description = "`generation`, `routes` (each stage's plugin name, version, hash; `to`), `plugins` (version, hash, source, stages, loaded_at, load_ms), `plugin_cache` (dir, hits, misses), `paused` (the destinations whose deliveries wait, by name), `reload` (last reload, last error, recent errors, restart_required, watching)", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = crate::admin::AdminError),
        (status = 404, description = "The admin API is not configured"),
    ),
    security(("bearer" = [])))]
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.snapshot();
    let step = |s: &PluginStep| {
        json!({
            "plugin": &**s.plugin.name(),
            "version": s.plugin.version(),
            "hash": s.plugin.hash(),
        })
    };
    let routes: BTreeMap<&str, Value> = snapshot
        .routes
        .iter()
        .map(|(name, r)| {
            (
                name.as_str(),
                json!({
                    "verify": r.verify.as_ref().map(step),
                    "transform": r.transform.iter().map(step).collect::<Vec<_>>(),
                    "route": r.route.as_ref().map(step),
                    "to": r.to,
                }),
            )
        })
        .collect();
    let plugins: BTreeMap<&str, Value> = snapshot
        .plugins
        .iter()
        .map(|(name, p)| {
            (
                name.as_str(),
                json!({
                    "version": p.version(),
                    "hash": p.hash(),
                    "source": p.source(),
                    "stages": p.stages(),
                    "loaded_at": humantime::format_rfc3339_millis(p.loaded_at()).to_string(),
                    "load_ms": p.load_time().as_secs_f64() * 1000.0,
                }),
            )
        })
        .collect();
    let mut paused: Vec<&str> = snapshot
        .destinations
        .iter()
        .filter(|(_, d)| d.paused)
        .map(|(name, _)| name.as_str())
        .collect();
    paused.sort_unstable();
    Json(json!({
        "generation": snapshot.generation,
        "routes": routes,
        "plugins": plugins,
        "plugin_cache": state.engine().cache_stats(),
        "paused": paused,
        "reload": state.reload().record(),
    }))
}

/// `POST /admin/reload`: 200 with the new generation, or 422 with every
/// reason the reload was refused (the previous generation keeps serving).
#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "`{\"outcome\": \"reloaded\", \"generation\": n, \"plugins_loaded\": [...], \"restart_required\": [...]}`", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = crate::admin::AdminError),
        (status = 404, description = "The admin API is not configured"),
        (status = 422, description = "`{\"error\": \"reload_refused\", \"generation\": n, \"errors\": [{\"path\", \"message\"}]}`; the previous generation keeps serving", body = Object),
        (status = 503, description = "The reloader is not running (shutting down)", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn reload(State(state): State<AppState>) -> Response {
    match state.reload().reload(Trigger::Admin).await {
        Ok(reloaded) => {
            let mut body = json!({ "outcome": "reloaded" });
            if let (Value::Object(body), Ok(Value::Object(r))) =
                (&mut body, serde_json::to_value(&reloaded))
            {
                body.extend(r);
            }
            Json(body).into_response()
        }
        Err(error) => ApiError::ReloadRefused {
            generation: state.snapshot().generation,
            error,
        }
        .into_response(),
    }
}
