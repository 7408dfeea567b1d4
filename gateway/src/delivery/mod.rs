//! Delivery: workers claim due deliveries from the [`Store`], POST them
//! with one shared HTTP client (keep-alive, per-destination timeout and
//! concurrency bound, a global bound on attempts in flight), record every
//! attempt, and schedule retries by the destination's [`RetryPolicy`].
//!
//! Each attempt ends in a [`DeliveryOutcome`]: delivered, retry later, or
//! dead (retries exhausted, 410 Gone). Dead letters stay in the store for
//! inspection and replay.
//!
//! This is the only module that builds an HTTP client for outbound traffic.

pub mod plugin_http;
pub mod retry;
pub mod ssrf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use retry::{DeliveryOutcome, RetryPolicy};

use crate::clock::now_ms;
use crate::config::{DeliveryConfig, DestinationKind};
use crate::metrics::Metrics;
use crate::pipeline::{CompiledDestination, Snapshot};
use crate::plugin::Message;
use crate::store::sqlite::SUBSCRIBER_PREFIX;
use crate::store::{AttemptRecord, DueDelivery, NextState, Store};
use retry::{AttemptResult, parse_retry_after};

/// Longest body excerpt written to the log by `kind: log` destinations.
const MAX_LOGGED_BODY: usize = 16 << 10;

/// How much of a destination's response body is kept with the attempt.
const RESPONSE_EXCERPT: usize = 4 << 10;

/// Deliveries claimed per store round trip.
const CLAIM_BATCH: usize = 256;

/// How long a claimed delivery is reserved for its attempt. Longer than any
/// sane destination timeout; after a crash the lease is released at start.
const LEASE: Duration = Duration::from_secs(5 * 60);

/// Longest sleep while idle: bounds how late a delivery scheduled by
/// another process (or a clock jump) is noticed.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// A handle to wake the workers when new deliveries become due, and the
/// SSRF-guarded client for subscriber callbacks.
#[derive(Clone, Debug)]
pub struct DeliveryHandle {
    wake: Arc<Notify>,
    subscriber_client: reqwest::Client,
}

impl DeliveryHandle {
    /// New deliveries are due: stop idling.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The client for subscriber-supplied URLs: it connects only to
    /// addresses that pass the SSRF guard and never follows redirects.
    pub fn subscriber_client(&self) -> &reqwest::Client {
        &self.subscriber_client
    }
}

struct Ctx {
    store: Arc<dyn Store>,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    client: reqwest::Client,
    subscriber_client: reqwest::Client,
}

/// What every outbound client shares: no redirects (a signed delivery must
/// not be replayed to wherever a redirect points), no proxy from the
/// environment, and our user agent.
fn client_builder() -> reqwest::ClientBuilder {
    #[expect(
        clippy::disallowed_methods,
        reason = "delivery is where outbound clients are built"
    )]
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
}

/// Starts the delivery workers. They stop claiming when `stop` fires and
/// wait up to `delivery.shutdown_grace` for attempts in flight; the
/// returned task completes then. Unfinished attempts stay claimed in the
/// store and are retried after a restart.
pub fn start(
    store: Arc<dyn Store>,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    config: &DeliveryConfig,
    stop: CancellationToken,
) -> anyhow::Result<(DeliveryHandle, tokio::task::JoinHandle<()>)> {
    let client = client_builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let allow_from = snapshots.clone();
    let allow: ssrf::AllowList = Arc::new(move || {
        allow_from
            .load()
            .subscriptions
            .as_ref()
            .map(|s| s.allow.clone())
            .unwrap_or_default()
    });
    let subscriber_client = client_builder()
        .dns_resolver(Arc::new(ssrf::GuardedResolver::new(allow)))
        .pool_max_idle_per_host(16)
        .build()?;
    let handle = DeliveryHandle {
        wake: Arc::new(Notify::new()),
        subscriber_client: subscriber_client.clone(),
    };
    let ctx = Arc::new(Ctx {
        store,
        snapshots,
        metrics,
        client,
        subscriber_client,
    });
    let workers = Arc::new(Semaphore::new(config.workers));
    let task = tokio::spawn(run(
        ctx,
        workers,
        handle.wake.clone(),
        stop,
        config.shutdown_grace.0,
    ));
    Ok((handle, task))
}

async fn run(
    ctx: Arc<Ctx>,
    workers: Arc<Semaphore>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    grace: Duration,
) {
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = workers.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        let want = (workers.available_permits() + 1).min(CLAIM_BATCH);
        let now = now_ms();
        let claimed = ctx
            .store
            .claim_due(now, want, now + LEASE.as_millis() as u64)
            .await;
        match claimed {
            Ok(due) if !due.is_empty() => {
                let mut first = Some(permit);
                for d in due {
                    let permit = match first.take() {
                        Some(p) => p,
                        None => match workers.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    tracker.spawn(attempt(ctx.clone(), d, permit));
                }
            }
            Ok(_) => {
                drop(permit);
                let idle = match ctx.store.next_due_ms().await {
                    Ok(Some(at)) => {
                        Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE_POLL)
                    }
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    () = wake.notified() => {},
                    () = tokio::time::sleep(idle) => {},
                    () = stop.cancelled() => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::error!(error = %e, "cannot claim deliveries; retrying");
                tokio::select! {
                    () = tokio::time::sleep(IDLE_POLL) => {},
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace ended with attempts in flight; they will be retried after restart"
        );
    }
}

/// One attempt of one delivery, recorded in the store.
async fn attempt(ctx: Arc<Ctx>, d: DueDelivery, _permit: OwnedSemaphorePermit) {
    let snapshot = ctx.snapshots.load_full();
    let attempted_at_ms = now_ms();
    let started = Instant::now();
    if let Some(sub_id) = d.destination.strip_prefix(SUBSCRIBER_PREFIX) {
        let sub_id = sub_id.to_owned();
        let (outcome, result, excerpt) = subscriber_attempt(&ctx, &snapshot, &sub_id, &d).await;
        finish(
            &ctx,
            d,
            attempted_at_ms,
            started,
            outcome,
            result,
            excerpt,
            true,
        )
        .await;
        return;
    }
    let dest = snapshot.destinations.get(&d.destination).cloned();
    let (outcome, result, excerpt) = match &dest {
        None => (
            DeliveryOutcome::Dead(format!(
                "destination {:?} is no longer configured",
                d.destination
            )),
            AttemptResult {
                error: Some("destination not configured".into()),
                ..Default::default()
            },
            None,
        ),
        Some(dest) => {
            let (result, excerpt) = match dest.kind {
                DestinationKind::Log => {
                    log_delivery(dest, &d);
                    (
                        AttemptResult {
                            status: Some(200),
                            ..Default::default()
                        },
                        None,
                    )
                }
                DestinationKind::Http => send(&ctx.client, dest, &d).await,
                // Fan-out to subscribers is expanded at insert time; a
                // delivery addressed to the destination itself has nothing
                // to send.
                DestinationKind::Subscribers => (
                    AttemptResult {
                        status: Some(200),
                        ..Default::default()
                    },
                    None,
                ),
            };
            (dest.retry.decide(&result, d.retries), result, excerpt)
        }
    };
    let known = dest.is_some();
    finish(
        &ctx,
        d,
        attempted_at_ms,
        started,
        outcome,
        result,
        excerpt,
        known,
    )
    .await;
}

/// Logs, counts and records the end of an attempt.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per kind of delivery"
)]
async fn finish(
    ctx: &Ctx,
    d: DueDelivery,
    attempted_at_ms: u64,
    started: Instant,
    outcome: DeliveryOutcome,
    result: AttemptResult,
    excerpt: Option<String>,
    count: bool,
) {
    let latency = started.elapsed();
    let dest_name = d.destination.as_str();
    match &outcome {
        DeliveryOutcome::Delivered => {
            tracing::debug!(
                destination = dest_name,
                event_id = d.event_id,
                status = result.status,
                ?latency,
                "delivered"
            );
        }
        DeliveryOutcome::Retry(wait) => {
            tracing::warn!(destination = dest_name, event_id = d.event_id, status = result.status, error = result.error, retry_in = ?wait, "delivery failed; will retry");
        }
        DeliveryOutcome::Dead(reason) => {
            // A dead letter needs an operator: replay it once fixed.
            tracing::error!(
                destination = dest_name,
                route = d.route,
                event_id = d.event_id,
                reason,
                "delivery is dead"
            );
        }
    }
    if count {
        // Subscriber deliveries share one label: ids are unbounded.
        let label = if dest_name.starts_with(SUBSCRIBER_PREFIX) {
            "subscribers"
        } else {
            dest_name
        };
        ctx.metrics.delivery(label, outcome.label(), latency);
    }
    let next = match outcome {
        DeliveryOutcome::Delivered => NextState::Delivered,
        DeliveryOutcome::Retry(wait) => NextState::Retry {
            at_ms: now_ms() + wait.as_millis() as u64,
        },
        DeliveryOutcome::Dead(reason) => NextState::Dead { reason },
    };
    let record = AttemptRecord {
        delivery_id: d.id,
        attempted_at_ms,
        status: result.status,
        latency_ms: latency.as_millis() as u64,
        error: result.error,
        response_excerpt: excerpt,
        next,
    };
    if let Err(e) = ctx.store.record(record).await {
        // The delivery stays claimed and is attempted again when its lease
        // ends: a duplicate, never a loss.
        tracing::error!(event_id = d.event_id, error = %e, "cannot record a delivery attempt");
    }
}

/// One attempt to a subscription: signed with its secret, sent through the
/// SSRF-guarded client, and counted towards its health.
async fn subscriber_attempt(
    ctx: &Ctx,
    snapshot: &Snapshot,
    sub_id: &str,
    d: &DueDelivery,
) -> (DeliveryOutcome, AttemptResult, Option<String>) {
    let fail = |reason: String| {
        (
            DeliveryOutcome::Dead(reason.clone()),
            AttemptResult {
                error: Some(reason),
                ..Default::default()
            },
            None,
        )
    };
    let Some(rt) = snapshot.subscriptions.clone() else {
        return fail("the subscription API is no longer configured".into());
    };
    let sub = match ctx.store.get_subscription(None, sub_id.to_owned()).await {
        Ok(Some(s)) => s,
        Ok(None) => return fail("the subscription was deleted".into()),
        Err(e) => {
            return (
                DeliveryOutcome::Retry(
                    rt.retry
                        .wait(d.retries + 1)
                        .unwrap_or(Duration::from_secs(60)),
                ),
                AttemptResult {
                    error: Some(format!("store: {e}")),
                    ..Default::default()
                },
                None,
            );
        }
    };
    if !sub.active {
        return fail("the subscription is inactive".into());
    }
    if sub.validity_ms <= now_ms() {
        return fail("the subscription has expired".into());
    }
    let Ok(url) = reqwest::Url::parse(&sub.callback_url) else {
        return fail("the callback URL is invalid".into());
    };
    if let Err(reason) = ssrf::check_url(&url, &rt.allow).await {
        return fail(format!("callback refused: {reason}"));
    }

    // The envelope gets this subscription's id and context.
    let mut body: serde_json::Value =
        serde_json::from_slice(&d.message.body).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut body {
        map.insert("subscriptionId".into(), sub.id.clone().into());
        map.insert(
            "context".into(),
            sub.context.clone().unwrap_or(serde_json::Value::Null),
        );
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let id = d.message.id.as_deref().unwrap_or(&d.event_id);
    let timestamp = now_ms() / 1000;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let signature = crate::subscriptions::signature::sign(&sub.secret, id, timestamp, &body);
    for (name, value) in [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(token) = sub
        .callback_token
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(HeaderName::from_static("kz-callback-token"), token);
    }
    let (result, excerpt) = post(
        &ctx.subscriber_client,
        url,
        rt.timeout,
        headers,
        body.into(),
    )
    .await;
    let outcome = rt.retry.decide(&result, d.retries);
    let success = matches!(outcome, DeliveryOutcome::Delivered);
    let gone = result.status == Some(410);
    match ctx
        .store
        .subscription_outcome(
            sub.id.clone(),
            success,
            gone,
            now_ms(),
            rt.disable_after.as_millis() as u64,
        )
        .await
    {
        Ok(crate::store::SubscriptionHealth::Disabled) => {
            tracing::warn!(
                subscription = sub.id,
                tenant = sub.tenant,
                "subscription disabled after failing continuously; re-enable with PUT /v1/webhook/{{id}}"
            );
            ctx.metrics.subscription_disabled();
            if !success {
                return (
                    DeliveryOutcome::Dead("the subscription was disabled".into()),
                    result,
                    excerpt,
                );
            }
        }
        Ok(crate::store::SubscriptionHealth::Active) => {}
        Err(e) => {
            tracing::warn!(subscription = sub.id, error = %e, "cannot record subscription health")
        }
    }
    (outcome, result, excerpt)
}

async fn send(
    client: &reqwest::Client,
    dest: &CompiledDestination,
    d: &DueDelivery,
) -> (AttemptResult, Option<String>) {
    let Some(url) = dest.url.clone() else {
        return (
            AttemptResult {
                error: Some("destination has no url".into()),
                ..Default::default()
            },
            None,
        );
    };
    let _slot = dest.in_flight.acquire().await;
    let id = d.message.id.as_deref().unwrap_or(&d.event_id);
    post(
        client,
        url,
        dest.timeout,
        outbound_headers(&d.message, dest, id),
        d.message.body.clone(),
    )
    .await
}

/// POSTs `body` and reads the outcome: status, `Retry-After`, and the
/// first [`RESPONSE_EXCERPT`] bytes of the answer.
async fn post(
    client: &reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> (AttemptResult, Option<String>) {
    let sent = client
        .post(url)
        .timeout(timeout)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            let mut excerpt = Vec::new();
            while excerpt.len() < RESPONSE_EXCERPT {
                match resp.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            excerpt.truncate(RESPONSE_EXCERPT);
            let excerpt =
                (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned());
            (
                AttemptResult {
                    status: Some(status),
                    retry_after,
                    error: None,
                },
                excerpt,
            )
        }
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {timeout:?}")
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "request failed".to_owned()
            };
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            (
                AttemptResult {
                    error: Some(format!("{what}{source}")),
                    ..Default::default()
                },
                None,
            )
        }
    }
}

fn log_delivery(dest: &CompiledDestination, d: &DueDelivery) {
    tracing::info!(
        target: "hookgate::delivery",
        destination = &*dest.name,
        route = d.route,
        event_id = d.event_id,
        message_id = d.message.id.as_deref().unwrap_or(""),
        event_type = d.message.event_type.as_deref().unwrap_or(""),
        content_type = d.message.content_type.as_str(),
        "log destination would deliver:\n{}",
        printable(&d.message)
    );
}

/// The message's headers, then the destination's own (which win), then the
/// framing the gateway owns: content type and the stable `webhook-id`.
fn outbound_headers(message: &Message, dest: &CompiledDestination, id: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(message.headers.len() + dest.headers.len() + 2);
    for (k, v) in &message.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    for (k, v) in &dest.headers {
        headers.insert(k.clone(), v.clone());
    }
    if let Ok(ct) = HeaderValue::from_str(&message.content_type) {
        headers.insert(http::header::CONTENT_TYPE, ct);
    }
    if let Ok(id) = HeaderValue::from_str(id) {
        headers.insert(HeaderName::from_static("webhook-id"), id);
    }
    headers
}

/// The body as text for the log: pretty JSON when it is JSON, cut to
/// [`MAX_LOGGED_BODY`].
fn printable(message: &Message) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(&message.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&message.body).into_owned());
    if text.len() > MAX_LOGGED_BODY {
        let mut cut = MAX_LOGGED_BODY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes in all)", &text[..cut], text.len())
    } else {
        text
    }
}
