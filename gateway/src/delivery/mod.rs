//! Delivery: claimed deliveries go through per-destination lanes
//! ([`dispatcher`]) to an attempt ([`attempt`]) that POSTs them with one
//! shared HTTP client, and every attempt is recorded under the claim's
//! lease. The destination's [`RetryPolicy`] decides what follows: delivered,
//! retry later, or dead (retries exhausted, 410 Gone). Dead letters stay in
//! the store for inspection and replay.
//!
//! This is the only module that builds an HTTP client for outbound traffic.

mod attempt;
pub mod client;
pub mod dispatcher;
pub mod pacing;
pub mod plugin_http;
pub mod relay;
pub mod retarget;
pub mod ssrf;
pub mod teams;
pub mod tls;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

pub use crate::retry::{DeliveryOutcome, RetryPolicy};

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::pipeline::Snapshot;
use crate::store::{DueDelivery, InsertOptions, Inserted, NewEvent, Store, StoreError};
use dispatcher::Dispatcher;

/// What [`DeliveryHandle::insert`] did with an event.
#[derive(Debug)]
pub enum Committed {
    /// Stored, its claimed deliveries with the dispatcher; the relay
    /// destination's first reply, if asked for and that delivery was
    /// claimed.
    New {
        /// Deliveries created.
        deliveries: usize,
        /// The wait for the relayed reply.
        relay: Option<relay::RelayWait>,
        /// The claimed deliveries, for the dispatcher: submit them before
        /// answering. Dropped unsubmitted (the request went away), they go
        /// to the dispatcher all the same.
        handoff: Handoff,
    },
    /// The provider sent it before: `existing_id` has it.
    Duplicate {
        /// The event that has it.
        existing_id: String,
    },
}

/// Deliveries an insert claimed, on their way to the dispatcher: they
/// reach it when [`submit`](Self::submit) is called or, failing that, when
/// this is dropped, so a caller that is cancelled between the commit and
/// the hand-off does not leave them waiting out their lease.
///
/// The caller submits, not the insert's task: a task that spawned the
/// attempts and then completed woke the request's task, which took the
/// attempts' place at the head of the worker's run queue and sent them to
/// its back. Under load they waited behind every other task there
/// (answered -> delivered p50 0.03 ms -> 1 ms, p99 4 -> 15 ms in A/B).
/// Spawned from the request's task, just before it answers, they run
/// next there (the multi-thread scheduler's LIFO slot). With one worker
/// (the default on 2 cores) the runtime is the current-thread scheduler
/// (`main.rs`), which runs tasks in the order they were woken; measured
/// with it, answered -> delivered stayed where it was (`hookgate-bench`
/// row 5 p50 0.01 ms; at the fixed rate p99 0.5-0.8 ms against 0.9-1.1
/// ms).
#[derive(Debug)]
#[must_use = "submit the claimed deliveries (dropping them submits them too)"]
pub struct Handoff {
    dispatcher: Arc<Dispatcher>,
    claimed: Vec<DueDelivery>,
}

impl Handoff {
    /// Hands the claimed deliveries to their lanes now.
    pub fn submit(mut self) {
        self.hand_over();
    }

    fn hand_over(&mut self) {
        let claimed = std::mem::take(&mut self.claimed);
        if !claimed.is_empty() {
            self.dispatcher.submit(claimed);
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// Ingest's and the admin API's handle on delivery: what an insert may
/// claim, where its claimed deliveries go, and a wake-up for the poller.
/// Also the SSRF-guarded client for subscriber callbacks.
#[derive(Clone, Debug)]
pub struct DeliveryHandle {
    dispatcher: Arc<Dispatcher>,
    subscriber_client: client::Client,
    relay: Arc<relay::RelayWaiters>,
}

impl DeliveryHandle {
    /// Deliveries became due that nobody holds (a replay, an insert that
    /// could not claim everything): the poller looks now.
    pub fn wake(&self) {
        self.dispatcher.wake();
    }

    /// Stores `event`, claiming in the insert's own transaction the
    /// deliveries whose lanes have room, for the caller to hand to the
    /// dispatcher ([`Handoff`]); with `relay_to`, also listens for that
    /// destination's first reply.
    ///
    /// Runs as a task of its own, which the caller awaits: a caller whose
    /// request is dropped (the client gave up, or a shutdown closed its
    /// connection) must not drop the hand-off of a commit already queued,
    /// or its claimed deliveries would wait out their whole lease before the
    /// poller took them. The [`Handoff`] it returns keeps that promise for
    /// the moments after the task.
    pub async fn insert(
        &self,
        store: &Arc<dyn Store>,
        event: NewEvent,
        dedup_window: std::time::Duration,
        relay_to: Option<String>,
    ) -> Result<Committed, StoreError> {
        let plan = self.dispatcher.claim_for(
            event
                .messages
                .iter()
                .flat_map(|m| m.destinations.iter().map(String::as_str)),
            !event.fanout.is_empty(),
        );
        let subscribers_claimed = plan.claims_subscribers();
        let opts = InsertOptions {
            dedup_window,
            claim: plan.claim,
        };
        // The deliveries left to full lanes: when they are all that the
        // insert leaves unclaimed, those lanes' own wakes may do.
        let (left_names, left_deliveries) = (plan.left_to_lanes, plan.left_deliveries);
        let (this, store) = (self.clone(), store.clone());
        let task = async move {
            Ok(match store.insert(event, opts).await? {
                Inserted::New {
                    deliveries,
                    claimed,
                } => {
                    // Anything else left unclaimed (a subscriber while the
                    // gateway was full, a count that does not add up) is
                    // the poller's now. With subscribers claimed, those
                    // left are parked (not due) or in a full lane among
                    // `left_names`, whose count the insert cannot know.
                    if claimed.len() < deliveries
                        && ((claimed.len() + left_deliveries != deliveries && !subscribers_claimed)
                            || this.dispatcher.needs_poll(&left_names))
                    {
                        this.wake();
                    }
                    // Listen before the attempt can start.
                    let relay = relay_to.and_then(|to| this.relay_wait(&claimed, &to));
                    Committed::New {
                        deliveries,
                        relay,
                        handoff: Handoff {
                            dispatcher: this.dispatcher.clone(),
                            claimed,
                        },
                    }
                }
                Inserted::Duplicate { existing_id } => Committed::Duplicate { existing_id },
            })
        };
        tokio::spawn(tracing::Instrument::in_current_span(task))
            .await
            .unwrap_or_else(|e| Err(StoreError::Internal(format!("the insert task failed: {e}"))))
    }

    /// Listens for the first attempt of the delivery to `destination`
    /// among `claimed` (a route's `relay`), before they are handed to the
    /// dispatcher. `None` when that delivery was not claimed (its lane was
    /// full): the request falls back at once.
    fn relay_wait(&self, claimed: &[DueDelivery], destination: &str) -> Option<relay::RelayWait> {
        let d = claimed.iter().find(|d| d.destination == destination)?;
        Some(self.relay.register(d.id))
    }

    /// The client for subscriber-supplied URLs: it connects only to
    /// addresses that pass the SSRF guard and never follows redirects.
    pub fn subscriber_client(&self) -> &client::Client {
        &self.subscriber_client
    }
}

/// What every attempt needs.
#[derive(Debug)]
struct Ctx {
    store: Arc<dyn Store>,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    /// Operator destinations' attempts (those without `tls:`).
    client: client::Client,
    /// Subscriber callbacks' attempts: resolved through the SSRF guard.
    subscriber_client: client::Client,
    relay: Arc<relay::RelayWaiters>,
}

/// Idle keep-alive connections the delivery clients keep per host: a
/// lane of a busy destination reuses them instead of connecting again.
const POOL_PER_HOST: usize = 256;

/// Idle connections kept per subscriber host: a subscriber's lane sends
/// one attempt at a time.
const SUBSCRIBER_POOL_PER_HOST: usize = 16;

/// The `user-agent` of every outbound request.
const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// Starts delivery. It stops claiming when `stop` fires, hands back what it
/// had queued, and waits up to `delivery.shutdown_grace` for attempts in
/// flight; the returned task completes then. Attempts still unfinished keep
/// their lease in the store and are due again when it ends.
pub fn start(
    store: Arc<dyn Store>,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    config: &DeliveryConfig,
    stop: CancellationToken,
) -> anyhow::Result<(DeliveryHandle, tokio::task::JoinHandle<()>)> {
    let client = client::Client::new(tls::default_config());
    let allow_from = snapshots.clone();
    let allow: ssrf::AllowList = Arc::new(move || {
        allow_from
            .load()
            .subscriptions
            .as_ref()
            .map(|s| s.allow.clone())
            .unwrap_or_default()
    });
    let subscriber_client =
        client::Client::guarded(tls::default_config(), allow, SUBSCRIBER_POOL_PER_HOST);
    let due_hook = store.clone();
    let relay = Arc::new(relay::RelayWaiters::default());
    let ctx = Arc::new(Ctx {
        store,
        snapshots,
        metrics,
        client,
        subscriber_client: subscriber_client.clone(),
        relay: relay.clone(),
    });
    let dispatcher = Dispatcher::new(ctx, config.workers, config.lease.0, stop);
    // A shared store tells of deliveries other gateways made due (a
    // replay, a re-enabled subscription, work they could not take), so
    // this poller need not wait for its next look. Weak: the store must
    // not keep the dispatcher alive.
    let weak = Arc::downgrade(&dispatcher);
    due_hook.on_due(Arc::new(move || {
        if let Some(d) = weak.upgrade() {
            d.wake();
        }
    }));
    let task = tokio::spawn(dispatcher.clone().run(config.shutdown_grace.0));
    Ok((
        DeliveryHandle {
            dispatcher,
            subscriber_client,
            relay,
        },
        task,
    ))
}
