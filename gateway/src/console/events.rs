//! Events: the filtered, paginated list with live counts, one event's
//! request, messages, deliveries and attempts, Replay per delivery and per
//! event, and bulk replay of exactly the filtered set after a confirmation
//! that shows its size.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Session;
use super::{Layout, given, html, parse_time, refuse, show_time, store_failed};
use crate::config::GatewayConfig;
use crate::delivery::retarget;
use crate::state::AppState;
use crate::store::stats::{BulkReplay, ConsoleFilter, InboundView, ReplaySet, StatusCounts};
use crate::store::{EventDetail, EventFilter, EventStatus, ReplayTarget};

/// Events per page.
const PAGE_SIZE: usize = 50;

/// Message bodies are shown up to this many bytes.
const BODY_SHOWN: usize = 16 * 1024;

/// The filter as the list's query string and the bulk replay's form carry
/// it. Blank fields mean "any".
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FilterParams {
    status: Option<String>,
    route: Option<String>,
    destination: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl FilterParams {
    fn filter(&self) -> Result<ConsoleFilter, String> {
        let status = match given(&self.status) {
            None => None,
            // `parked` is a delivery's state, never an event's.
            Some(s) => Some(
                EventStatus::parse(&s)
                    .filter(|s| *s != EventStatus::Parked)
                    .ok_or_else(|| format!("status: {s:?} is not pending, delivered or dead"))?,
            ),
        };
        Ok(ConsoleFilter {
            base: EventFilter {
                status,
                route: given(&self.route),
                destination: given(&self.destination),
                since_ms: given(&self.since)
                    .map(|v| parse_time("since", &v))
                    .transpose()?,
                until_ms: given(&self.until)
                    .map(|v| parse_time("until", &v))
                    .transpose()?,
            },
            event_type: given(&self.event_type),
            search: given(&self.q),
            max_id: None,
        })
    }

    /// The non-blank fields as a query string (no leading `?`).
    fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.fields() {
            q.append_pair(k, &v);
        }
        q.finish()
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("route", &self.route),
            ("destination", &self.destination),
            ("type", &self.event_type),
            ("q", &self.q),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| given(v).map(|v| (k, v)))
        .collect()
    }

    /// Whether anything narrows the set (bulk replay of everything ever
    /// stored is never what anyone meant).
    fn narrows(&self) -> bool {
        !self.fields().is_empty()
    }

    fn value(v: &Option<String>) -> String {
        given(v).unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    filter: FilterParams,
    cursor: Option<String>,
    /// A string: numbers do not survive `#[serde(flatten)]` in query
    /// strings.
    replayed: Option<String>,
}

struct Row {
    id: String,
    route: String,
    status: &'static str,
    event_type: String,
    received: String,
}

#[derive(Template)]
#[template(path = "console/counts.html")]
struct Counts {
    counts: StatusCounts,
    query: String,
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    layout: Layout,
    f: FilterParams,
    routes: Vec<String>,
    destinations: Vec<String>,
    rows: Vec<Row>,
    counts: String,
    query: String,
    next: Option<String>,
    first_page: bool,
    error: Option<String>,
    can_replay: bool,
}

impl EventsPage {
    fn status(&self) -> String {
        FilterParams::value(&self.f.status)
    }
    fn route(&self) -> String {
        FilterParams::value(&self.f.route)
    }
    fn destination(&self) -> String {
        FilterParams::value(&self.f.destination)
    }
    fn event_type(&self) -> String {
        FilterParams::value(&self.f.event_type)
    }
    fn q(&self) -> String {
        FilterParams::value(&self.f.q)
    }
    fn since(&self) -> String {
        FilterParams::value(&self.f.since)
    }
    fn until(&self) -> String {
        FilterParams::value(&self.f.until)
    }
}

fn names(state: &AppState) -> (Vec<String>, Vec<String>) {
    let snapshot = state.snapshot();
    let mut routes: Vec<String> = snapshot.routes.keys().cloned().collect();
    routes.sort();
    let mut destinations: Vec<String> = snapshot.destinations.keys().cloned().collect();
    destinations.sort();
    (routes, destinations)
}

/// `GET /ui/events`.
pub async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let (routes, destinations) = names(&state);
    let flash = q
        .replayed
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| format!("Replayed {n} deliveries; they are due now."));
    let mut page = EventsPage {
        layout: Layout::new(&session, "events", flash),
        f: q.filter.clone(),
        routes,
        destinations,
        rows: Vec::new(),
        counts: String::new(),
        query: q.filter.query(),
        next: None,
        first_page: q.cursor.is_none(),
        error: None,
        can_replay: q.filter.narrows(),
    };
    let filter = match q.filter.filter() {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(e);
            page.can_replay = false;
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let store = state.store();
    let (events, counts) = tokio::join!(
        store.console_list(filter.clone(), PAGE_SIZE, q.cursor.clone()),
        store.count_by_status(filter),
    );
    let (events, counts) = match (events, counts) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(e), _) | (_, Err(e)) => return store_failed(e),
    };
    page.rows = events
        .events
        .into_iter()
        .map(|e| Row {
            id: e.id,
            route: e.route,
            status: e.status.as_str(),
            event_type: e.event_type.unwrap_or_default(),
            received: show_time(e.received_at_ms),
        })
        .collect();
    page.next = events.next.map(|cursor| {
        let mut q = url::form_urlencoded::Serializer::new(page.query.clone());
        q.append_pair("cursor", &cursor);
        q.finish()
    });
    page.counts = match (Counts {
        counts,
        query: page.query.clone(),
    })
    .render()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "console counts failed to render");
            String::new()
        }
    };
    html(StatusCode::OK, &page)
}

/// `GET /ui/events/counts`: the live counts fragment htmx polls.
pub async fn counts(State(state): State<AppState>, Query(q): Query<FilterParams>) -> Response {
    let Ok(filter) = q.filter() else {
        return refuse(StatusCode::BAD_REQUEST, "bad filter");
    };
    match state.store().count_by_status(filter).await {
        Ok(counts) => html(
            StatusCode::OK,
            &Counts {
                counts,
                query: q.query(),
            },
        ),
        Err(e) => store_failed(e),
    }
}

struct AttemptRow {
    at: String,
    status: String,
    latency_ms: u64,
    error: String,
    response: String,
}

struct DeliveryRow {
    id: i64,
    message: String,
    destination: String,
    state: &'static str,
    attempts_made: u32,
    next_attempt: String,
    last_error: String,
    attempts: Vec<AttemptRow>,
    /// The current config has no such destination (renamed or removed):
    /// the page offers to move the delivery.
    orphaned: bool,
}

struct MessageRow {
    index: u32,
    id: String,
    event_type: String,
    content_type: String,
    headers: Vec<(String, String)>,
    body: String,
    size: usize,
}

#[derive(Template)]
#[template(path = "console/event.html")]
struct EventPage {
    layout: Layout,
    id: String,
    route: String,
    status: &'static str,
    source_id: String,
    event_type: String,
    received: String,
    inbound: Option<InboundView>,
    messages: Vec<MessageRow>,
    deliveries: Vec<DeliveryRow>,
    /// Where an orphaned delivery may move ([`retarget::targets`]).
    targets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    replayed: Option<u64>,
    /// The destination the replayed deliveries moved to.
    moved_to: Option<String>,
}

fn excerpt(body: &Option<String>, size: usize) -> String {
    match body {
        None => format!("({size} bytes, not UTF-8)"),
        Some(b) if b.len() > BODY_SHOWN => {
            let mut end = BODY_SHOWN;
            while !b.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}\n… ({size} bytes in all)", &b[..end])
        }
        Some(b) => b.clone(),
    }
}

fn event_page(
    layout: Layout,
    e: EventDetail,
    inbound: Option<InboundView>,
    config: &GatewayConfig,
) -> EventPage {
    let message_id = |index: u32| {
        e.messages
            .iter()
            .find(|m| m.index == index)
            .and_then(|m| m.id.clone())
            .unwrap_or_else(|| format!("#{index}"))
    };
    let deliveries = e
        .deliveries
        .iter()
        .map(|d| DeliveryRow {
            id: d.id,
            message: message_id(d.message_index),
            destination: d.destination.clone(),
            state: d.state.as_str(),
            attempts_made: d.attempts_made,
            next_attempt: d.next_attempt_at.clone().unwrap_or_default(),
            last_error: d.last_error.clone().unwrap_or_default(),
            orphaned: retarget::is_orphaned(config, &d.destination),
            attempts: d
                .attempts
                .iter()
                .map(|a| AttemptRow {
                    at: a.at.clone(),
                    status: a
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "–".into()),
                    latency_ms: a.latency_ms,
                    error: a.error.clone().unwrap_or_default(),
                    response: a.response.clone().unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    EventPage {
        layout,
        id: e.summary.id,
        route: e.summary.route,
        status: e.summary.status.as_str(),
        source_id: e.summary.source_id.unwrap_or_default(),
        event_type: e.summary.event_type.unwrap_or_default(),
        received: show_time(e.summary.received_at_ms),
        inbound,
        messages: e
            .messages
            .into_iter()
            .map(|m| MessageRow {
                index: m.index,
                id: m.id.unwrap_or_default(),
                event_type: m.event_type.unwrap_or_default(),
                content_type: m.content_type,
                body: excerpt(&m.body, m.size),
                headers: m.headers,
                size: m.size,
            })
            .collect(),
        deliveries,
        targets: retarget::targets(config),
    }
}

/// `GET /ui/events/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let store = state.store();
    let (event, inbound) = tokio::join!(store.get(id.clone()), store.inbound(id));
    let (event, inbound) = match (event, inbound) {
        (Ok(Some(e)), Ok(i)) => (e, i),
        (Ok(None), _) => return refuse(StatusCode::NOT_FOUND, "no such event"),
        (Err(e), _) | (_, Err(e)) => return store_failed(e),
    };
    let flash = q.replayed.map(|n| match (n, &q.moved_to) {
        (0, _) => "Nothing was replayed (a delivery in flight is left to finish).".to_owned(),
        (n, Some(to)) => format!("Moved {n} deliveries to {to}; they are due now."),
        (n, None) => format!("Replayed {n} deliveries; they are due now."),
    });
    let layout = Layout::new(&session, "events", flash);
    let config = &state.snapshot().config;
    html(StatusCode::OK, &event_page(layout, event, inbound, config))
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    /// One delivery's id; the whole event when absent.
    delivery: Option<String>,
    /// With `to`: the destination whose deliveries of this event move.
    destination: Option<String>,
    /// Moves `destination`'s deliveries here ([`retarget::check`]).
    to: Option<String>,
}

/// `POST /ui/events/{id}/replay`: one delivery or every delivery of the
/// event, then back to the event.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let (destination, to) = (given(&form.destination), given(&form.to));
    if let Err(message) = retarget::check(
        &state.snapshot().config,
        destination.as_deref(),
        to.as_deref(),
    ) {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    let result = match given(&form.delivery) {
        Some(_) if to.is_some() => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "`to` moves all of a destination's deliveries: leave out `delivery`",
            );
        }
        Some(d) => {
            let Ok(delivery) = d.parse::<i64>() else {
                return refuse(StatusCode::BAD_REQUEST, "bad delivery id");
            };
            state
                .store()
                .replay_delivery(id.clone(), delivery)
                .await
                .map(u64::from)
        }
        None => {
            state
                .store()
                .replay(
                    ReplayTarget::Event {
                        id: id.clone(),
                        destination: destination.clone(),
                    },
                    to.clone(),
                )
                .await
        }
    };
    match result {
        Ok(n) => {
            if n > 0 {
                state.delivery().wake();
            }
            tracing::info!(
                event_id = id,
                replayed = n,
                destination,
                to,
                "replay requested in the console"
            );
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("replayed", &n.to_string());
            if let Some(to) = &to {
                q.append_pair("moved_to", to);
            }
            let path = format!(
                "/ui/events/{}?{}",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>(),
                q.finish()
            );
            Redirect::to(&path).into_response()
        }
        Err(e) => store_failed(e),
    }
}

#[derive(Template)]
#[template(path = "console/replay.html")]
struct ConfirmPage {
    layout: Layout,
    fields: Vec<(&'static str, String)>,
    query: String,
    set: ReplaySet,
    max_id: String,
    changed: bool,
    /// The filter's destination, when the current config lacks it: the
    /// page then offers to move its deliveries to one of `targets`.
    orphaned: Option<String>,
    targets: Vec<String>,
}

/// The filter's destination if the current config lacks it (its
/// deliveries can only be moved), and where they may move.
fn orphaned(config: &GatewayConfig, filter: &ConsoleFilter) -> (Option<String>, Vec<String>) {
    match filter.base.destination.as_deref() {
        Some(d) if retarget::is_orphaned(config, d) => {
            (Some(d.to_owned()), retarget::targets(config))
        }
        _ => (None, Vec::new()),
    }
}

/// The filter pinned to the events that exist now: the newest matching
/// event's id bounds the set.
async fn pinned(state: &AppState, mut filter: ConsoleFilter) -> Result<ConsoleFilter, Response> {
    let newest = state
        .store()
        .console_list(filter.clone(), 1, None)
        .await
        .map_err(store_failed)?;
    // No match: pin below every id, so the set stays empty.
    filter.max_id = Some(
        newest
            .events
            .first()
            .map_or_else(String::new, |e| e.id.clone()),
    );
    Ok(filter)
}

/// `GET /ui/replay?…`: how many events and deliveries the filter selects,
/// and the button that replays exactly those.
pub async fn confirm_bulk(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(f): Query<FilterParams>,
) -> Response {
    if !f.narrows() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bulk replay needs a filter: choose a status, route, destination, type, id or time",
        );
    }
    let Ok(filter) = f.filter() else {
        return refuse(StatusCode::BAD_REQUEST, "bad filter");
    };
    let filter = match pinned(&state, filter).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (orphaned, targets) = orphaned(&state.snapshot().config, &filter);
    let set = match state
        .store()
        .count_replay_set(filter.clone(), orphaned.is_some())
        .await
    {
        Ok(s) => s,
        Err(e) => return store_failed(e),
    };
    html(
        StatusCode::OK,
        &ConfirmPage {
            layout: Layout::new(&session, "events", None),
            fields: f.fields(),
            query: f.query(),
            set,
            max_id: filter.max_id.unwrap_or_default(),
            changed: false,
            orphaned,
            targets,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct BulkForm {
    #[serde(flatten)]
    filter: FilterParams,
    max_id: String,
    // Strings: numbers do not survive `#[serde(flatten)]` in forms.
    events: String,
    deliveries: String,
    /// Moves the deliveries to this destination ([`retarget::check`]).
    to: Option<String>,
}

/// `POST /ui/replay`: replays the confirmed set if it is still exactly
/// what was shown; otherwise shows the new count to confirm again.
pub async fn bulk_replay(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Form(form): Form<BulkForm>,
) -> Response {
    if !form.filter.narrows() {
        return refuse(StatusCode::BAD_REQUEST, "bulk replay needs a filter");
    }
    let Ok(mut filter) = form.filter.filter() else {
        return refuse(StatusCode::BAD_REQUEST, "bad filter");
    };
    filter.max_id = Some(form.max_id.clone());
    let (Ok(events), Ok(deliveries)) = (form.events.parse(), form.deliveries.parse()) else {
        return refuse(StatusCode::BAD_REQUEST, "bad expected counts");
    };
    let expected = ReplaySet { events, deliveries };
    let to = given(&form.to);
    let config = state.snapshot().config.clone();
    if let Err(message) =
        retarget::check(&config, filter.base.destination.as_deref(), to.as_deref())
    {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    let (orphaned, targets) = orphaned(&config, &filter);
    match state.store().replay_filtered(filter, expected, to).await {
        Ok(BulkReplay::Replayed(set)) => {
            if set.deliveries > 0 {
                state.delivery().wake();
            }
            tracing::info!(
                events = set.events,
                deliveries = set.deliveries,
                "bulk replay in the console"
            );
            let mut q = url::form_urlencoded::Serializer::new(form.filter.query());
            q.append_pair("replayed", &set.deliveries.to_string());
            Redirect::to(&format!("/ui/events?{}", q.finish())).into_response()
        }
        Ok(BulkReplay::Changed(set)) => html(
            StatusCode::CONFLICT,
            &ConfirmPage {
                layout: Layout::new(&session, "events", None),
                fields: form.filter.fields(),
                query: form.filter.query(),
                set,
                max_id: form.max_id,
                changed: true,
                orphaned,
                targets,
            },
        ),
        Err(e) => store_failed(e),
    }
}
