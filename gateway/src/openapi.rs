//! The OpenAPI document of `/v1` and `/admin`, generated from the handlers'
//! annotations (utoipa), served at `GET /openapi.json` and committed as
//! `gateway/openapi.json` (a test keeps the two equal).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{admin, subscriptions};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookgate", description = "Subscription API, event publishing and admin API of the hookgate webhook gateway."),
    paths(
        subscriptions::api::create_webhook,
        subscriptions::api::list_webhooks,
        subscriptions::api::update_webhook,
        subscriptions::api::delete_webhook,
        subscriptions::api::rotate_secret,
        subscriptions::api::publish,
        admin::events::list,
        admin::events::get,
        admin::events::replay_one,
        admin::events::replay_matching,
    ),
    modifiers(&Security),
    tags(
        (name = "subscriptions", description = "Register callback URLs for events (Kaizala-style /v1/webhook)"),
        (name = "events", description = "Publish events to subscribers"),
        (name = "admin", description = "Inspect and replay stored events (Authorization: Bearer <admin.token>)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "accessToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("accessToken"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}
