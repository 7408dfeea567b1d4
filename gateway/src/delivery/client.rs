//! The client operator destinations' attempts go out on: hyper-util's
//! pooled client over hyper-rustls, without reqwest's layers.
//!
//! reqwest's own work around hyper's client (its request builder, the
//! redirect and retry policies, connector services boxed and cloned per
//! request, its `Pending` future) was 12 % of the runtime worker's samples
//! in a profile of the delivery benchmark, for nothing an attempt uses: a
//! delivery follows no redirect, reads no proxy from the environment, and
//! decompresses nothing. What reqwest did that an attempt relies on is
//! kept here: the same TLS (rustls on ring, Mozilla's roots or a
//! destination's own, HTTP/2 where offered), keep-alive pools of
//! [`super::POOL_PER_HOST`] idle connections per host closed after 90 s,
//! `TCP_NODELAY`, TCP keep-alive, `user-agent` and `accept: */*`, a
//! URL's user and password as Basic authentication, one timeout from the
//! first byte sent to the last byte read, and errors that say what failed
//! (connect, or the request) with every cause.
//!
//! Subscriber callbacks go out on a client of their own whose resolver is
//! the SSRF guard ([`Dns::Guarded`]): at each new connection it resolves
//! the callback's host again and hands the connector only the addresses
//! the allow-list permits. Plugins' outbound HTTP stays on reqwest (its
//! own guard, a reqwest resolver; it is not a delivery).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// How long an idle pooled connection is kept (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);

/// TCP keep-alive probes on delivery connections (reqwest's defaults).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// A delivery client: cheap to clone, one pool per value.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Pooled<HttpsConnector<HttpConnector<Dns>>, Full<Bytes>>,
}

/// How a client finds a host's addresses (an IP literal in a URL is not
/// resolved: a subscriber's is checked by [`super::ssrf::check_url`]
/// before every attempt).
#[derive(Clone)]
pub enum Dns {
    /// The system's resolver, every address it gives (operators'
    /// destinations).
    System,
    /// Only the addresses the allow-list read at each resolution permits
    /// ([`super::ssrf::resolve_vetted`]): subscriber callbacks, whose
    /// host may re-bind to an internal address after the check before
    /// sending.
    Guarded(super::ssrf::AllowList),
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dns::System => "System",
            Dns::Guarded(_) => "Guarded",
        })
    }
}

type Resolving = Pin<
    Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send + 'static>,
>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for Dns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let dns = self.clone();
        Box::pin(async move {
            let host = name.as_str();
            let addrs = match dns {
                // The port is the connector's to set.
                Dns::System => tokio::net::lookup_host((host, 0)).await?.collect(),
                Dns::Guarded(allow) => super::ssrf::resolve_vetted(host, &allow()).await?,
            };
            Ok(Vec::into_iter(addrs))
        })
    }
}

/// What a destination answered: its status and headers, and the first
/// bytes of its body.
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// At most the `read` bytes asked for.
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// The whole exchange took longer than its timeout.
    Timeout,
    /// No connection (refused, unresolvable, a TLS handshake that failed),
    /// with every cause.
    Connect(String),
    /// The request failed on a connection (reset, closed early, a TLS
    /// alert after the handshake), with every cause.
    Request(String),
}

impl SendError {
    /// What an attempt records: `timed out after …`, `connection failed:
    /// …` or `request failed: …`.
    pub fn describe(&self, timeout: Duration) -> String {
        match self {
            SendError::Timeout => format!("timed out after {timeout:?}"),
            SendError::Connect(why) => format!("connection failed: {why}"),
            SendError::Request(why) => format!("request failed: {why}"),
        }
    }
}

impl Client {
    /// A client whose connections use `tls` for `https` URLs (and plain
    /// TCP for `http`), for operators' destinations.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        Self::build(tls, Dns::System, super::POOL_PER_HOST)
    }

    /// A client for subscriber callbacks: resolved through the SSRF guard
    /// reading `allow`, keeping at most `idle_per_host` idle connections
    /// per host.
    pub fn guarded(
        tls: rustls::ClientConfig,
        allow: super::ssrf::AllowList,
        idle_per_host: usize,
    ) -> Self {
        Self::build(tls, Dns::Guarded(allow), idle_per_host)
    }

    fn build(tls: rustls::ClientConfig, dns: Dns, idle_per_host: usize) -> Self {
        let mut tcp = HttpConnector::new_with_resolver(dns);
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_retries(Some(3));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let inner = Pooled::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(idle_per_host)
            .build(connector);
        Client { inner }
    }

    /// POSTs `body` to `url` with `headers`: [`Client::post_to`] for a
    /// URL given per request (a subscriber's callback).
    pub async fn post(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        headers: HeaderMap,
        body: Bytes,
        read: usize,
    ) -> Result<Answer, SendError> {
        let target = Target::new(url).map_err(SendError::Request)?;
        self.post_to(&target, timeout, headers, body, read).await
    }

    /// POSTs `body` to `target` with `headers` (the client adds `host`,
    /// `content-length`, `user-agent` and `accept` unless given), and
    /// reads at most `read` bytes of the answer's body, all within
    /// `timeout`.
    pub async fn post_to(
        &self,
        target: &Target,
        timeout: Duration,
        mut headers: HeaderMap,
        body: Bytes,
        read: usize,
    ) -> Result<Answer, SendError> {
        if let Some(authorization) = &target.authorization {
            // As reqwest: unless an `authorization` header is configured.
            headers
                .entry(http::header::AUTHORIZATION)
                .or_insert_with(|| authorization.clone());
        }
        headers
            .entry(http::header::USER_AGENT)
            .or_insert(HeaderValue::from_static(super::USER_AGENT));
        headers
            .entry(http::header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target.uri.clone();
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(chain(&e))
                } else {
                    SendError::Request(chain(&e))
                }
            })?;
            let (parts, mut incoming) = response.into_parts();
            let mut body = Vec::new();
            // Read to the end when it is short, so that the connection
            // goes back to the pool; stop at `read` otherwise (the
            // connection is then closed, not reused).
            while body.len() < read {
                match incoming.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            body.extend_from_slice(data);
                        }
                    }
                    _ => break,
                }
            }
            body.truncate(read);
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// Where a request goes, prepared once (an operator destination's when its
/// config is compiled, not at every attempt): the URL as hyper's `Uri`,
/// without a user and password, and the Basic `authorization` they make
/// (as reqwest and curl: hyper sends neither).
#[derive(Clone, Debug)]
pub struct Target {
    uri: http::Uri,
    authorization: Option<HeaderValue>,
}

impl Target {
    /// `url` prepared; an error says why hyper cannot take it.
    pub fn new(url: &reqwest::Url) -> Result<Self, String> {
        let (uri, authorization) = match userinfo(url) {
            None => (url.as_str().parse::<http::Uri>(), None),
            Some((bare, authorization)) => (bare.as_str().parse(), Some(authorization)),
        };
        Ok(Target {
            uri: uri.map_err(|e| format!("the URL: {e}"))?,
            authorization,
        })
    }
}

/// For a URL with a user or a password: the URL without them, and the
/// `authorization` header they make (Basic, percent-decoded, as reqwest
/// and curl do).
fn userinfo(url: &reqwest::Url) -> Option<(reqwest::Url, HeaderValue)> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = format!(
        "{}:{}",
        decode(url.username()),
        url.password().map(decode).unwrap_or_default()
    );
    let mut value = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .ok()?;
    value.set_sensitive(true);
    let mut bare = url.clone();
    // Infallible for a URL with a user or a password: it has a host.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    Some((bare, value))
}

/// `e` and every cause under it, `: ` between them; a cause whose text
/// its parent already shows is left out.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut shown = out.clone();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !shown.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        shown = text;
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;
    use std::sync::Arc;

    use tower::Service as _;

    use super::*;

    fn loopback_allowed() -> super::super::ssrf::AllowList {
        Arc::new(|| {
            Arc::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])
        })
    }

    #[tokio::test]
    async fn the_guarded_resolver_hands_out_only_vetted_addresses() {
        // "localhost" stands in for a callback's name that (re)binds to an
        // internal address after the check before sending.
        let mut closed = Dns::Guarded(Arc::new(|| Arc::new(Vec::new())));
        let err = closed
            .call(Name::from_str("localhost").unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("internal addresses"), "{err}");
        let addrs: Vec<SocketAddr> = Dns::Guarded(loopback_allowed())
            .call(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        let system: Vec<SocketAddr> = Dns::System
            .call(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!system.is_empty());
    }

    /// A listener that answers every request with 200 and `body`.
    async fn answering(body: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0; 8192];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_guarded_client_connects_only_where_the_allow_list_permits() {
        let addr = answering("ok").await;
        let url = reqwest::Url::parse(&format!("http://localhost:{}/cb", addr.port())).unwrap();
        let timeout = Duration::from_secs(5);
        let closed = Client::guarded(
            super::super::tls::default_config(),
            Arc::new(|| Arc::new(Vec::new())),
            1,
        );
        let err = closed
            .post(&url, timeout, HeaderMap::new(), Bytes::new(), 16)
            .await
            .err()
            .expect("refused");
        let text = err.describe(timeout);
        assert!(
            text.starts_with("connection failed") && text.contains("internal addresses"),
            "{text}"
        );
        let open = Client::guarded(super::super::tls::default_config(), loopback_allowed(), 1);
        let answer = open
            .post(&url, timeout, HeaderMap::new(), Bytes::new(), 16)
            .await
            .unwrap_or_else(|e| panic!("{}", e.describe(timeout)));
        assert_eq!(answer.status, http::StatusCode::OK);
        assert_eq!(answer.body, b"ok");
    }
}
