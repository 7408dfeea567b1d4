//! One attempt of one claimed delivery: send it, decide what follows by
//! the destination's retry policy, and say what to record.
//!
//! Operator destinations are POSTed with the shared keep-alive client;
//! subscriber callbacks (`sub:<id>`) are signed with the subscription's
//! secret and sent through the SSRF-guarded client, and their outcome feeds
//! the subscription's health. The dispatcher records the result.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::client::{Client, Target};
use super::relay::{self, RelayReply};
use super::{Ctx, pacing, ssrf, teams};
use crate::clock::now_ms;
use crate::config::DestinationKind;
use crate::observability::flood::{Flood, log_limited};
use crate::pipeline::{CompiledDestination, Snapshot};
use crate::plugin::Message;
use crate::retry::{AttemptResult, DeliveryOutcome, parse_retry_after};
use crate::store::{AttemptHealth, AttemptRecord, DueDelivery, NextState, SUBSCRIBER_PREFIX};

/// Longest body excerpt written to the log by `kind: log` destinations.
const MAX_LOGGED_BODY: usize = 16 << 10;

/// How much of a destination's response body is kept with the attempt.
const RESPONSE_EXCERPT: usize = 4 << 10;

/// How long a delivery to a destination that is missing from the current
/// config (a reload removed or renamed it) waits before it looks again. It
/// is postponed, not dead-lettered: the destination may come back.
const MISSING_DESTINATION_WAIT: Duration = Duration::from_secs(60);

/// Waits for a paced destination's next request slot (`rate:`, Teams);
/// `Err` when it is further than an attempt may wait: the delivery is
/// postponed until then, with no attempt counted.
async fn wait_for_slot(ctx: &Ctx, dest: &CompiledDestination) -> Result<(), NextState> {
    let Some(pace) = &dest.pace else {
        return Ok(());
    };
    match pacing::slot(&*ctx.store, pace).await {
        Ok(wait) => {
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Err(after) => Err(NextState::Postpone { after }),
    }
}

/// What an attempt to a subscription came to.
enum Subscriber {
    /// Sent (or failed for good without sending): the decision, the
    /// result and the response excerpt.
    Sent(DeliveryOutcome, AttemptResult, Option<String>),
    /// Not sent: the subscription is disabled; keep the delivery for when
    /// it is enabled again.
    Park(String),
    /// Sent, and the failure disabled the subscription: the attempt is
    /// recorded (result and excerpt), and the delivery kept for when it is
    /// enabled again.
    ParkAfter(String, DeliveryOutcome, AttemptResult, Option<String>),
    /// Not sent: the config has no `subscriptions:` block now. Kept and
    /// tried again later, as a destination missing after a reload is: a
    /// reload that drops the block by mistake must not dead-letter every
    /// subscriber's waiting deliveries.
    Postpone(String),
}

/// Attempts `d` and returns what to record, in a `delivery.attempt` span
/// that carries the event id (the link to the request's trace).
pub async fn run(ctx: &Ctx, d: &DueDelivery) -> AttemptRecord {
    let span = tracing::debug_span!(target: crate::observability::STAGE_TARGET, "delivery.attempt",
        event_id = d.event_id.as_str(), destination = d.destination.as_str(),
        attempt = d.attempts + 1, status = tracing::field::Empty, outcome = tracing::field::Empty);
    let record = tracing::Instrument::instrument(attempt(ctx, d), span.clone()).await;
    if !span.is_disabled() {
        if let Some(status) = record.status {
            span.record("status", status);
        }
        let outcome = match record.next {
            NextState::Delivered => "delivered",
            NextState::Retry { .. } => "retry",
            NextState::Postpone { .. } => "postponed",
            NextState::Dead { .. } => "dead",
            NextState::Park { .. } => "parked",
        };
        span.record("outcome", outcome);
    }
    record
}

async fn attempt(ctx: &Ctx, d: &DueDelivery) -> AttemptRecord {
    let snapshot = ctx.snapshots.load_full();
    // Both move to the end of a paced destination's wait for its slot:
    // the attempt is when its request starts.
    let mut attempted_at_ms = now_ms();
    let mut started = Instant::now();
    // Set when the attempt's failure disabled its subscription.
    let mut park_after = None;
    let (outcome, result, excerpt) =
        if let Some(sub_id) = d.destination.strip_prefix(SUBSCRIBER_PREFIX) {
            match subscriber_attempt(ctx, &snapshot, sub_id, d).await {
                Subscriber::Sent(outcome, result, excerpt) => (outcome, result, excerpt),
                Subscriber::Park(reason) => {
                    let next = NextState::Park {
                        reason,
                        attempted: false,
                    };
                    return not_attempted(d, attempted_at_ms, None, next);
                }
                Subscriber::ParkAfter(reason, outcome, result, excerpt) => {
                    park_after = Some(reason);
                    (outcome, result, excerpt)
                }
                Subscriber::Postpone(error) => {
                    static POSTPONED: Flood = Flood::new();
                    log_limited!(
                        POSTPONED,
                        "",
                        warn,
                        event_id = d.event_id,
                        "the subscription API is not configured; subscriber delivery postponed"
                    );
                    let next = NextState::Postpone {
                        after: MISSING_DESTINATION_WAIT,
                    };
                    return not_attempted(d, attempted_at_ms, Some(error), next);
                }
            }
        } else {
            match snapshot.destinations.get(&d.destination) {
                None => {
                    static MISSING: Flood = Flood::new();
                    log_limited!(
                        MISSING,
                        &d.destination,
                        warn,
                        destination = d.destination,
                        event_id = d.event_id,
                        "destination not in the current config; delivery postponed"
                    );
                    // The operator reads this in the console and the
                    // admin API: say how to move what waits.
                    let error = format!(
                        "destination {:?} is not configured; postponed (renamed? replay with \
                         `to=NEW&destination={}`)",
                        d.destination, d.destination
                    );
                    let next = NextState::Postpone {
                        after: MISSING_DESTINATION_WAIT,
                    };
                    return not_attempted(d, attempted_at_ms, Some(error), next);
                }
                // Claimed before a reload paused it, or queued in its lane
                // then: back to the store, due, where no poll claims it
                // until the flag goes.
                Some(dest) if dest.paused => {
                    drop(ctx.relay.take(d.id));
                    let error = format!(
                        "destination {:?} is paused; sent once a reload removes `paused`",
                        d.destination
                    );
                    let next = NextState::Postpone {
                        after: Duration::ZERO,
                    };
                    return not_attempted(d, attempted_at_ms, Some(error), next);
                }
                Some(dest) if dest.kind == DestinationKind::Teams => {
                    if let Some(reason) = teams::oversized(d.message.body.len()) {
                        // Dead at once: resending cannot make it fit.
                        let result = AttemptResult {
                            error: Some(reason.clone()),
                            ..Default::default()
                        };
                        (DeliveryOutcome::Dead(reason), result, None)
                    } else {
                        if let Err(next) = wait_for_slot(ctx, dest).await {
                            return not_attempted(d, attempted_at_ms, None, next);
                        }
                        (attempted_at_ms, started) = (now_ms(), Instant::now());
                        let (result, excerpt, _) = send(&ctx.client, dest, d, false).await;
                        let result = teams::classify(result, excerpt.as_deref());
                        (dest.retry.decide(&result, d.retries), result, excerpt)
                    }
                }
                Some(dest) => {
                    // Only a paced destination waits: the common case is
                    // this one test.
                    if dest.pace.is_some() {
                        if let Err(next) = wait_for_slot(ctx, dest).await {
                            // A request waiting for this attempt's reply
                            // (relay) falls back at once.
                            drop(ctx.relay.take(d.id));
                            return not_attempted(d, attempted_at_ms, None, next);
                        }
                        (attempted_at_ms, started) = (now_ms(), Instant::now());
                    }
                    // A request waiting for this attempt's reply (relay).
                    let waiter = ctx.relay.take(d.id);
                    let (result, excerpt, reply) = match dest.kind {
                        DestinationKind::Log => {
                            log_delivery(dest, d);
                            (ok_result(), None, None)
                        }
                        DestinationKind::Http | DestinationKind::Teams => {
                            send(&ctx.client, dest, d, waiter.is_some()).await
                        }
                        // Fan-out to subscribers is expanded at insert time;
                        // a delivery addressed to the destination itself has
                        // nothing to send.
                        DestinationKind::Subscribers => (ok_result(), None, None),
                    };
                    let outcome = dest.retry.decide(&result, d.retries);
                    // Anything but a delivered reply drops the waiter, and
                    // the request falls back at once.
                    if let (Some(waiter), DeliveryOutcome::Delivered, Some(reply)) =
                        (waiter, &outcome, reply)
                    {
                        let _ = waiter.send(reply);
                    }
                    (outcome, result, excerpt)
                }
            }
        };
    let latency = started.elapsed();
    observe(ctx, d, &outcome, &result, latency);
    AttemptRecord {
        delivery_id: d.id,
        event_id: d.event_id.clone(),
        lease: d.lease,
        attempted_at_ms,
        status: result.status,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        error: result.error,
        response_excerpt: excerpt,
        next: match outcome {
            _ if let Some(reason) = park_after => NextState::Park {
                reason,
                attempted: true,
            },
            DeliveryOutcome::Delivered => NextState::Delivered,
            DeliveryOutcome::Retry(after) => NextState::Retry { after },
            DeliveryOutcome::Dead(reason) => NextState::Dead { reason },
        },
    }
}

/// The record of a delivery that was not sent.
fn not_attempted(
    d: &DueDelivery,
    attempted_at_ms: u64,
    error: Option<String>,
    next: NextState,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        event_id: d.event_id.clone(),
        lease: d.lease,
        attempted_at_ms,
        status: None,
        latency_ms: 0,
        error,
        response_excerpt: None,
        next,
    }
}

fn ok_result() -> AttemptResult {
    AttemptResult {
        status: Some(200),
        ..Default::default()
    }
}

/// Logs and counts the end of an attempt.
fn observe(
    ctx: &Ctx,
    d: &DueDelivery,
    outcome: &DeliveryOutcome,
    result: &AttemptResult,
    latency: Duration,
) {
    let dest_name = d.destination.as_str();
    // Subscriber deliveries share one label (ids are unbounded), and one
    // log key.
    let label = if dest_name.starts_with(SUBSCRIBER_PREFIX) {
        "subscribers"
    } else {
        dest_name
    };
    static RETRIED: Flood = Flood::new();
    static DEAD: Flood = Flood::new();
    match outcome {
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
            log_limited!(RETRIED, label, warn, destination = dest_name, event_id = d.event_id, status = result.status, error = result.error, retry_in = ?wait, "delivery failed; will retry");
        }
        DeliveryOutcome::Dead(reason) => {
            // A dead letter needs an operator: replay it once fixed. The
            // console and the admin API list every one.
            log_limited!(
                DEAD,
                label,
                error,
                destination = dest_name,
                route = d.route,
                event_id = d.event_id,
                reason,
                "delivery is dead"
            );
        }
    }
    ctx.metrics.delivery(label, outcome.label(), latency);
}

/// One attempt to a subscription: signed with its secret, sent through the
/// SSRF-guarded client, and counted towards its health.
async fn subscriber_attempt(
    ctx: &Ctx,
    snapshot: &Snapshot,
    sub_id: &str,
    d: &DueDelivery,
) -> Subscriber {
    let fail = |reason: String| {
        Subscriber::Sent(
            DeliveryOutcome::Dead(reason.clone()),
            AttemptResult {
                error: Some(reason),
                ..Default::default()
            },
            None,
        )
    };
    let Some(rt) = snapshot.subscriptions.clone() else {
        return Subscriber::Postpone("the subscription API is not configured; postponed".into());
    };
    let sub = match ctx.store.get_subscription(None, sub_id.to_owned()).await {
        Ok(Some(s)) => s,
        Ok(None) => return fail(crate::store::SUBSCRIPTION_DELETED.into()),
        Err(e) => {
            return Subscriber::Sent(
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
        // Kept until the subscription is enabled again.
        return Subscriber::Park(format!(
            "parked: the subscription is disabled ({})",
            sub.disabled_reason.as_deref().unwrap_or("by its owner")
        ));
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
    let target = match Target::new(&url) {
        Ok(target) => target,
        Err(why) => return fail(format!("the callback URL is invalid: {why}")),
    };

    let id = d.message.id.as_deref().unwrap_or(&d.event_id);
    let (headers, body) =
        crate::subscriptions::outbound::build(&sub, &d.message.body, id, now_ms());
    let (result, excerpt) = post(&ctx.subscriber_client, &target, rt.timeout, headers, body).await;
    let outcome = rt.retry.decide(&result, d.retries);
    let success = matches!(outcome, DeliveryOutcome::Delivered);
    let health = if success {
        AttemptHealth::Success
    } else if result.status == Some(410) {
        AttemptHealth::Gone
    } else if matches!(outcome, DeliveryOutcome::Dead(_)) {
        // Kaizala's rule: an event that exhausts its retries disables the
        // subscription (until `PUT Active=true`).
        AttemptHealth::Exhausted
    } else {
        AttemptHealth::Failure
    };
    // A success clears a failure streak, and there is none to clear when
    // the read above found none: no write then. Every attempt to a
    // subscriber would otherwise wait for a write of its own (on SQLite a
    // group commit, an fsync away under load) before its lane's next
    // attempt could start. A streak that another gateway starts after that
    // read is cleared by the next success, which reads it.
    if health == AttemptHealth::Success && sub.failing_since_ms.is_none() {
        return Subscriber::Sent(outcome, result, excerpt);
    }
    match ctx
        .store
        .subscription_outcome(sub.id.clone(), health, rt.disable_after)
        .await
    {
        Ok(crate::store::SubscriptionHealth::Disabled) => {
            tracing::warn!(
                subscription = sub.id,
                tenant = sub.tenant,
                "subscription disabled; re-enable with PUT /v1/webhook/{{id}}"
            );
            ctx.metrics.subscription_disabled();
            // The delivery that exhausted its retries is dead; one that
            // would have been retried waits for the re-enable instead.
            if !success && !matches!(outcome, DeliveryOutcome::Dead(_)) {
                return Subscriber::ParkAfter(
                    "parked: this failure disabled the subscription".into(),
                    outcome,
                    result,
                    excerpt,
                );
            }
        }
        Ok(crate::store::SubscriptionHealth::Active) => {}
        Err(e) => {
            static UNRECORDED: Flood = Flood::new();
            log_limited!(UNRECORDED, "", warn, subscription = sub.id, error = %e, "cannot record subscription health")
        }
    }
    Subscriber::Sent(outcome, result, excerpt)
}

/// Sends `d` to `dest` with the destination's own client (`tls:`), else
/// `shared`; with `relayed`, also returns the response (up to
/// [`relay::MAX_RELAY_REPLY`]) for the request waiting on it.
async fn send(
    shared: &Client,
    dest: &CompiledDestination,
    d: &DueDelivery,
    relayed: bool,
) -> (AttemptResult, Option<String>, Option<RelayReply>) {
    let client = dest.client.as_ref().map_or(shared, |c| &c.client);
    let target = match &dest.target {
        Ok(target) => target,
        // A URL hyper cannot take as a `Uri`, or none.
        Err(error) => {
            return (
                AttemptResult {
                    error: Some(error.clone()),
                    ..Default::default()
                },
                None,
                None,
            );
        }
    };
    let id = d.message.id.as_deref().unwrap_or(&d.event_id);
    let mut headers = outbound_headers(&d.message, dest, id);
    if let Some(signing) = &dest.signing {
        // Signed now, at each attempt: a retry's timestamp is its own, so a
        // receiver's tolerance (Standard Webhooks: 5 minutes) holds.
        crate::signing::apply(
            &mut headers,
            signing.scheme,
            signing.secrets(),
            id,
            crate::clock::now_ms(),
            &d.message.body,
        );
    }
    if !relayed {
        let (result, excerpt) = post(
            client,
            target,
            dest.timeout,
            headers,
            d.message.body.clone(),
        )
        .await;
        return (result, excerpt, None);
    }
    let (result, body, content_type) = post_reading(
        client,
        target,
        dest.timeout,
        headers,
        d.message.body.clone(),
        relay::MAX_RELAY_REPLY,
    )
    .await;
    let excerpt = excerpt_of(&body);
    (result, excerpt, Some(RelayReply { content_type, body }))
}

/// POSTs `body` and reads the outcome: status, `Retry-After`, and the
/// first [`RESPONSE_EXCERPT`] bytes of the answer.
async fn post(
    client: &Client,
    target: &Target,
    timeout: Duration,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> (AttemptResult, Option<String>) {
    let (result, body, _) =
        post_reading(client, target, timeout, headers, body, RESPONSE_EXCERPT).await;
    (result, excerpt_of(&body))
}

/// The stored excerpt of a response body: text, with what text cannot
/// show (bytes that are not UTF-8, NUL) replaced, the same on every engine.
fn excerpt_of(body: &[u8]) -> Option<String> {
    let body = &body[..body.len().min(RESPONSE_EXCERPT)];
    (!body.is_empty()).then(|| crate::text::without_nul(String::from_utf8_lossy(body).into_owned()))
}

/// POSTs `body` and reads the outcome, the first `read` bytes of the
/// answer and its content type.
async fn post_reading(
    client: &Client,
    target: &Target,
    timeout: Duration,
    headers: HeaderMap,
    body: bytes::Bytes,
    read: usize,
) -> (AttemptResult, Vec<u8>, Option<String>) {
    match client.post_to(target, timeout, headers, body, read).await {
        Ok(answer) => answered(answer.status.as_u16(), &answer.headers, answer.body),
        Err(e) => failed(e.describe(timeout)),
    }
}

/// An answer's result: its status, `Retry-After`, the body read and its
/// content type.
fn answered(
    status: u16,
    headers: &HeaderMap,
    excerpt: Vec<u8>,
) -> (AttemptResult, Vec<u8>, Option<String>) {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        AttemptResult {
            status: Some(status),
            retry_after,
            error: None,
        },
        excerpt,
        content_type,
    )
}

/// A request that got no answer, and why.
fn failed(error: String) -> (AttemptResult, Vec<u8>, Option<String>) {
    (
        AttemptResult {
            error: Some(error),
            ..Default::default()
        },
        Vec::new(),
        None,
    )
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
