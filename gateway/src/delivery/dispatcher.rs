//! The dispatcher: one lane per destination, so a slow destination waits
//! alone.
//!
//! Claimed deliveries come from two places: straight from ingest (claimed
//! in the insert's own transaction, so a new webhook's deliveries start
//! without a round trip through the store) and from the poller, which
//! claims what is due (retries, replays, the leftovers of a restart or of
//! another gateway). Either way a delivery enters its destination's lane.
//!
//! A lane starts an attempt when it has fewer than its `concurrency` in
//! flight and the gateway fewer than `delivery.workers`; nothing ever
//! *waits* for a permit while holding another. Otherwise the delivery
//! queues in its lane, a bounded number deep: a lane that is full is
//! skipped by the poller and by ingest's claims, so a hanging destination
//! holds its own `concurrency` of attempts and nothing else. The poller
//! claims no more than the lanes have room for (plus a small allowance for
//! destinations without a lane yet, which the lanes' slack above their cap
//! absorbs), and a full lane wakes it again only once half its queue has
//! gone, so a destination slower than ingest costs one claim per batch,
//! not a claim and dozens of hand-backs per attempt. Claimed deliveries
//! that still find their lane past its slack are handed back to the store.

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Ctx;
use crate::observability::flood::{Flood, log_limited};
use crate::store::{AttemptRecord, ClaimNew, DueDelivery, LeaseToken, Recorded, SUBSCRIBER_PREFIX};

/// How long a claim reserves a delivery, unless `delivery.lease` says
/// otherwise. Attempts in flight renew it every third of it, so a crashed
/// gateway's deliveries are due again within a minute, and a slow
/// destination's attempt is never claimed twice.
pub const LEASE: Duration = Duration::from_secs(60);

/// Most deliveries claimed in one store round trip.
const CLAIM_BATCH: usize = 256;

/// Longest sleep while idle: bounds how late a delivery scheduled by
/// another process (or a clock jump) is noticed.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Shortest sleep between polls that found due work they could not take,
/// so a poller never spins.
const MIN_POLL: Duration = Duration::from_millis(5);

/// Whether `destination` is `paused:` in `snapshot`: its deliveries stay
/// in the store, claimed by no insert and no poll.
fn paused(snapshot: &crate::pipeline::Snapshot, destination: &str) -> bool {
    snapshot
        .destinations
        .get(destination)
        .is_some_and(|d| d.paused)
}

/// After a poll that came back short while lanes were full, the next one
/// waits this many times as long as that poll took (at least
/// [`MIN_POLL`]), however often it is woken meanwhile: such polls take at
/// most a quarter of the poller's time, and of the store's on its behalf.
/// On PostgreSQL every insert that leaves due work unclaimed notifies
/// every gateway, and with a subscriber's lane full that is every publish:
/// measured, the poller claimed 128 times a second, each claim a 6 ms walk
/// past the full lane's due backlog, most of the database's time.
const PACE_FACTOR: u32 = 4;

/// Attempts in flight to one subscription at most: one, so that a
/// subscriber gets its events in order (the oldest first after a
/// re-enable) unless one of them has to be retried.
const SUBSCRIBER_CONCURRENCY: usize = 1;

/// A lane queues at least this many claimed deliveries (more when its
/// concurrency is higher: [`QUEUE_PER_SLOT`]), so a lane of concurrency 1
/// does not hand most claims back. A delivery that waits longer than a third of its lease renews
/// its lease before it starts.
const MIN_QUEUE: usize = 16;

/// Claimed deliveries a lane queues per place of its `concurrency` (up to
/// [`CLAIM_BATCH`]), and [`QUEUE_BYTES`] of messages at most. A lane is
/// refilled by a poll when half its queue has gone, so the queue's depth
/// sets how many deliveries one claim brings: with a queue as deep as the
/// concurrency (32), draining a backlog (after an outage, a pause, a
/// replay) took a claim and a second, empty claim past the full lane for
/// every 16-48 deliveries. `hookgate-bench`'s drain, 60,000 stored
/// webhooks to one destination of concurrency 32 (LTO build, alternated):
/// 3,116 and 5,046 deliveries/s at 131 and 102 µs of CPU per delivery
/// with a queue of 32; 6,307 (103 µs) with 64, 11,261 and 14,162 (95 and
/// 82 µs) with 128, 18,981 (70 µs) with 256.
const QUEUE_PER_SLOT: usize = 8;

/// Message bytes a lane queues at most, whatever its count: a deep queue of
/// large messages (bodies up to `limits.max_body_size`, 1 MiB by default)
/// for a destination that does not answer is memory held for nothing. The
/// lane counts as full at this many bytes (so a lane of 1 MiB messages
/// queues 16); a claim already under way may take it to twice this before
/// deliveries are handed back.
const QUEUE_BYTES: usize = 16 << 20;

/// Concurrency of a destination missing from the current config: its
/// deliveries are only postponed, one at a time.
const UNKNOWN_CONCURRENCY: usize = 1;

/// An attempt's lane slot and gateway-wide slot, freed once: by
/// [`Slot::free`] when the destination has answered, or on drop (the
/// attempt returned early, or panicked).
struct Slot<'a> {
    dispatcher: &'a Arc<Dispatcher>,
    destination: &'a str,
    freed: std::sync::atomic::AtomicBool,
}

impl Slot<'_> {
    fn free(&self) {
        if !self.freed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.dispatcher.finished(self.destination);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.free();
    }
}

/// One destination's lane.
#[derive(Debug)]
struct Lane {
    limit: usize,
    in_flight: usize,
    queue: VecDeque<(DueDelivery, Instant)>,
    /// The message bytes in `queue`.
    queued_bytes: usize,
    /// The poller left this lane's due deliveries in the store because the
    /// lane was full: wake it when room opens.
    skipped: bool,
    /// The lane is in [`Lanes::ready`] (once at most, so that each waiting
    /// lane gets the next gateway-wide slot in turn, whatever its backlog).
    in_ready: bool,
}

impl Lane {
    /// Deliveries the lane queues before it counts as full: claims (the
    /// poller's and ingest's) then leave its deliveries in the store.
    fn cap(&self) -> usize {
        (self.limit.saturating_mul(QUEUE_PER_SLOT)).clamp(MIN_QUEUE, CLAIM_BATCH)
    }

    fn full(&self) -> bool {
        self.queue.len() >= self.cap() || self.queued_bytes >= QUEUE_BYTES
    }

    /// Deliveries the lane can take before it is full: free slots plus
    /// queue room.
    fn room(&self) -> usize {
        let queue_room = if self.queued_bytes >= QUEUE_BYTES {
            0
        } else {
            self.cap().saturating_sub(self.queue.len())
        };
        self.limit.saturating_sub(self.in_flight) + queue_room
    }

    /// Whether a poll may refill the lane: half its queue has gone (by
    /// count and by bytes), so that the poll claims a batch, not one
    /// delivery per finished attempt.
    fn half_empty(&self) -> bool {
        self.queue.len() <= self.cap() / 2 && self.queued_bytes <= QUEUE_BYTES / 2
    }

    fn push(&mut self, d: DueDelivery, at: Instant) {
        self.queued_bytes += d.message.body.len();
        self.queue.push_back((d, at));
    }

    fn pop(&mut self) -> Option<(DueDelivery, Instant)> {
        let next = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(next.0.message.body.len());
        Some(next)
    }

    /// Past this a claimed delivery is handed back to the store. The slack
    /// above `cap` takes a poll's allowance for lanes it did not know of
    /// ([`POLL_ALLOWANCE`]) and inserts that looked while the lane had room,
    /// so a claim is not undone by a release, one store write each.
    fn overflowing(&self) -> bool {
        self.queue.len() >= self.cap() + POLL_ALLOWANCE || self.queued_bytes >= 2 * QUEUE_BYTES
    }

    /// Whether the lane has a delivery waiting and room to start it.
    fn wants_slot(&self) -> bool {
        !self.queue.is_empty() && self.in_flight < self.limit
    }
}

/// What a poll claims beyond the room of the lanes it knows: due
/// deliveries may be for destinations that have no lane yet. It is also
/// the lanes' slack above their cap, so it never has to be handed back.
const POLL_ALLOWANCE: usize = MIN_QUEUE;

#[derive(Debug, Default)]
struct Lanes {
    map: HashMap<String, Lane>,
    in_flight: usize,
    /// Lanes with queued deliveries that wait for a gateway-wide slot, in
    /// the order they are served: a lane that has just been served goes to
    /// the back, so a lane with a long backlog (a slow destination's) never
    /// keeps the slots its attempts free while other lanes wait.
    ready: VecDeque<String>,
    /// The poller found no gateway-wide room: wake it when a slot opens.
    poller_starved: bool,
}

/// What an insert claims ([`Dispatcher::claim_for`]).
#[derive(Debug, Default)]
pub struct InsertClaim {
    /// The claim for the insert's transaction.
    pub claim: Option<ClaimNew>,
    /// Named destinations not claimed because their lane is full.
    pub left_to_lanes: Vec<String>,
    /// The deliveries to those destinations (one per message naming one).
    pub left_deliveries: usize,
}

impl InsertClaim {
    /// Whether the claim takes the fan-out's subscriber deliveries (but
    /// those of full lanes, which are in `left_to_lanes` too): then every
    /// subscriber delivery left unclaimed is either parked or waits for
    /// its lane's wake.
    pub fn claims_subscribers(&self) -> bool {
        self.claim.as_ref().is_some_and(|c| c.subscribers)
    }
}

/// The dispatcher. Shared by ingest (through `DeliveryHandle`), the
/// poller and every attempt.
#[derive(Debug)]
pub struct Dispatcher {
    ctx: Arc<Ctx>,
    lanes: Mutex<Lanes>,
    wake: Notify,
    tracker: TaskTracker,
    workers: usize,
    /// Attempt records waiting for their commit at most.
    recording: Arc<Semaphore>,
    stop: CancellationToken,
    /// Claims' lease (`delivery.lease`).
    lease: Duration,
    /// How often an attempt in flight renews its lease; a delivery that
    /// waited in its lane longer than this renews before it starts.
    renew_every: Duration,
}

/// Attempt records waiting for the store's commit at once, at most.
const RECORDS_IN_FLIGHT: usize = 4096;

impl Dispatcher {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        workers: usize,
        lease: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            ctx,
            lanes: Mutex::new(Lanes::default()),
            wake: Notify::new(),
            tracker: TaskTracker::new(),
            workers: workers.max(1),
            recording: Arc::new(Semaphore::new(RECORDS_IN_FLIGHT)),
            stop,
            lease,
            renew_every: lease / 3,
        })
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The concurrency of `destination` in the current config.
    fn limit_for(&self, destination: &str) -> usize {
        if destination.starts_with(SUBSCRIBER_PREFIX) {
            return SUBSCRIBER_CONCURRENCY;
        }
        self.ctx
            .snapshots
            .load()
            .destinations
            .get(destination)
            .map_or(UNKNOWN_CONCURRENCY, |d| d.concurrency.max(1))
    }

    /// Wakes the poller: deliveries became due that nobody holds.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What an insert may claim for the dispatcher right now: the named
    /// destinations whose lanes have room (and subscribers while the
    /// gateway has room, but not those whose lane is full);
    /// `claim` is `None` when nothing should be claimed and no destination
    /// is paused (a paused one is named in `held`).
    ///
    /// The destinations left out because their lane is full are marked as
    /// skipped, as a poll marks them: the lane wakes the poller once half
    /// its queue has gone, and [`needs_poll`](Self::needs_poll) tells after
    /// the commit whether that wake is still to come.
    ///
    /// Which subscriptions a fan-out reaches is known only inside the
    /// insert, so every full subscriber lane is left out (and marked). A
    /// subscriber that falls behind its publisher used to have each new
    /// delivery claimed, found over its lane's queue and handed back: on
    /// PostgreSQL a release statement per delivery, whose pool waits then
    /// held up the records of every attempt (measured: 65 deliveries/s to
    /// three subscribers while 640 events/s were published, 1,100/s once
    /// publishing stopped).
    pub fn claim_for<'a>(
        &self,
        destinations: impl Iterator<Item = &'a str>,
        subscribers: bool,
    ) -> InsertClaim {
        if self.stop.is_cancelled() {
            return InsertClaim::default();
        }
        let snapshot = self.ctx.snapshots.load();
        let mut lanes = self.lanes();
        let mut names: Vec<String> = Vec::new();
        let mut left: Vec<String> = Vec::new();
        let mut held: Vec<String> = Vec::new();
        let mut left_deliveries = 0;
        for d in destinations {
            if left.iter().any(|n| n == d) {
                left_deliveries += 1;
                continue;
            }
            if names.iter().any(|n| n == d) {
                continue;
            }
            // Left in the store until the flag goes; no lane owes a wake
            // for it ([`needs_poll`](Self::needs_poll)), and the store
            // announces it to no gateway (`held`).
            if paused(&snapshot, d) {
                left.push(d.to_owned());
                held.push(d.to_owned());
                left_deliveries += 1;
                continue;
            }
            match lanes.map.get_mut(d) {
                Some(lane) if lane.full() => {
                    lane.skipped = true;
                    left.push(d.to_owned());
                    left_deliveries += 1;
                }
                _ => names.push(d.to_owned()),
            }
        }
        let subscribers = subscribers && lanes.in_flight < self.workers;
        let mut full = Vec::new();
        if subscribers {
            for (name, lane) in &mut lanes.map {
                if name.starts_with(SUBSCRIBER_PREFIX) && lane.full() {
                    lane.skipped = true;
                    full.push(name.clone());
                }
            }
            full.sort_unstable();
            left.extend(full.iter().cloned());
        }
        InsertClaim {
            claim: (!names.is_empty() || subscribers || !held.is_empty()).then_some(ClaimNew {
                lease: self.lease,
                destinations: names,
                subscribers,
                full,
                held,
            }),
            left_to_lanes: left,
            left_deliveries,
        }
    }

    /// After an insert's commit: whether the poller must look now for the
    /// deliveries the insert left unclaimed in `left_to_lanes` (see
    /// [`claim_for`](Self::claim_for)). Not while each of those lanes is
    /// still marked skipped: its wake then comes after this commit, and
    /// the poll it starts sees the new rows. A lane that woke the poller
    /// between the claim's look and the commit may have been polled before
    /// the rows existed, so then the answer is yes.
    ///
    /// Waking the poller for every insert that met a full lane had it claim
    /// in a loop, each claim a writer transaction that found nothing it
    /// could take, for as long as ingest outran a destination.
    pub fn needs_poll(&self, left_to_lanes: &[String]) -> bool {
        let snapshot = self.ctx.snapshots.load();
        let lanes = self.lanes();
        left_to_lanes
            .iter()
            .any(|d| lanes.map.get(d).is_none_or(|l| !l.skipped) && !paused(&snapshot, d))
    }

    /// Takes claimed deliveries into their lanes, starting what may start.
    /// Deliveries whose lane is already full go back to the store.
    pub fn submit(self: &Arc<Self>, due: Vec<DueDelivery>) {
        let mut give_back = Vec::new();
        {
            let mut lanes = self.lanes();
            for d in due {
                let limit = self.limit_for(&d.destination);
                let gateway_room = lanes.in_flight < self.workers;
                let Lanes {
                    map,
                    in_flight,
                    ready,
                    ..
                } = &mut *lanes;
                // Look up before inserting: no key allocation per delivery.
                if !map.contains_key(&d.destination) {
                    map.insert(
                        d.destination.clone(),
                        Lane {
                            limit,
                            in_flight: 0,
                            queue: VecDeque::new(),
                            queued_bytes: 0,
                            skipped: false,
                            in_ready: false,
                        },
                    );
                }
                let Some(lane) = map.get_mut(&d.destination) else {
                    continue;
                };
                lane.limit = limit;
                if lane.in_flight < lane.limit && gateway_room && !self.stop.is_cancelled() {
                    lane.in_flight += 1;
                    *in_flight += 1;
                    self.spawn(d, Instant::now());
                } else if lane.overflowing() || self.stop.is_cancelled() {
                    // A request relaying this delivery's reply falls back
                    // now, not at its `reply_timeout`.
                    drop(self.ctx.relay.take(d.id));
                    give_back.push(d);
                } else {
                    // The lane has room but the gateway has none: the lane
                    // waits its turn for the next gateway-wide slot.
                    if lane.in_flight < lane.limit && !lane.in_ready {
                        lane.in_ready = true;
                        ready.push_back(d.destination.clone());
                    }
                    lane.push(d, Instant::now());
                }
            }
        }
        if !give_back.is_empty() {
            tracing::debug!(n = give_back.len(), "lane full: claims handed back");
            self.ctx.metrics.handed_back(give_back.len());
            let this = self.clone();
            // Tracked, so that a shutdown waits for these releases too: a
            // poll that returned just as `stop` fired hands its whole batch
            // back here, and untracked the process could exit first,
            // leaving the batch held until its lease ends.
            self.tracker.spawn(async move {
                for d in give_back {
                    let _ = this.ctx.store.release(d.id, d.lease).await;
                }
                // Due again now: the poller takes them when their lane has
                // room (it may have looked before the release committed).
                this.wake();
            });
        }
    }

    fn spawn(self: &Arc<Self>, d: DueDelivery, claimed_at: Instant) {
        let this = self.clone();
        self.tracker.spawn(async move {
            let destination = d.destination.clone();
            // Frees the slots even if the attempt panics: a lost slot
            // would be lost for good, and enough of them stop delivery.
            let slot = Slot {
                dispatcher: &this,
                destination: &destination,
                freed: std::sync::atomic::AtomicBool::new(false),
            };
            if !this.still_held(&d, claimed_at).await {
                drop(this.ctx.relay.take(d.id));
                return;
            }
            let (id, lease) = (d.id, d.lease);
            // One renewal schedule from the first byte sent until the
            // outcome is written: a record that waits (for a permit, a pool
            // connection, a store that fails for a while) must not let
            // another claim send the delivery again, and a schedule that
            // started over between the attempt and its record could leave
            // two thirds of the lease between renewals.
            this.renewing(id, lease, &d.event_id, async {
                let record = super::attempt::run(&this.ctx, &d).await;
                // The slot is free once the destination has answered: the
                // record's commit (an fsync away) is not the destination's
                // time. A bounded number of records wait for it at once, so
                // a writer that falls behind slows attempts down instead.
                let permit = this.recording.clone().acquire_owned().await.ok();
                slot.free();
                this.record(&destination, record).await;
                drop(permit);
            })
            .await;
        });
    }

    /// An attempt to `destination` ended: its gateway-wide slot goes to the
    /// lane whose turn it is. That is this lane only when no other lane is
    /// waiting: a lane with a backlog (a hanging destination's, refilled
    /// by every webhook) that kept the slots its own attempts freed would
    /// starve every other destination once the busy lanes' concurrency
    /// added up to `delivery.workers`.
    fn finished(self: &Arc<Self>, destination: &str) {
        let mut wake = false;
        // Read before the lock: a reload may have changed the
        // destination's concurrency, and a lane with a backlog only learns
        // it here (lowered: no new attempt until it is under the new limit;
        // raised: queued deliveries start now, not only new ones).
        let limit = self.limit_for(destination);
        let mut lanes = self.lanes();
        let Lanes {
            map,
            in_flight,
            ready,
            poller_starved,
        } = &mut *lanes;
        *in_flight = in_flight.saturating_sub(1);
        if let Some(lane) = map.get_mut(destination) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            lane.limit = limit;
            if !self.stop.is_cancelled() && lane.wants_slot() && !lane.in_ready {
                lane.in_ready = true;
                ready.push_back(destination.to_owned());
            }
            // Woken at half a queue, not at the first free place: the poll
            // then claims a batch, not one delivery per finished attempt.
            if lane.skipped && lane.half_empty() {
                lane.skipped = false;
                wake = true;
            }
            if lane.in_flight == 0 && lane.queue.is_empty() && !lane.skipped && !lane.in_ready {
                map.remove(destination);
            }
        }
        // Gateway-wide slots go to the waiting lanes in turn, one start
        // each; a lane that can start more goes to the back again.
        while !self.stop.is_cancelled() && *in_flight < self.workers {
            let Some(name) = ready.pop_front() else { break };
            let Some(lane) = map.get_mut(&name) else {
                continue;
            };
            lane.in_ready = false;
            if lane.in_flight < lane.limit
                && let Some((next, at)) = lane.pop()
            {
                lane.in_flight += 1;
                *in_flight += 1;
                self.spawn(next, at);
            }
            if lane.wants_slot() {
                lane.in_ready = true;
                ready.push_back(name);
            }
        }
        if *poller_starved && *in_flight < self.workers {
            *poller_starved = false;
            wake = true;
        }
        drop(lanes);
        if wake {
            self.wake();
        }
    }

    /// The lanes the poller must skip (and marks them), and how many
    /// deliveries to claim: what the gateway can take now, but no more than
    /// the lanes it knows have room for plus [`POLL_ALLOWANCE`]. Claiming the
    /// gateway's whole room for a lane with one free place would hand the
    /// rest straight back, a release per delivery, on every attempt that
    /// ends while ingest outruns the destination.
    fn poll_plan(&self) -> (Vec<String>, usize) {
        // Paused destinations are skipped whether or not they have a lane:
        // a poll that claimed their deliveries would only put them back.
        let mut skip: Vec<String> = self
            .ctx
            .snapshots
            .load()
            .destinations
            .values()
            .filter(|d| d.paused)
            .map(|d| d.name.to_string())
            .collect();
        let mut lanes = self.lanes();
        let gateway_room = self
            .workers
            .saturating_sub(lanes.in_flight)
            .min(CLAIM_BATCH);
        lanes.poller_starved = gateway_room == 0;
        let mut lanes_room = POLL_ALLOWANCE;
        for (name, lane) in lanes.map.iter_mut() {
            if skip.contains(name) {
                continue;
            }
            if lane.full() {
                lane.skipped = true;
                skip.push(name.clone());
            } else {
                lanes_room += lane.room();
            }
        }
        (skip, gateway_room.min(lanes_room))
    }

    /// The poller: claims due deliveries for lanes with room until `stop`,
    /// then waits up to `grace` for attempts in flight and hands queued
    /// deliveries back to the store.
    pub async fn run(self: Arc<Self>, grace: Duration) {
        let mut paced_until: Option<tokio::time::Instant> = None;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            if let Some(until) = paced_until.take() {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {},
                    () = self.stop.cancelled() => break,
                }
            }
            let (skip, room) = self.poll_plan();
            let idle = if room == 0 {
                IDLE_POLL
            } else {
                let skipped_any = !skip.is_empty();
                let started = tokio::time::Instant::now();
                self.ctx.metrics.poll();
                match self.ctx.store.claim_due(room, self.lease, skip).await {
                    Ok(due) => {
                        tracing::debug!(claimed = due.len(), room, "poller claimed");
                        let full_batch = due.len() == room;
                        self.submit(due);
                        if full_batch {
                            // More may be due: claim again at once.
                            continue;
                        }
                        if skipped_any {
                            // Due work may wait for a full lane; its room
                            // wakes us, but not before the pace allows.
                            paced_until =
                                Some(started + (started.elapsed() * PACE_FACTOR).max(MIN_POLL));
                            IDLE_POLL
                        } else {
                            match self.ctx.store.next_due_in().await {
                                Ok(Some(at)) => at.clamp(MIN_POLL, IDLE_POLL),
                                _ => IDLE_POLL,
                            }
                        }
                    }
                    Err(e) => {
                        // Every poll fails alike while the store does.
                        static CLAIM_FAILED: Flood = Flood::new();
                        log_limited!(CLAIM_FAILED, "", error, error = %e, "cannot claim deliveries; retrying");
                        IDLE_POLL
                    }
                }
            };
            tokio::select! {
                () = self.wake.notified() => {},
                () = tokio::time::sleep(idle) => {},
                () = self.stop.cancelled() => break,
            }
        }
        self.shutdown(grace).await;
    }

    async fn shutdown(&self, grace: Duration) {
        // Deliveries still queued were never attempted: due again now, for
        // this gateway's next start or another gateway.
        let queued: Vec<DueDelivery> = {
            let mut lanes = self.lanes();
            lanes.ready.clear();
            lanes
                .map
                .values_mut()
                .flat_map(|l| {
                    l.queued_bytes = 0;
                    l.queue.drain(..).map(|(d, _)| d)
                })
                .collect()
        };
        for d in queued {
            let _ = self.ctx.store.release(d.id, d.lease).await;
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "shutdown grace ended with attempts in flight; they are due again when their lease ends"
            );
        }
    }

    /// Records an attempt under its lease, trying again while the store
    /// fails and the lease is still this gateway's.
    async fn record(&self, destination: &str, record: AttemptRecord) {
        let store = &self.ctx.store;
        let event_id = record.event_id.as_str();
        let (id, lease) = (record.delivery_id, record.lease);
        let written = record_settled(
            || store.record(record.clone()),
            || store.renew(id, lease, self.lease),
        )
        .await;
        match written {
            Ok(Recorded::Written) => {}
            Ok(Recorded::LeaseLost) => tracing::warn!(
                event_id,
                destination,
                "attempt not recorded: the lease was lost (another claim holds the delivery)"
            ),
            // The lease was lost while the store failed: the delivery is
            // attempted again by whoever claims it. A duplicate, never a
            // loss.
            Err(e) => {
                static UNRECORDED: Flood = Flood::new();
                log_limited!(UNRECORDED, "", error, event_id, error = %e, "cannot record a delivery attempt")
            }
        }
    }

    /// Runs `work` while renewing the lease `lease` on delivery `id` every
    /// `renew_every` (a third of the lease), so the claim outlives it.
    ///
    /// The renewals run beside `work`, not inside its poll: an attempt that
    /// sat unpolled while a renewal waited for the store could find its
    /// request's deadline passed when it was polled again, and record as
    /// "timed out" a request the destination had answered (then sent again).
    /// A renewal that fails is tried again after [`RENEW_RETRY`], not a
    /// whole third of the lease later.
    async fn renewing<T>(
        &self,
        id: i64,
        lease: LeaseToken,
        event_id: &str,
        work: impl Future<Output = T>,
    ) -> T {
        beside_renewals(work, self.renew_every, || async {
            let r = self.ctx.store.renew(id, lease, self.lease).await;
            match &r {
                Ok(true) => {}
                Ok(false) => tracing::warn!(event_id, "lease lost mid-attempt"),
                Err(e) => {
                    static UNRENEWED: Flood = Flood::new();
                    log_limited!(UNRENEWED, "", warn, event_id, error = %e, "cannot renew a lease; trying again")
                }
            }
            r.is_ok()
        })
        .await
    }

    /// Whether a claimed delivery that waited in its lane still holds its
    /// claim, so that it may be sent. One that waited less than a renewal
    /// period holds it by construction.
    async fn still_held(&self, d: &DueDelivery, claimed_at: Instant) -> bool {
        if claimed_at.elapsed() <= self.renew_every {
            return true;
        }
        match self.ctx.store.renew(d.id, d.lease, self.lease).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    event_id = d.event_id,
                    destination = d.destination,
                    "lease lost while queued; another claim holds the delivery"
                );
                false
            }
            // Not sent on a claim that may be gone: the delivery stays
            // claimed by us until its lease ends, then any poller takes it.
            // Later, never twice.
            Err(e) => {
                static UNRENEWED: Flood = Flood::new();
                log_limited!(
                    UNRENEWED,
                    "",
                    warn,
                    event_id = d.event_id,
                    error = %e,
                    "cannot renew a queued delivery's lease; left for when it ends"
                );
                false
            }
        }
    }
}

/// How soon a lease renewal that failed is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// Runs `work` to its end while `renew` runs every `every` beside it (not
/// inside its poll: `work` goes on while a renewal waits). A renewal that
/// says it failed (`false`) is tried again after [`RENEW_RETRY`].
async fn beside_renewals<T, R, RF>(
    work: impl Future<Output = T>,
    every: Duration,
    mut renew: R,
) -> T
where
    R: FnMut() -> RF,
    RF: Future<Output = bool>,
{
    let renewals = async {
        let mut next = tokio::time::Instant::now() + every;
        loop {
            tokio::time::sleep_until(next).await;
            let wait = if renew().await {
                every
            } else {
                RENEW_RETRY.min(every)
            };
            next = tokio::time::Instant::now() + wait;
        }
    };
    let mut work = pin!(work);
    let mut renewals = pin!(renewals);
    tokio::select! {
        r = &mut work => r,
        never = &mut renewals => never,
    }
}

/// The first wait before a failed record is tried again; it doubles up to
/// [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two tries of a failed record.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Writes an attempt's outcome with `record`, trying again (with a growing
/// wait) while it fails and `still_ours` (a lease renewal) does not say the
/// lease is lost. A record that gave up after one failure left the
/// delivery claimed until its lease ran out, and then it was sent again
/// although the destination had its answer: every store error (a busy
/// PostgreSQL pool, a full disk for a moment) became a duplicate.
async fn record_settled<R, RF, O, OF>(
    mut record: R,
    mut still_ours: O,
) -> Result<Recorded, crate::store::StoreError>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<Recorded, crate::store::StoreError>>,
    O: FnMut() -> OF,
    OF: Future<Output = Result<bool, crate::store::StoreError>>,
{
    let mut wait = RECORD_RETRY_FIRST;
    loop {
        match record().await {
            Ok(r) => return Ok(r),
            Err(e) => {
                if let Ok(false) = still_ours().await {
                    return Err(e);
                }
                static RETRYING: Flood = Flood::new();
                log_limited!(RETRYING, "", warn, error = %e, ?wait, "cannot record a delivery attempt; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECORD_RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::store::StoreError;

    /// A dispatcher on a scratch store and an empty config (every
    /// destination unknown: concurrency 1, a queue of [`MIN_QUEUE`]), with
    /// room for `workers` attempts.
    fn dispatcher(workers: usize) -> Arc<Dispatcher> {
        dispatcher_with("{}", workers)
    }

    /// [`dispatcher`] with the destinations of `yaml`, a config.
    fn dispatcher_with(yaml: &str, workers: usize) -> Arc<Dispatcher> {
        let config = crate::config::from_str(yaml, &|_| None).unwrap();
        let destinations = config
            .destinations
            .iter()
            .map(|(name, d)| {
                let compiled = crate::pipeline::CompiledDestination::new(name, d);
                (name.clone(), Arc::new(compiled))
            })
            .collect();
        let snapshot = crate::pipeline::Snapshot {
            generation: 1,
            config: Arc::new(config),
            routes: HashMap::new(),
            destinations,
            plugins: Default::default(),
            subscriptions: None,
        };
        let ctx = Arc::new(Ctx {
            store: Arc::new(crate::store::memory::open().unwrap()),
            snapshots: Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)),
            metrics: crate::metrics::Metrics::default(),
            client: super::super::client::Client::new(super::super::tls::default_config()),
            subscriber_client: super::super::client::Client::guarded(
                super::super::tls::default_config(),
                Arc::new(|| Arc::new(Vec::new())),
                1,
            ),
            relay: Default::default(),
        });
        Dispatcher::new(ctx, workers, LEASE, CancellationToken::new())
    }

    /// A lane for `destination` with `queued` deliveries waiting and one
    /// attempt in flight, as if the gateway were busy elsewhere.
    fn busy_lane(d: &Dispatcher, destination: &str, queued: usize) {
        let message = Arc::new(crate::plugin::Message::json(None, &serde_json::json!({})));
        let queue = (0..queued)
            .map(|i| {
                let due = DueDelivery {
                    id: i as i64,
                    lease: LeaseToken::random(),
                    event_id: format!("evt_{i}"),
                    route: "r".into(),
                    destination: destination.into(),
                    attempts: 0,
                    retries: 0,
                    message: message.clone(),
                };
                (due, Instant::now())
            })
            .collect();
        let mut lanes = d.lanes();
        lanes.in_flight += 1;
        lanes.map.insert(
            destination.into(),
            Lane {
                limit: 1,
                in_flight: 1,
                queued_bytes: message.body.len() * queued,
                queue,
                skipped: false,
                in_ready: false,
            },
        );
    }

    fn due(id: i64, destination: &str, message: &Arc<crate::plugin::Message>) -> DueDelivery {
        DueDelivery {
            id,
            lease: LeaseToken::random(),
            event_id: format!("evt_{id}"),
            route: "r".into(),
            destination: destination.into(),
            attempts: 0,
            retries: 0,
            message: message.clone(),
        }
    }

    fn lane(limit: usize) -> Lane {
        Lane {
            limit,
            in_flight: limit,
            queue: VecDeque::new(),
            queued_bytes: 0,
            skipped: false,
            in_ready: false,
        }
    }

    /// A lane's queue is [`QUEUE_PER_SLOT`] deliveries per place of its
    /// concurrency, so that draining a backlog claims in batches (the
    /// drain's deliveries per second followed the queue's depth), between
    /// [`MIN_QUEUE`] and [`CLAIM_BATCH`]; and [`QUEUE_BYTES`] of messages
    /// at most, however few.
    #[test]
    fn a_lanes_queue_is_deep_for_small_messages_and_bounded_in_bytes() {
        let small = Arc::new(crate::plugin::Message::json(
            None,
            &serde_json::json!({"a": 1}),
        ));
        let mut l = lane(32);
        assert_eq!(l.cap(), 256);
        for i in 0..255 {
            l.push(due(i, "d", &small), Instant::now());
        }
        assert!(!l.full(), "255 of 256");
        assert_eq!(l.room(), 1, "no free place, one queue place");
        l.push(due(255, "d", &small), Instant::now());
        assert!(l.full());
        assert!(!l.half_empty());
        for _ in 0..128 {
            l.pop();
        }
        assert!(l.half_empty(), "refilled once half the queue has gone");
        assert_eq!(lane(1).cap(), MIN_QUEUE);
        assert_eq!(lane(4).cap(), 32);
        assert_eq!(lane(1000).cap(), CLAIM_BATCH);

        let body = "x".repeat(1 << 20);
        let large = Arc::new(crate::plugin::Message::json(
            None,
            &serde_json::json!({ "b": body }),
        ));
        let mut l = lane(32);
        let mut queued = 0;
        while !l.full() {
            l.push(due(queued, "d", &large), Instant::now());
            queued += 1;
        }
        assert_eq!(queued, 16, "16 MiB of 1 MiB messages");
        assert_eq!(l.room(), 0);
        assert!(!l.overflowing(), "a claim under way still fits");
        for i in 0..16 {
            l.push(due(100 + i, "d", &large), Instant::now());
        }
        assert!(l.overflowing(), "twice the bytes: handed back");
        while l.queue.len() > 8 {
            l.pop();
        }
        // Eight messages of a little over 1 MiB each (the JSON around the
        // string) are over half of 16 MiB; seven are not.
        assert!(!l.half_empty());
        l.pop();
        assert!(l.half_empty());
        while l.pop().is_some() {}
        assert_eq!(l.queued_bytes, 0);
    }

    /// An attempt's slots are freed once: by `free` when the destination
    /// has answered, not again when the attempt ends, and by the guard's
    /// drop when the attempt ends early or panics.
    #[tokio::test]
    async fn an_attempts_slots_are_freed_once_even_when_it_panics() {
        let d = dispatcher(8);
        busy_lane(&d, "other", 0);
        busy_lane(&d, "x", 0);
        d.lanes().map.get_mut("x").unwrap().in_flight = 2;
        d.lanes().in_flight += 1;
        // One guard: two `lanes()` in one expression would deadlock.
        let in_flight = |d: &Dispatcher| {
            let lanes = d.lanes();
            (lanes.in_flight, lanes.map.get("x").map(|l| l.in_flight))
        };
        assert_eq!(in_flight(&d), (3, Some(2)));

        let slot = Slot {
            dispatcher: &d,
            destination: "x",
            freed: std::sync::atomic::AtomicBool::new(false),
        };
        slot.free();
        drop(slot);
        assert_eq!(in_flight(&d), (2, Some(1)), "freed once, not twice");

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _slot = Slot {
                dispatcher: &d,
                destination: "x",
                freed: std::sync::atomic::AtomicBool::new(false),
            };
            panic!("an attempt panics");
        }));
        assert!(panicked.is_err());
        assert_eq!(
            in_flight(&d),
            (1, None),
            "the panicking attempt's slots are back"
        );
    }

    /// A paused destination is claimed by no insert and no poll, and owes
    /// no wake: its deliveries wait in the store for the reload that
    /// resumes it.
    #[tokio::test]
    async fn a_paused_destination_is_left_out_of_every_claim() {
        let d = dispatcher_with(
            "destinations:\n  held: { kind: log, paused: true }\n  open: { kind: log }\n",
            8,
        );
        let plan = d.claim_for(["held", "open", "held"].into_iter(), false);
        assert_eq!(plan.claim.unwrap().destinations, ["open"]);
        assert_eq!(plan.left_to_lanes, ["held"]);
        assert_eq!(plan.left_deliveries, 2);
        assert!(!d.needs_poll(&plan.left_to_lanes), "no lane owes it a wake");
        assert!(d.lanes().map.is_empty(), "no lane was made or marked");
        let (skip, room) = d.poll_plan();
        assert_eq!(skip, ["held"]);
        assert!(room > 0);
        // Nothing to claim for but the paused one: a claim of nothing,
        // which tells the store not to announce it.
        let claim = d.claim_for(["held"].into_iter(), false).claim.unwrap();
        assert!(claim.destinations.is_empty());
        assert_eq!(claim.held, ["held"]);
        assert!(!claim.announces("held", true, false));
        assert!(claim.announces("open", true, false));
    }

    /// An insert that finds a lane full leaves its delivery to that lane's
    /// own wake, and asks for a poll after its commit only once that wake
    /// has fired (it may have fired before the commit, its poll then
    /// missing the new row).
    #[tokio::test]
    async fn an_insert_meeting_a_full_lane_leaves_it_to_the_lanes_wake() {
        // One worker, held by the busy lane's attempt: `finished` below
        // frees it and takes it again, so nothing is attempted for real.
        let d = dispatcher(1);
        busy_lane(&d, "full", MIN_QUEUE);
        d.lanes().in_flight += 1;
        let plan = d.claim_for(["full", "other", "full"].into_iter(), false);
        let claim = plan.claim.expect("the lane with room is claimed");
        assert_eq!(claim.destinations, ["other"]);
        assert_eq!(plan.left_to_lanes, ["full"]);
        assert_eq!(plan.left_deliveries, 2, "one per message naming it");
        assert!(d.lanes().map["full"].skipped, "the full lane owes a wake");
        assert!(
            !d.needs_poll(&plan.left_to_lanes),
            "its wake is still to come"
        );

        // Half its queue goes: the lane wakes the poller, and an insert
        // committing after that needs a poll of its own.
        d.lanes()
            .map
            .get_mut("full")
            .unwrap()
            .queue
            .truncate(MIN_QUEUE / 2);
        d.finished("full");
        tokio::time::timeout(Duration::from_secs(5), d.wake.notified())
            .await
            .expect("the lane woke the poller");
        assert!(!d.lanes().map["full"].skipped);
        assert!(d.needs_poll(&plan.left_to_lanes));
        assert!(d.needs_poll(&["gone".to_owned()]), "a lane no longer there");
    }

    /// A fan-out's insert claims its subscriber deliveries but those of
    /// full subscriber lanes, which it leaves to their lanes' wakes as it
    /// does a named destination's.
    #[tokio::test]
    async fn a_fan_out_insert_leaves_full_subscriber_lanes_to_their_wakes() {
        let d = dispatcher(4);
        busy_lane(&d, "sub:wh_full", MIN_QUEUE);
        busy_lane(&d, "sub:wh_room", 0);
        busy_lane(&d, "named_full", MIN_QUEUE);
        let plan = d.claim_for(std::iter::empty(), true);
        assert!(plan.claims_subscribers());
        let claim = plan.claim.expect("subscribers are claimed");
        assert!(claim.subscribers);
        assert_eq!(
            claim.full,
            ["sub:wh_full"],
            "a named lane is not a subscriber"
        );
        assert!(claim.claims_subscriber("sub:wh_room"));
        assert!(
            claim.claims_subscriber("sub:wh_new"),
            "a lane not yet known"
        );
        assert!(!claim.claims_subscriber("sub:wh_full"));
        assert_eq!(plan.left_to_lanes, ["sub:wh_full"]);
        assert!(d.lanes().map["sub:wh_full"].skipped, "it owes a wake");
        assert!(!d.needs_poll(&plan.left_to_lanes));

        // With the gateway full, no subscriber is claimed at all: the
        // insert then wakes the poller by the count.
        d.lanes().in_flight = 4;
        let plan = d.claim_for(std::iter::empty(), true);
        assert!(plan.claim.is_none() && !plan.claims_subscribers());
    }

    /// Woken over and over (on PostgreSQL, a notification per publish)
    /// while a lane is full, the poller still polls no more often than
    /// its pace allows: at least [`MIN_POLL`] apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_while_a_lane_is_full_are_paced() {
        let d = dispatcher(4);
        busy_lane(&d, "full", MIN_QUEUE);
        let poller = tokio::spawn(d.clone().run(Duration::from_secs(1)));
        let spam = Duration::from_millis(300);
        let until = Instant::now() + spam;
        let mut wakes = 0;
        while Instant::now() < until {
            d.wake();
            wakes += 1;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let polls = d.ctx.metrics.polls();
        d.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), poller)
            .await
            .expect("the poller stops")
            .unwrap();
        let most = (spam.as_millis() / MIN_POLL.as_millis()) as u64 + 2;
        assert!(polls >= 1, "it polled");
        assert!(
            polls <= most,
            "{polls} polls for {wakes} wakes in {spam:?}: at most {most}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_goes_on_while_a_renewal_waits() {
        // A renewal due at 1 s that takes 10 s (a busy pool): the attempt
        // beside it ends at 1.5 s as it would alone, not when the renewal
        // returns. Inside the attempt's poll it sat unpolled until 11 s,
        // and a request deadline that passed meanwhile turned an answer
        // into "timed out".
        let started = tokio::time::Instant::now();
        let renewals = AtomicU32::new(0);
        let out = beside_renewals(
            async {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                tokio::time::Instant::now()
            },
            Duration::from_secs(1),
            || async {
                renewals.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(10)).await;
                true
            },
        )
        .await;
        assert_eq!(out - started, Duration::from_millis(1_500));
        assert_eq!(renewals.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_is_tried_again_soon() {
        // Renewals every 20 s; the first fails, so the next comes 1 s later
        // instead of 20 s, leaving the lease most of its time.
        let at = Mutex::new(Vec::new());
        let started = tokio::time::Instant::now();
        beside_renewals(
            tokio::time::sleep(Duration::from_secs(45)),
            Duration::from_secs(20),
            || {
                let mut at = at.lock().unwrap();
                at.push(started.elapsed());
                let ok = at.len() > 1;
                async move { ok }
            },
        )
        .await;
        let at = at.into_inner().unwrap();
        assert_eq!(
            at,
            [
                Duration::from_secs(20),
                Duration::from_secs(21),
                Duration::from_secs(41)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_record_is_tried_again_while_the_lease_holds() {
        let tries = AtomicU32::new(0);
        let renewals = AtomicU32::new(0);
        let r = record_settled(
            || async {
                if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(StoreError::Overloaded)
                } else {
                    Ok(Recorded::Written)
                }
            },
            || async {
                renewals.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            },
        )
        .await;
        assert_eq!(r.unwrap(), Recorded::Written);
        assert_eq!(tries.load(Ordering::SeqCst), 4);
        assert_eq!(renewals.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_record_stops_once_the_lease_is_lost() {
        let tries = AtomicU32::new(0);
        let r = record_settled(
            || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(StoreError::Overloaded)
            },
            || async { Ok(false) },
        )
        .await;
        assert!(matches!(r, Err(StoreError::Overloaded)), "{r:?}");
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_cannot_say_keeps_the_record_trying_with_a_capped_wait() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r = record_settled(
            || async {
                if tries.fetch_add(1, Ordering::SeqCst) < 10 {
                    Err(StoreError::Database("down".into()))
                } else {
                    Ok(Recorded::LeaseLost)
                }
            },
            || async { Err(StoreError::Database("down".into())) },
        )
        .await;
        assert_eq!(r.unwrap(), Recorded::LeaseLost);
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2, then 5 s four times.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(26_300) && waited < Duration::from_millis(26_400),
            "{waited:?}"
        );
    }
}
