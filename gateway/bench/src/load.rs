//! The load generator: a fixed number of worker tasks, each with one HTTP/1
//! keep-alive connection (hyper's low-level client), sending the same
//! signed request back to back. Closed loop: concurrency stays fixed, and
//! a slower server gets fewer requests per second rather than a queue.
//! With a `rate`, each worker paces its requests so that together they
//! send that many per second (a worker that falls behind sends back to
//! back until it catches up).
//!
//! An error is a non-2xx answer, an I/O error, or no answer within
//! [`REQUEST_TIMEOUT`]; after an I/O error or a timeout the worker
//! reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::github::DeliveryIds;

/// The longest one request may take, connecting and reading the whole
/// answer included: generous (the servers answer in milliseconds), only so
/// that one request the server never answers cannot hold a worker, and so
/// the row, for ever. It counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to send.
#[derive(Debug)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Headers of every request.
    pub headers: HeaderMap,
    /// Header that gets a unique value per request (the provider's delivery
    /// id, which becomes the delivered message's `webhook-id`).
    pub id_header: HeaderName,
    /// How those unique values are made.
    pub ids: Ids,
    /// Body of every request.
    pub body: Bytes,
}

/// How a load's unique values (one per request) are made.
#[derive(Debug, Clone)]
pub enum Ids {
    /// GitHub's delivery ids (version-1 UUIDs of the time of sending, see
    /// `github.rs`), the load's name making each load's its own.
    GithubDelivery(String),
    /// `<prefix>-<worker>-<n>`, for a value nothing but the bench reads.
    Counted(String),
}

/// One worker's maker of unique values.
enum IdMaker {
    Github(DeliveryIds),
    Counted {
        prefix: String,
        worker: usize,
        n: u64,
    },
}

impl IdMaker {
    fn new(ids: &Ids, worker: usize) -> Self {
        match ids {
            Ids::GithubDelivery(load) => IdMaker::Github(DeliveryIds::new(load, worker)),
            Ids::Counted(prefix) => IdMaker::Counted {
                prefix: prefix.clone(),
                worker,
                n: 0,
            },
        }
    }

    fn next_id(&mut self) -> String {
        match self {
            IdMaker::Github(ids) => ids.next_id(),
            IdMaker::Counted { prefix, worker, n } => {
                *n += 1;
                format!("{prefix}-{worker}-{n}")
            }
        }
    }
}

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After a warm-up (not counted), measure for this long.
    Timed {
        /// Not counted.
        warmup: Duration,
        /// Counted.
        measure: Duration,
    },
    /// Send exactly this many requests, all counted; give up after
    /// `limit` in any case.
    Count {
        /// Requests to send.
        requests: u64,
        /// Bound on the whole loop.
        limit: Duration,
    },
}

/// How to send.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Connections (= worker tasks).
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Keep (id, answered-at) of every successful request.
    pub record_answered: bool,
    /// Requests per second across all connections (open loop); `None`:
    /// as fast as the server answers.
    pub rate: Option<f64>,
}

/// What the workers saw in the measured window.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers and I/O errors.
    pub errors: u64,
    /// The first few error descriptions, for the log.
    pub error_samples: Vec<String>,
    /// Latency of each successful request, in nanoseconds.
    pub latencies_ns: Vec<u64>,
    /// Length of the measured window.
    pub window: Duration,
    /// (unique id, when its answer arrived) of each successful request
    /// in the window, when asked for.
    pub answered: Vec<(String, Instant)>,
    /// Unique ids of the successful requests outside the window (warm-up,
    /// and those that straddle an edge of the window), when `answered` is
    /// asked for. Their events are owed a delivery as much as those in
    /// the window.
    pub answered_outside: Vec<String>,
}

impl LoadResult {
    /// Successful requests per second over the window.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The unique id of every request answered 2xx at any time (window,
    /// warm-up and the edges), when `answered` was asked for: the events
    /// the server owes a delivery.
    pub fn owed_ids(&self) -> impl Iterator<Item = &str> {
        self.answered
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(self.answered_outside.iter().map(String::as_str))
    }

    /// Adds `other`'s counts (a load over the same window) to these.
    pub fn merge(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
        self.latencies_ns.extend(other.latencies_ns);
        self.answered.extend(other.answered);
        self.answered_outside.extend(other.answered_outside);
    }
}

/// The measured window, known once the run starts.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Requests started before this are not counted.
    pub start: Instant,
    /// Requests are sent until then (timed runs) or at most until then.
    pub end: Instant,
}

/// Starts `plan` against `target`. Returns the measured window at once (to
/// sample the server's CPU time at its edges) and the workers' result.
pub fn start(target: Arc<Target>, plan: Plan) -> (Window, tokio::task::JoinHandle<LoadResult>) {
    let now = Instant::now();
    let window = match plan.stop {
        Stop::Timed { warmup, measure } => Window {
            start: now + warmup,
            end: now + warmup + measure,
        },
        Stop::Count { limit, .. } => Window {
            start: now,
            end: now + limit,
        },
    };
    let tickets = Arc::new(AtomicU64::new(0));
    let handle = tokio::spawn(async move {
        let workers: Vec<_> = (0..plan.connections)
            .map(|i| tokio::spawn(worker(i, target.clone(), plan, window, tickets.clone())))
            .collect();
        let mut total = LoadResult::default();
        for w in workers {
            if let Ok(r) = w.await {
                total.merge(r);
            }
        }
        total.window = match plan.stop {
            Stop::Timed { measure, .. } => measure,
            Stop::Count { .. } => now.elapsed(),
        };
        total
    });
    (window, handle)
}

async fn worker(
    index: usize,
    target: Arc<Target>,
    plan: Plan,
    window: Window,
    tickets: Arc<AtomicU64>,
) -> LoadResult {
    let mut result = LoadResult::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut ids = IdMaker::new(&target.ids, index);
    let authority = target.addr.to_string();
    // Open loop: this worker's share of the rate, staggered so that the
    // workers do not fire together.
    let interval = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r));
    let mut next =
        interval.map(|i| Instant::now() + i.mul_f64(index as f64 / plan.connections as f64));
    loop {
        if let (Some(at), Some(i)) = (next.as_mut(), interval) {
            if *at > Instant::now() {
                tokio::time::sleep_until((*at).into()).await;
            }
            *at += i;
        }
        if Instant::now() >= window.end {
            break;
        }
        if let Stop::Count { requests, .. } = plan.stop
            && tickets.fetch_add(1, Ordering::Relaxed) >= requests
        {
            break;
        }
        let id = ids.next_id();
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, &target, &authority, &id))
                .await;
        let finished = Instant::now();
        let counted = started >= window.start && finished <= window.end;
        let Ok(outcome) = outcome else {
            // No answer: the connection's state is unknown, open a new one.
            sender = None;
            // Counted whenever it began in the window: it necessarily
            // ends past the window's end when the window is shorter
            // than the timeout.
            if started >= window.start {
                result.error(format!("no answer within {REQUEST_TIMEOUT:?}"));
            }
            continue;
        };
        match outcome {
            Ok(status) if status.is_success() => {
                if counted {
                    result.ok += 1;
                    result
                        .latencies_ns
                        .push(u64::try_from((finished - started).as_nanos()).unwrap_or(u64::MAX));
                    if plan.record_answered {
                        result.answered.push((id, finished));
                    }
                } else if plan.record_answered {
                    result.answered_outside.push(id);
                }
            }
            Ok(status) => {
                if counted {
                    result.error(format!("HTTP {status}"));
                }
            }
            Err(e) => {
                sender = None;
                if counted {
                    result.error(format!("I/O: {e}"));
                }
                // Do not spin on a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    result
}

impl LoadResult {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(what);
        }
    }
}

/// One request on the worker's connection (opened first if needed), body
/// read to the end so the connection can be reused.
async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    authority: &str,
    id: &str,
) -> anyhow::Result<StatusCode> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(target.addr).await?);
    }
    let Some(s) = sender.as_mut() else {
        unreachable!("connected above")
    };
    let mut req = Request::post(target.path.as_str())
        .header(http::header::HOST, authority)
        .body(Full::new(target.body.clone()))?;
    req.headers_mut().extend(target.headers.clone());
    req.headers_mut()
        .insert(target.id_header.clone(), HeaderValue::from_str(id)?);
    s.ready().await?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

async fn connect<B>(addr: SocketAddr) -> anyhow::Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors surface on the sender.
        let _ = conn.await;
    });
    Ok(sender)
}

/// GET `path` on a fresh connection: the status, or an error (also when
/// there is no answer within [`REQUEST_TIMEOUT`]).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<StatusCode> {
    tokio::time::timeout(REQUEST_TIMEOUT, get_once(addr, path))
        .await
        .map_err(|_| anyhow::anyhow!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn get_once(addr: SocketAddr, path: &str) -> anyhow::Result<StatusCode> {
    let mut sender = connect::<Empty<Bytes>>(addr).await?;
    let req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

/// POSTs `body` to `path` with `headers`: the answer's status and body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut sender = connect::<Full<Bytes>>(addr).await?;
        let mut req = Request::post(path)
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(body))?;
        req.headers_mut().extend(headers.clone());
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| anyhow::anyhow!("POST {path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The `p`-th quantile (0..=1) of sorted `values` (nearest rank).
pub fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
