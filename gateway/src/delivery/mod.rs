//! Delivery: accepted messages are handed to a [`Dispatcher`], which sends
//! each to its destinations with one shared HTTP client (keep-alive), a
//! per-destination timeout and concurrency bound, and a global bound on
//! deliveries in flight.
//!
//! The hand-off is [`Dispatcher::submit`] with an [`AcceptedEvent`]: today
//! a bounded in-memory queue, so a full queue sheds load (503) instead of
//! growing without bound. The durable store slots in behind the same call:
//! `submit` then returns once the event is committed, and workers claim due
//! deliveries from the store instead of the channel.
//!
//! This is the only module that builds an HTTP client for outbound traffic.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DeliveryConfig, DestinationKind};
use crate::metrics::Metrics;
use crate::pipeline::{CompiledDestination, Routed};
use crate::plugin::Message;

/// How long shutdown waits for deliveries already in flight.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest body excerpt written to the log by `kind: log` destinations.
const MAX_LOGGED_BODY: usize = 16 << 10;

/// An accepted webhook and what it turned into.
#[derive(Debug)]
pub struct AcceptedEvent {
    /// The gateway's event id.
    pub event_id: String,
    /// Route it came in on.
    pub route: Arc<str>,
    /// Messages and their destinations.
    pub routed: Vec<Routed>,
}

/// Why an event could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue is full: shed load, the provider will retry.
    #[error("delivery queue is full")]
    Full,
    /// The gateway is shutting down.
    #[error("delivery is shutting down")]
    Closed,
}

struct Job {
    event_id: Arc<str>,
    route: Arc<str>,
    message: Arc<Message>,
    destination: Arc<CompiledDestination>,
}

/// Accepts events and delivers them in the background.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

impl Dispatcher {
    /// Starts the delivery loop. It stops taking new work when `shutdown`
    /// fires, sends what is queued, and waits up to [`DEFAULT_SHUTDOWN_GRACE`]
    /// for deliveries in flight; the returned handle completes then.
    pub fn start(
        config: &DeliveryConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        #[expect(
            clippy::disallowed_methods,
            reason = "delivery is where outbound clients are built"
        )]
        let client = reqwest::Client::builder()
            // Signed deliveries must not be replayed to wherever a redirect
            // points.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let workers = Arc::new(Semaphore::new(config.workers));
        let handle = tokio::spawn(run(rx, client, metrics, workers, shutdown));
        Ok((Dispatcher { tx }, handle))
    }

    /// Hands an accepted event over for delivery: all of its deliveries or,
    /// when the queue has no room for all of them, none.
    pub fn submit(&self, event: AcceptedEvent) -> Result<(), EnqueueError> {
        let total: usize = event.routed.iter().map(|r| r.destinations.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let permits = self.tx.try_reserve_many(total).map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => EnqueueError::Full,
            mpsc::error::TrySendError::Closed(()) => EnqueueError::Closed,
        })?;
        let event_id: Arc<str> = Arc::from(event.event_id);
        let mut permits = permits;
        for routed in event.routed {
            let message = Arc::new(routed.message);
            for destination in routed.destinations {
                if let Some(permit) = permits.next() {
                    permit.send(Job {
                        event_id: event_id.clone(),
                        route: event.route.clone(),
                        message: message.clone(),
                        destination,
                    });
                }
            }
        }
        Ok(())
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    client: reqwest::Client,
    metrics: Metrics,
    workers: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        let job = tokio::select! {
            job = rx.recv() => job,
            () = shutdown.cancelled() => break,
        };
        let Some(job) = job else { break };
        spawn_job(&tracker, &workers, &client, &metrics, job).await;
    }
    // Send what was accepted before shutdown, within the grace period.
    rx.close();
    let drain = async {
        while let Some(job) = rx.recv().await {
            spawn_job(&tracker, &workers, &client, &metrics, job).await;
        }
        tracker.close();
        tracker.wait().await;
    };
    if tokio::time::timeout(DEFAULT_SHUTDOWN_GRACE, drain)
        .await
        .is_err()
    {
        tracing::error!("shutdown grace period ended with deliveries still in flight");
    }
}

async fn spawn_job(
    tracker: &TaskTracker,
    workers: &Arc<Semaphore>,
    client: &reqwest::Client,
    metrics: &Metrics,
    job: Job,
) {
    let Ok(permit) = workers.clone().acquire_owned().await else {
        return;
    };
    let client = client.clone();
    let metrics = metrics.clone();
    tracker.spawn(async move {
        deliver(&client, &metrics, job).await;
        drop(permit);
    });
}

async fn deliver(client: &reqwest::Client, metrics: &Metrics, job: Job) {
    let dest = &job.destination;
    let id = job.message.id.as_deref().unwrap_or(&job.event_id);
    match dest.kind {
        DestinationKind::Log => {
            tracing::info!(
                target: "hookgate::delivery",
                destination = &*dest.name,
                route = &*job.route,
                event_id = &*job.event_id,
                message_id = id,
                event_type = job.message.event_type.as_deref().unwrap_or(""),
                content_type = job.message.content_type.as_str(),
                "log destination would deliver:\n{}",
                printable(&job.message)
            );
            metrics.delivery(&dest.name, "logged", std::time::Duration::ZERO);
        }
        DestinationKind::Http => {
            let Some(url) = dest.url.clone() else { return };
            let _slot = dest.in_flight.acquire().await;
            let started = Instant::now();
            let result = client
                .post(url)
                .timeout(dest.timeout)
                .headers(outbound_headers(&job.message, dest, id))
                .body(job.message.body.clone())
                .send()
                .await;
            let elapsed = started.elapsed();
            match result {
                Ok(resp) if resp.status().is_success() => {
                    metrics.delivery(&dest.name, "delivered", elapsed);
                    tracing::debug!(
                        destination = &*dest.name,
                        event_id = &*job.event_id,
                        status = resp.status().as_u16(),
                        ?elapsed,
                        "delivered"
                    );
                }
                Ok(resp) => {
                    metrics.delivery(&dest.name, "failed_status", elapsed);
                    tracing::error!(
                        destination = &*dest.name,
                        route = &*job.route,
                        event_id = &*job.event_id,
                        status = resp.status().as_u16(),
                        "delivery refused by destination"
                    );
                }
                Err(e) => {
                    let outcome = if e.is_timeout() {
                        "timeout"
                    } else {
                        "failed_network"
                    };
                    metrics.delivery(&dest.name, outcome, elapsed);
                    tracing::error!(destination = &*dest.name, route = &*job.route, event_id = &*job.event_id, error = %e, "delivery failed");
                }
            }
        }
    }
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
