//! A webhook's path through a route: verify → transform → route, over one
//! immutable [`Snapshot`] of compiled routes, plugins and destinations.
//!
//! Deliberately not here: HTTP (ingress turns requests into
//! [`InboundRequest`]s and [`Outcome`]s into responses) and sending
//! (delivery). This module decides; it does no I/O.

mod compile;
pub mod credential;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

pub use compile::compile;

use crate::config::{DestinationConfig, DestinationKind, GatewayConfig};
use crate::metrics::Metrics;
use crate::plugin::{
    CallContext, InboundRequest, LoadedPlugin, MAX_MESSAGES_PER_REQUEST, Message, PluginError,
    PluginResponse, Stage, Verdict,
};

/// Request headers never forwarded to destinations: hop-by-hop headers and
/// framing that the delivery client sets itself. Credentials meant for the
/// gateway are [`credential`]'s business.
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
    "accept-encoding",
];

/// Everything a request needs, built once per config generation and never
/// mutated: a handler loads it once and keeps it to the end, so no request
/// sees half of an old config.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every successful (re)load.
    pub generation: u64,
    /// The config this was built from.
    pub config: Arc<GatewayConfig>,
    /// Routes by name.
    pub routes: HashMap<String, Arc<CompiledRoute>>,
    /// Destinations by name.
    pub destinations: HashMap<String, Arc<CompiledDestination>>,
    /// Every plugin in use, by name.
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// The subscription API's settings, when configured.
    pub subscriptions: Option<Arc<crate::subscriptions::SubscriptionsRuntime>>,
}

/// A plugin bound to its place in one route.
#[derive(Debug)]
pub struct PluginStep {
    /// The compiled plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Name, route and `with:` block handed to the plugin.
    pub ctx: CallContext,
}

/// A route, ready to run.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Route name.
    pub name: Arc<str>,
    /// Verifier, if any.
    pub verify: Option<PluginStep>,
    /// Transforms in order.
    pub transform: Vec<PluginStep>,
    /// Router, if any.
    pub route: Option<PluginStep>,
    /// Default destinations.
    pub to: Vec<String>,
    /// Body size limit in bytes.
    pub max_body_size: u64,
    /// Caps this route's requests running plugins (`max_in_flight`); shared
    /// with the next generation's route of the same name and cap, so a
    /// reload does not double it while old requests finish.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The cap `in_flight` was made with.
    pub max_in_flight: usize,
    /// Credential headers this route forwards anyway (lowercase).
    pub keep_headers: Vec<String>,
    /// Plugin time one request may use across all its calls.
    pub max_plugin_time: std::time::Duration,
    /// The destination whose reply answers the request, and how long it
    /// may take (`relay`).
    pub relay: Option<crate::config::RelayConfig>,
}

impl CompiledRoute {
    /// Whether the route runs any plugin.
    fn has_plugins(&self) -> bool {
        self.verify.is_some() || !self.transform.is_empty() || self.route.is_some()
    }
}

/// A destination, ready to send to.
#[derive(Debug)]
pub struct CompiledDestination {
    /// Name.
    pub name: Arc<str>,
    /// Kind.
    pub kind: DestinationKind,
    /// The target URL (http kind), prepared for the delivery client once,
    /// not at every attempt; else what each attempt records instead.
    pub target: Result<crate::delivery::client::Target, String>,
    /// Extra headers.
    pub headers: http::HeaderMap,
    /// Per-attempt timeout.
    pub timeout: std::time::Duration,
    /// Deliveries in flight to this destination at most (the dispatcher's
    /// lane for it; see `delivery::dispatcher`).
    pub concurrency: usize,
    /// When to retry after a failure.
    pub retry: crate::retry::RetryPolicy,
    /// Subscribers kind: object type of published events.
    pub object_type: Option<String>,
    /// Subscribers kind: object id, or a JSON pointer when it starts with `/`.
    pub object_id: Option<String>,
    /// Subscribers kind: only this tenant.
    pub tenant: Option<String>,
    /// Spaces request starts: `rate:`, and Teams' per-webhook rate for
    /// the Teams kind.
    pub pace: Option<crate::delivery::pacing::Pace>,
    /// How every attempt is signed, if it is (`signing:`).
    pub signing: Option<DestinationSigning>,
    /// `paused:` its deliveries wait in the store, unclaimed.
    pub paused: bool,
    /// Its own client, when it has `tls:` (set by `compile`, which reads
    /// the files); the shared one otherwise.
    pub client: Option<crate::delivery::tls::DestinationClient>,
}

/// A destination's `signing:`, ready to sign.
pub struct DestinationSigning {
    /// The scheme.
    pub scheme: crate::store::SignatureScheme,
    /// The secrets that sign, the current one first.
    secrets: Vec<String>,
}

impl DestinationSigning {
    /// The secrets that sign, the current one first.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

// Secrets stay out of debug output (logs, panics).
impl std::fmt::Debug for DestinationSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationSigning")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl CompiledDestination {
    /// Prepares a validated destination config.
    pub fn new(name: &str, d: &DestinationConfig) -> Self {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &d.headers {
            // Validated in config::validate.
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        let target = match d.url.as_deref().map(reqwest::Url::parse) {
            Some(Ok(url)) => crate::delivery::client::Target::new(&url)
                .map_err(|why| format!("request failed: {why}")),
            // The config check refuses such a URL; kept apart from "none"
            // so that a record never says the wrong one.
            Some(Err(why)) => Err(format!("request failed: the URL: {why}")),
            None => Err("destination has no url".to_owned()),
        };
        CompiledDestination {
            name: Arc::from(name),
            kind: d.kind,
            target,
            headers,
            timeout: d.timeout.0,
            concurrency: d.concurrency,
            retry: crate::retry::RetryPolicy::from_config(&d.retry),
            object_type: d.object_type.clone(),
            object_id: d.object_id.clone(),
            tenant: d.tenant.clone(),
            pace: crate::delivery::pacing::pace_for(
                d.kind,
                d.url.as_deref().unwrap_or(name),
                d.rate,
            ),
            signing: d.signing.as_ref().map(|s| DestinationSigning {
                scheme: s.scheme.into(),
                secrets: std::iter::once(s.secret.clone())
                    .chain(s.previous_secret.clone())
                    .collect(),
            }),
            paused: d.paused,
            client: None,
        }
    }
}

/// A message and where it goes.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The message, with its id assigned.
    pub message: Message,
    /// Destination names (all exist in the snapshot).
    pub destinations: Vec<Arc<CompiledDestination>>,
}

/// What the pipeline decided for one request.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted: deliver these.
    Accepted {
        /// The gateway's id for this webhook.
        event_id: String,
        /// The provider's delivery id, when the verifier found one.
        source_id: Option<String>,
        /// Messages and their destinations (may be empty: dropped).
        routed: Vec<Routed>,
        /// The verifier's reply, sent instead of the default 202.
        reply: Option<PluginResponse>,
        /// Headers the verifier said it consumed (lowercase): credentials
        /// of this request, redacted wherever it is kept.
        consumed: Vec<String>,
    },
    /// Answer with this and deliver nothing (handshake).
    Respond(PluginResponse),
    /// Refused by the verifier.
    Rejected {
        /// 4xx status.
        status: u16,
        /// Reason for the caller.
        reason: String,
    },
}

/// Why the pipeline failed (as opposed to rejecting the request).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A plugin failed.
    #[error("{stage} failed: {source}")]
    Plugin {
        /// Where.
        stage: Stage,
        /// What.
        #[source]
        source: PluginError,
    },
    /// The route already has `max_in_flight` requests running plugins.
    #[error("route `{route}` has too many requests running plugins; retry later")]
    Busy {
        /// The route.
        route: Arc<str>,
    },
    /// The transforms turned one request into too many messages.
    #[error("the transforms produced more than {limit} messages from one request")]
    TooManyMessages {
        /// The cap.
        limit: usize,
    },
    /// A router named a destination that does not exist.
    #[error("router `{plugin}` chose unknown destination {destination:?}")]
    UnknownDestination {
        /// The router plugin.
        plugin: String,
        /// The name it returned.
        destination: String,
    },
}

impl Snapshot {
    /// Runs `req` through `route`.
    pub async fn process(
        &self,
        route: &CompiledRoute,
        req: &InboundRequest,
        metrics: &Metrics,
    ) -> Result<Outcome, PipelineError> {
        // Held until the chain is done: every plugin call below holds a
        // pooled instance, and this is what bounds one route's share.
        let _permit = if route.has_plugins() {
            match route.in_flight.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    return Err(PipelineError::Busy {
                        route: route.name.clone(),
                    });
                }
            }
        } else {
            None
        };
        let budget = Budget {
            deadline: Instant::now() + route.max_plugin_time,
            total: route.max_plugin_time,
        };
        let event_id = new_event_id();
        let mut source_id = None;
        let mut event_type = None;
        let mut reply = None;
        let mut consumed = Vec::new();

        if let Some(step) = &route.verify {
            let verdict = timed(
                metrics,
                step,
                Stage::Verify,
                step.plugin.verify(&*budget.ctx(step, Stage::Verify)?, req),
            )
            .await?;
            match verdict {
                Verdict::Reject { status, reason } => {
                    // A verifier may only refuse: anything else would make
                    // providers retry a request that can never pass, or hide
                    // a rejection behind a success.
                    let status = if (400..500).contains(&status) {
                        status
                    } else {
                        401
                    };
                    return Ok(Outcome::Rejected { status, reason });
                }
                Verdict::Respond(r) => return Ok(Outcome::Respond(r)),
                Verdict::Accept {
                    id,
                    event_type: et,
                    reply: rep,
                    consumed: c,
                } => {
                    source_id = id;
                    event_type = et;
                    reply = rep;
                    consumed = c;
                }
            }
        }

        let content_type = req
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let first = Message {
            id: source_id.clone(),
            event_type,
            content_type,
            headers: req
                .headers
                .iter()
                .filter(|(k, _)| {
                    !DROPPED_HEADERS.contains(&k.as_str())
                        && (!credential::is_credential(k, &consumed)
                            || route.keep_headers.contains(k))
                })
                .cloned()
                .collect(),
            body: req.body.clone(),
        };

        let mut messages = vec![first];
        for step in &route.transform {
            let mut next = Vec::with_capacity(messages.len());
            for m in &messages {
                next.extend(
                    timed(
                        metrics,
                        step,
                        Stage::Transform,
                        step.plugin
                            .transform(&*budget.ctx(step, Stage::Transform)?, m),
                    )
                    .await?,
                );
            }
            if next.len() > MAX_MESSAGES_PER_REQUEST {
                return Err(PipelineError::TooManyMessages {
                    limit: MAX_MESSAGES_PER_REQUEST,
                });
            }
            messages = next;
        }

        // The dedup key: the provider's delivery id from the verifier, or the
        // id a transform set on the only message.
        let source_id = source_id.or_else(|| match messages.as_slice() {
            [only] => only.id.clone(),
            _ => None,
        });

        let count = messages.len();
        let mut routed = Vec::with_capacity(count);
        for (i, mut message) in messages.into_iter().enumerate() {
            // Every message leaves with a stable id: the provider's delivery
            // id when known, else the gateway's, suffixed when one webhook
            // became several messages so that ids stay unique.
            let base = message.id.clone().unwrap_or_else(|| event_id.clone());
            message.id = Some(if count > 1 {
                format!("{base}.{i}")
            } else {
                base
            });
            let names = match &route.route {
                Some(step) => {
                    timed(
                        metrics,
                        step,
                        Stage::Route,
                        step.plugin
                            .route(&*budget.ctx(step, Stage::Route)?, &message, &route.to),
                    )
                    .await?
                }
                None => route.to.clone(),
            };
            let mut destinations = Vec::with_capacity(names.len());
            for name in names {
                match self.destinations.get(&name) {
                    Some(d) => {
                        if !destinations
                            .iter()
                            .any(|x: &Arc<CompiledDestination>| x.name == d.name)
                        {
                            destinations.push(d.clone());
                        }
                    }
                    None => {
                        return Err(PipelineError::UnknownDestination {
                            plugin: route
                                .route
                                .as_ref()
                                .map(|s| s.plugin.name().to_string())
                                .unwrap_or_default(),
                            destination: name,
                        });
                    }
                }
            }
            routed.push(Routed {
                message,
                destinations,
            });
        }

        Ok(Outcome::Accepted {
            event_id,
            source_id,
            routed,
            reply,
            consumed,
        })
    }
}

/// What is left of one request's plugin time.
struct Budget {
    deadline: Instant,
    total: std::time::Duration,
}

impl Budget {
    /// `step`'s context with its deadline cut to what the request has left;
    /// a timeout of the step when nothing is left.
    fn ctx<'a>(
        &self,
        step: &'a PluginStep,
        stage: Stage,
    ) -> Result<std::borrow::Cow<'a, CallContext>, PipelineError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PipelineError::Plugin {
                stage,
                source: PluginError::Timeout {
                    plugin: step.plugin.name().clone(),
                    timeout: self.total,
                },
            });
        }
        if left >= step.ctx.limits.timeout {
            return Ok(std::borrow::Cow::Borrowed(&step.ctx));
        }
        let mut ctx = step.ctx.clone();
        ctx.limits.timeout = left;
        Ok(std::borrow::Cow::Owned(ctx))
    }
}

/// Runs one plugin call and records its latency and outcome.
async fn timed<T>(
    metrics: &Metrics,
    step: &PluginStep,
    stage: Stage,
    call: impl Future<Output = Result<T, PluginError>>,
) -> Result<T, PipelineError> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics.plugin_call(step.plugin.name(), stage, outcome, started.elapsed());
    result.map_err(|source| PipelineError::Plugin { stage, source })
}

/// A new gateway event id: time-ordered (UUIDv7) so ids sort by arrival.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(d: serde_json::Value) -> CompiledDestination {
        let d: DestinationConfig = serde_json::from_value(d).unwrap();
        CompiledDestination::new("d", &d)
    }

    /// The URL is prepared once, its user and password moved to the
    /// authorization; a destination without one carries what each attempt
    /// records instead.
    #[test]
    fn a_destinations_target_is_prepared_at_compile() {
        let with_user = compiled(serde_json::json!({ "url": "http://u:p@127.0.0.1:9/x" }));
        let target = format!("{:?}", with_user.target.unwrap());
        assert!(target.contains("http://127.0.0.1:9/x"), "{target}");
        assert!(!target.contains("u:p@"), "{target}");
        assert!(target.contains("authorization: Some"), "{target}");

        let none = compiled(serde_json::json!({ "kind": "log" }));
        assert_eq!(none.target.unwrap_err(), "destination has no url");

        let bad = compiled(serde_json::json!({ "url": "not a url" }));
        let why = bad.target.unwrap_err();
        assert!(why.starts_with("request failed: the URL: "), "{why}");
    }
}
