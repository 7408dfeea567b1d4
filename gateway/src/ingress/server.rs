//! The accept loop: every limit that must hold before a handler runs.
//!
//! `axum::serve` has no header, body or idle timeout and no cap on
//! connections, so a client that opens sockets and sends a byte now and
//! then could hold them (and their buffers) forever. This loop serves the
//! same router through hyper-util's server builder and adds:
//!
//! - a **connection cap** (`limits.max_connections`): a connection over it
//!   is answered `503` with `Retry-After` and closed, never queued;
//! - a **per-connection watchdog**: the request head must arrive within
//!   `limits.header_read_timeout` (from the accept, or from the first byte
//!   of the next request on a kept-alive connection) and a kept-alive
//!   connection idle for `limits.idle_timeout` is closed;
//! - a **body deadline** ([`TimedBody`]): `limits.body_read_timeout` of
//!   slack plus the time `limits.min_body_rate` allows for the bytes
//!   received so far; past it the read fails with [`BodyTimeout`], which
//!   ingress answers `408`;
//! - a **cap on requests in flight** (`limits.max_requests_in_flight`,
//!   `/healthz` and `/metrics` exempt): over it, `503` with `Retry-After`;
//! - **header limits** (`limits.max_headers`, `limits.max_header_size`),
//!   which hyper answers `431`;
//! - a **graceful-shutdown deadline** (`limits.shutdown_timeout`).
//!
//! Deliberately not here: routing and anything a handler decides.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::LimitsConfig;
use crate::observability::flood::{Flood, log_limited};

/// What a client over a cap is told to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// How long a refused connection may take to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, most likely) so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Paths served even when the request cap is reached: a load balancer's
/// health check and the scrape that shows why the gateway is busy.
const UNCAPPED_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// The limits and shared counters of one gateway's front door. Clone it to
/// serve several listeners under the same caps.
#[derive(Clone, Debug)]
pub struct Door {
    inner: Arc<DoorInner>,
}

#[derive(Debug)]
struct DoorInner {
    limits: LimitsConfig,
    connections: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    builder: auto::Builder<TokioExecutor>,
}

impl Door {
    /// A door with `limits` (validated: counts at least 1, header size at
    /// least 8 KiB).
    pub fn new(limits: &LimitsConfig) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let header_size = usize::try_from(limits.max_header_size.0)
            .unwrap_or(usize::MAX)
            .max(MIN_HEADER_BUFFER);
        builder
            .http1()
            // The watchdog times the head; hyper's own timer would also
            // cut idle kept-alive connections at the header deadline.
            .header_read_timeout(None)
            .max_headers(limits.max_headers)
            // hyper answers 431 when a head does not fit its read buffer.
            .max_buf_size(header_size);
        builder
            .http2()
            .max_header_list_size(u32::try_from(header_size).unwrap_or(u32::MAX))
            .max_concurrent_streams(u32::try_from(limits.max_requests_in_flight).ok());
        Door {
            inner: Arc::new(DoorInner {
                limits: limits.clone(),
                connections: Arc::new(Semaphore::new(clamp_permits(limits.max_connections))),
                in_flight: Arc::new(Semaphore::new(clamp_permits(limits.max_requests_in_flight))),
                builder,
            }),
        }
    }

    /// Serves `app` on `listener` until `shutdown` fires, then waits up to
    /// `limits.shutdown_timeout` for the requests in flight and closes
    /// every connection left.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let graceful = GracefulShutdown::new();
        // Cancels connections still open when the deadline passes.
        let force = CancellationToken::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE/ENFILE or a connection reset before accept:
                        // the listener itself is fine.
                        static FAILED: Flood = Flood::new();
                        log_limited!(FAILED, "", warn, error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = self.inner.connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "connection cap reached; refusing");
                tokio::spawn(refuse(stream));
                continue;
            };
            let door = self.clone();
            let app = app.clone();
            let watcher = graceful.watcher();
            let force = force.clone();
            tokio::spawn(async move {
                door.connection(stream, app, watcher, force).await;
                drop(permit);
            });
        }
        drop(listener);
        let deadline = self.inner.limits.shutdown_timeout.0;
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "requests still in flight at the shutdown deadline; closing their connections"
            );
        }
        force.cancel();
        Ok(())
    }

    /// Serves one connection (any byte stream; fuzzing uses an in-memory
    /// one) under the door's limits, until it ends.
    #[doc(hidden)]
    pub async fn serve_io<S>(&self, stream: S, app: Router)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let graceful = GracefulShutdown::new();
        self.connection(stream, app, graceful.watcher(), CancellationToken::new())
            .await;
    }

    /// Serves one connection under the watchdog.
    async fn connection<S>(
        &self,
        stream: S,
        app: Router,
        watcher: hyper_util::server::graceful::Watcher,
        force: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.inner.limits;
        let clock = Arc::new(ConnClock::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            clock: clock.clone(),
        });
        let door = self.clone();
        let svc_clock = clock.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let door = door.clone();
            let app = app.clone();
            let clock = svc_clock.clone();
            async move { Ok::<_, std::convert::Infallible>(door.request(req, app, &clock).await) }
        });
        let conn = self.inner.builder.serve_connection(io, service);
        let conn = watcher.watch(conn);
        tokio::select! {
            result = conn => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            () = clock.watchdog(limits.header_read_timeout.0, limits.idle_timeout.0) => {
                tracing::debug!("closing a connection past its header or idle deadline");
            }
            () = force.cancelled() => {}
        }
    }

    /// One request: the in-flight cap, the body deadline, then the app.
    async fn request(
        &self,
        req: Request<Incoming>,
        app: Router,
        clock: &ConnClock,
    ) -> Response<Body> {
        let _busy = clock.busy();
        let _permit = if UNCAPPED_PATHS.contains(&req.uri().path()) {
            None
        } else {
            match self.inner.in_flight.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return overloaded("too many requests in flight"),
            }
        };
        let limits = &self.inner.limits;
        let req = req.map(|b| {
            Body::new(TimedBody::new(
                b,
                limits.body_read_timeout.0,
                limits.min_body_rate.0,
            ))
        });
        match app.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// hyper's smallest read buffer.
const MIN_HEADER_BUFFER: usize = 8192;

/// Semaphores take at most `Semaphore::MAX_PERMITS`; config validation
/// keeps counts far below it, and this keeps `Semaphore::new` from
/// panicking whatever reaches it.
fn clamp_permits(n: usize) -> usize {
    n.clamp(1, Semaphore::MAX_PERMITS)
}

/// `503` with `Retry-After`, for a client over a cap.
fn overloaded(why: &str) -> Response<Body> {
    let body =
        serde_json::json!({ "error": "overloaded", "message": format!("{why}; retry later") });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    resp
}

/// Answers a connection over the cap without reading its request: a 503
/// that every HTTP/1 client understands, then close. Bounded in time so a
/// client that does not read cannot keep the task.
async fn refuse(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Retry-After: 1\r\n\
        Content-Type: application/json\r\n\
        Content-Length: 69\r\n\
        Connection: close\r\n\r\n\
        {\"error\":\"overloaded\",\"message\":\"too many connections; retry later\"}";
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(ANSWER).await?;
        stream.shutdown().await
    })
    .await;
}

/// Where a connection is in its request cycle, for the watchdog.
#[derive(Debug)]
struct ConnClock {
    state: Mutex<ClockState>,
    changed: Notify,
}

#[derive(Debug)]
struct ClockState {
    /// Requests being handled on this connection.
    busy: usize,
    /// Whether a request head is being read (bytes arrived since the
    /// connection went idle, or the connection is new).
    reading_head: bool,
    /// When the current phase (idle, or reading a head) began.
    since: Instant,
}

impl ConnClock {
    fn new() -> Self {
        ConnClock {
            // A new connection owes its first head within the header
            // timeout: connecting and saying nothing is a slowloris too.
            state: Mutex::new(ClockState {
                busy: 0,
                reading_head: true,
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // Nothing panics while holding the lock; recover the state anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: an idle connection starts reading a head.
    fn on_read(&self) {
        let mut s = self.lock();
        if s.busy == 0 && !s.reading_head {
            s.reading_head = true;
            s.since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Marks a request in progress until the guard drops.
    fn busy(&self) -> BusyGuard<'_> {
        let mut s = self.lock();
        s.busy += 1;
        s.reading_head = false;
        drop(s);
        self.changed.notify_one();
        BusyGuard(self)
    }

    /// When the connection must be closed unless something happens first.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        let s = self.lock();
        if s.busy > 0 {
            return None;
        }
        let allowed = if s.reading_head { header } else { idle };
        // A deadline too far to represent never comes.
        s.since.checked_add(allowed)
    }

    /// Returns when the connection has been reading a head for longer
    /// than `header`, or idle for longer than `idle`.
    async fn watchdog(&self, header: Duration, idle: Duration) {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a change
            // between reading the deadline and waiting is not lost.
            match self.deadline(header, idle) {
                None => self.changed.notified().await,
                Some(at) if at <= Instant::now() => return,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

struct BusyGuard<'a>(&'a ConnClock);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.busy = s.busy.saturating_sub(1);
        if s.busy == 0 {
            s.reading_head = false;
            s.since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// A socket that tells its [`ConnClock`] when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<ConnClock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The body read passed its deadline (`limits.body_read_timeout` plus
/// what `limits.min_body_rate` allows for the bytes received).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct BodyTimeout;

/// Whether `e` (or anything in its source chain) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A request body with a deadline that moves out as bytes arrive: `slack`
/// plus one second per `rate` bytes received.
pub struct TimedBody<B> {
    inner: B,
    start: Instant,
    received: u64,
    slack: Duration,
    rate: u64,
    sleep: Pin<Box<Sleep>>,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: B, slack: Duration, rate: u64) -> Self {
        let start = Instant::now();
        TimedBody {
            inner,
            start,
            received: 0,
            slack,
            rate,
            sleep: Box::pin(tokio::time::sleep_until(far_or(start.checked_add(slack)))),
        }
    }

    fn deadline(&self) -> Instant {
        // One second per `rate` bytes; nothing earned when `rate` is 0.
        let earned = self
            .received
            .checked_div(self.rate)
            .map_or(Duration::ZERO, |whole| {
                let rest = self.received % self.rate.max(1);
                let nanos = rest.saturating_mul(1_000_000_000) / self.rate.max(1);
                Duration::from_secs(whole) + Duration::from_nanos(nanos.min(999_999_999))
            });
        far_or(
            self.slack
                .checked_add(earned)
                .and_then(|d| self.start.checked_add(d)),
        )
    }
}

/// `at`, or a deadline that never comes when `at` does not fit.
fn far_or(at: Option<Instant>) -> Instant {
    at.unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400))
}

impl<B> hyper::body::Body for TimedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    this.received = this.received.saturating_add(n);
                    let at = this.deadline();
                    this.sleep.as_mut().reset(at);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(BodyTimeout.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole body (tests and fuzzing).
#[doc(hidden)]
pub async fn collect<B>(body: B) -> Result<Bytes, axum::BoxError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    Ok(body.collect().await.map_err(Into::into)?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body fed by a channel: the test decides when bytes arrive.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    // Real time, with short limits: the deadlines are what is tested, so
    // each test checks a lower bound exactly and an upper bound loosely.

    #[tokio::test]
    async fn a_stalled_body_times_out_after_its_slack() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = TimedBody::new(ChannelBody(rx), Duration::from_millis(300), 1024);
        tx.send(Bytes::from_static(&[b'x'; 512])).await.unwrap();
        let started = Instant::now();
        let err = collect(body).await.unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
        // 300 ms of slack plus 500 ms earned by 512 bytes at 1 KiB/s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(800), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_keeps_up_is_read_whole() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = TimedBody::new(ChannelBody(rx), Duration::from_millis(100), 1024);
        tokio::spawn(async move {
            // 1 KiB every 50 ms (20 KiB/s) for a second: past the slack,
            // well above the rate.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send(Bytes::from_static(&[b'x'; 1024])).await.unwrap();
            }
        });
        assert_eq!(collect(body).await.unwrap().len(), 20 * 1024);
    }

    #[tokio::test]
    async fn a_dripping_body_below_the_rate_is_cut_off() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = TimedBody::new(ChannelBody(rx), Duration::from_millis(200), 1024);
        let drip = tokio::spawn(async move {
            // 10 bytes every 50 ms (200 B/s): under the 1 KiB/s minimum.
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if tx.send(Bytes::from_static(&[b'x'; 10])).await.is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let err = collect(body).await.unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
        // About 250 ms: 200 ms of slack plus what 50 bytes earn.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drip.abort();
    }
}
