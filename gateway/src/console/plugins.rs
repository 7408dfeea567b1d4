//! Plugins and routes: the serving generation, each route's chain with
//! plugin versions and hashes, every loaded plugin, the last reload and
//! its errors, and a Reload button (the same reload as
//! `POST /admin/reload`).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Session;
use super::{Layout, html};
use crate::pipeline::PluginStep;
use crate::reload::{Failure, Trigger};
use crate::state::AppState;

struct Step {
    stage: &'static str,
    plugin: String,
    version: String,
    hash: String,
}

struct RouteRow {
    name: String,
    steps: Vec<Step>,
    to: String,
}

struct PluginRow {
    name: String,
    version: String,
    hash: String,
    source: String,
    stages: String,
    loaded_at: String,
    load_ms: String,
}

#[derive(Template)]
#[template(path = "console/plugins.html")]
struct PluginsPage {
    layout: Layout,
    generation: u64,
    routes: Vec<RouteRow>,
    plugins: Vec<PluginRow>,
    watching: bool,
    reloads: u64,
    failures: u64,
    last_reload: String,
    last_error: Option<Failure>,
    recent_errors: Vec<Failure>,
    restart_required: Vec<String>,
    refused: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// `ok` after a reload that went live, `refused` otherwise.
    reload: Option<String>,
}

fn step(stage: &'static str, s: &PluginStep) -> Step {
    Step {
        stage,
        plugin: s.plugin.name().to_string(),
        version: s.plugin.version().to_string(),
        hash: s.plugin.hash().to_string(),
    }
}

/// `GET /ui/plugins`.
pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<PageQuery>,
) -> Response {
    let snapshot = state.snapshot();
    let record = state.reload().record();
    let mut routes: Vec<RouteRow> = snapshot
        .routes
        .iter()
        .map(|(name, r)| {
            let mut steps = Vec::new();
            steps.extend(r.verify.as_ref().map(|s| step("verify", s)));
            steps.extend(r.transform.iter().map(|s| step("transform", s)));
            steps.extend(r.route.as_ref().map(|s| step("route", s)));
            RouteRow {
                name: name.clone(),
                steps,
                to: r.to.join(", "),
            }
        })
        .collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let plugins = snapshot
        .plugins
        .iter()
        .map(|(name, p)| PluginRow {
            name: name.clone(),
            version: p.version().to_string(),
            hash: p.hash().to_string(),
            source: match p.source() {
                crate::plugin::PluginSource::Builtin => "built-in".to_owned(),
                crate::plugin::PluginSource::File(path) => path.clone(),
            },
            stages: p
                .stages()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            loaded_at: humantime::format_rfc3339_seconds(p.loaded_at()).to_string(),
            load_ms: format!("{:.1}", p.load_time().as_secs_f64() * 1000.0),
        })
        .collect();
    let flash = match q.reload.as_deref() {
        Some("ok") => Some(format!(
            "Reloaded: generation {} is serving.",
            snapshot.generation
        )),
        Some("refused") => Some(format!(
            "Reload refused; generation {} keeps serving. The errors are below.",
            snapshot.generation
        )),
        _ => None,
    };
    let refused = record
        .last_error
        .as_ref()
        .map(|f| {
            f.errors
                .iter()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect()
        })
        .unwrap_or_default();
    html(
        StatusCode::OK,
        &PluginsPage {
            layout: Layout::new(&session, "plugins", flash),
            generation: snapshot.generation,
            routes,
            plugins,
            watching: record.watching,
            reloads: record.reloads,
            failures: record.failures,
            last_reload: record
                .last_reload
                .as_ref()
                .map(|s| {
                    format!(
                        "{} ({}, generation {})",
                        s.at, s.trigger, s.reloaded.generation
                    )
                })
                .unwrap_or_else(|| "none since start".into()),
            last_error: record.last_error.clone(),
            recent_errors: record.recent_errors.iter().cloned().collect(),
            restart_required: record.restart_required,
            refused,
        },
    )
}

/// `POST /ui/reload`: reload now, then back to the page with the outcome.
pub async fn reload(State(state): State<AppState>) -> Response {
    let outcome = match state.reload().reload(Trigger::Console).await {
        Ok(_) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "reload from the console refused");
            "refused"
        }
    };
    Redirect::to(&format!("/ui/plugins?reload={outcome}")).into_response()
}
