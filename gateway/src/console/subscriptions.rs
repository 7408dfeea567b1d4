//! Subscriptions per tenant: active or disabled (with the reason), the
//! deliveries parked for each, and re-enabling a disabled one.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Session;
use super::{Layout, given, html, refuse, show_time, store_failed};
use crate::state::AppState;
use crate::store::{SUBSCRIBER_PREFIX, SubscriptionPatch};

struct Row {
    id: String,
    object: String,
    events: String,
    callback: String,
    active: bool,
    disabled_reason: String,
    failing_since: String,
    pending: u64,
    parked: u64,
    dead: u64,
    expires: String,
}

struct Tenant {
    name: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/subscriptions.html")]
struct SubscriptionsPage {
    layout: Layout,
    enabled: bool,
    tenants: Vec<Tenant>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    enabled: Option<String>,
}

/// `GET /ui/subscriptions`.
pub async fn page(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<PageQuery>,
) -> Response {
    let snapshot = state.snapshot();
    let names: Vec<String> = snapshot
        .config
        .subscriptions
        .as_ref()
        .map(|s| s.api_keys.keys().cloned().collect())
        .unwrap_or_default();
    let mut tenants = Vec::with_capacity(names.len());
    for name in names {
        let subs = match state
            .store()
            .list_subscriptions(name.clone(), None, None)
            .await
        {
            Ok(s) => s,
            Err(e) => return store_failed(e),
        };
        let parked = match state
            .store()
            .parked_deliveries(
                subs.iter()
                    .map(|s| format!("{SUBSCRIBER_PREFIX}{}", s.id))
                    .collect(),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => return store_failed(e),
        };
        let rows = subs
            .into_iter()
            .zip(parked)
            .map(|(s, (_, p))| Row {
                object: format!("{} {}", s.object_type, s.object_id),
                events: s.event_types.join(", "),
                callback: s.callback_url,
                active: s.active,
                disabled_reason: s.disabled_reason.unwrap_or_default(),
                failing_since: s.failing_since_ms.map(show_time).unwrap_or_default(),
                pending: p.pending,
                parked: p.parked,
                dead: p.dead,
                expires: show_time(s.validity_ms),
                id: s.id,
            })
            .collect();
        tenants.push(Tenant { name, rows });
    }
    let flash = given(&q.enabled).map(|id| format!("Re-enabled {id}."));
    html(
        StatusCode::OK,
        &SubscriptionsPage {
            layout: Layout::new(&session, "subscriptions", flash),
            enabled: snapshot.config.subscriptions.is_some(),
            tenants,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct EnableForm {
    tenant: String,
}

/// `POST /ui/subscriptions/{id}/enable`: active again, failure streak and
/// reason cleared (what `PUT /v1/webhook/{id} {"active": true}` does).
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<EnableForm>,
) -> Response {
    let store = state.store();
    // The patch clears the failure streak and the reason, and sends the
    // deliveries parked meanwhile, oldest first.
    let patch = SubscriptionPatch {
        active: Some(true),
        ..SubscriptionPatch::default()
    };
    match store
        .update_subscription(form.tenant.clone(), id.clone(), patch)
        .await
    {
        Ok(Some(_)) => {
            tracing::info!(
                subscription = id,
                tenant = form.tenant,
                "subscription re-enabled in the console"
            );
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("enabled", &id)
                .finish();
            Redirect::to(&format!("/ui/subscriptions?{q}")).into_response()
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no such subscription"),
        Err(e) => store_failed(e),
    }
}
