//! The sending side: subscribers register callback URLs (`/v1/webhook`,
//! shaped like Kaizala's webhook API), services publish events
//! (`/v1/events`), and hookgate fans them out, signed with each
//! subscription's secret (Standard Webhooks), retried, and disabled when a
//! subscriber stays broken.
//!
//! This module holds the compiled settings ([`SubscriptionsRuntime`]),
//! signing ([`crate::signing`]), what one delivery to a subscriber looks like on
//! the wire ([`outbound`]: payload, extra headers, signatures), the
//! Kaizala-compatible reading of request bodies (`input`) and the HTTP API
//! ([`api`]). Storage is the store's; sending, retries and the SSRF guard
//! are delivery's.

pub mod api;
mod input;
pub mod outbound;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{ConfigError, SubscriptionsConfig};
use crate::plugin::constant_time_eq;
use crate::retry::RetryPolicy;

/// How long a subscription lives when `validity` is not given: two years,
/// as in Kaizala's API.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);

/// The `subscriptions:` section, compiled.
#[derive(Debug)]
pub struct SubscriptionsRuntime {
    keys: Vec<(String, String)>,
    /// Networks callbacks may reach although private or loopback.
    pub allow: Arc<Vec<IpNet>>,
    /// Retry policy of subscriber deliveries.
    pub retry: RetryPolicy,
    /// Failure streak after which a subscription is disabled.
    pub disable_after: Duration,
    /// Deadline of the callback validation echo.
    pub validation_timeout: Duration,
    /// Timeout of each delivery attempt.
    pub timeout: Duration,
    /// Declared event types and their `data` schemas, when a catalogue is
    /// configured.
    pub event_types: Option<BTreeMap<String, Option<Arc<jsonschema::Validator>>>>,
    /// The object types `objectType` may name.
    pub object_types: Vec<String>,
    /// How long a rotated-out secret keeps signing.
    pub secret_rotation_overlap: Duration,
}

impl SubscriptionsRuntime {
    /// Compiles the section, loading event-type schemas from `base_dir`.
    pub fn compile(c: &SubscriptionsConfig, base_dir: &Path) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let allow = c
            .allow_private_callbacks
            .iter()
            .filter_map(|s| {
                s.parse::<IpNet>()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        let event_types = c.event_types.as_ref().map(|types| {
            types
                .iter()
                .map(|(name, t)| {
                    let validator = t.schema.as_ref().and_then(|file| {
                        let path = base_dir.join(file);
                        let at = format!("subscriptions.event_types.{name}.schema");
                        let schema = std::fs::read_to_string(&path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))
                            .and_then(|text| {
                                serde_json::from_str::<serde_json::Value>(&text)
                                    .map_err(|e| format!("{} is not JSON: {e}", path.display()))
                            })
                            .and_then(|v| {
                                jsonschema::validator_for(&v).map_err(|e| {
                                    format!("{} is not a valid JSON Schema: {e}", path.display())
                                })
                            });
                        match schema {
                            Ok(v) => Some(Arc::new(v)),
                            Err(message) => {
                                errors.push(ConfigError { path: at, message });
                                None
                            }
                        }
                    });
                    (name.clone(), validator)
                })
                .collect()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SubscriptionsRuntime {
            keys: c
                .api_keys
                .iter()
                .map(|(t, k)| (t.clone(), k.clone()))
                .collect(),
            allow: Arc::new(allow),
            retry: RetryPolicy::from_config(&c.retry),
            disable_after: c.disable_after.0,
            validation_timeout: c.validation_timeout.0,
            timeout: c.timeout.0,
            event_types,
            object_types: c.object_types.clone(),
            secret_rotation_overlap: c.secret_rotation_overlap.0,
        })
    }

    /// The tenant whose API key is `token`. Every key is compared, in
    /// constant time, so timing reveals neither keys nor tenants.
    pub fn tenant_for(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (tenant, key) in &self.keys {
            if constant_time_eq(token.as_bytes(), key.as_bytes()) {
                found = Some(tenant.as_str());
            }
        }
        found
    }

    /// Whether `object_type` is in the catalogue of object types.
    pub fn knows_object_type(&self, object_type: &str) -> bool {
        self.object_types.iter().any(|t| t == object_type)
    }

    /// Whether `event_type` may be subscribed to or published.
    pub fn declares(&self, event_type: &str) -> bool {
        match &self.event_types {
            None => true,
            Some(types) => event_type == "*" || types.contains_key(event_type),
        }
    }
}
