//! A scriptable destination: records every request and answers with the
//! statuses it is told to, on a loopback port-0 listener.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The status the receiver answered.
    pub answered: u16,
    /// When the receiver answered.
    pub at: std::time::Instant,
    /// The client certificate the sender presented (DER), on an HTTPS
    /// receiver that asked for one.
    pub client_cert: Option<Vec<u8>>,
    /// HTTP/1.1, or HTTP/2 (an HTTPS receiver offers both).
    pub version: axum::http::Version,
}

impl Received {
    /// The delivery's `webhook-id` header (its message id), when it has one.
    pub fn webhook_id(&self) -> Option<String> {
        Some(self.headers.get("webhook-id")?.to_str().ok()?.to_owned())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header sent more than once, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
    /// Answer this status to everything (after the script), when set.
    fixed: Mutex<Option<u16>>,
    /// Wait this long before answering.
    delay: Mutex<Duration>,
    /// How to answer a callback validation (`?validationToken=`).
    validation: Mutex<Validation>,
    /// Requests that have arrived, answered or not (`received` has them
    /// once answered, after any `delay`).
    arrived: std::sync::atomic::AtomicUsize,
    /// TLS handshakes that failed (an HTTPS receiver).
    handshake_failures: std::sync::atomic::AtomicUsize,
}

/// The client certificate of an HTTPS receiver's connection.
#[derive(Clone)]
struct PeerCert(Option<Vec<u8>>);

/// How the receiver answers a subscription's callback validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Validation {
    /// 200 with the token (a well-behaved subscriber).
    #[default]
    Echo,
    /// 200 with something else.
    WrongToken,
    /// Like any other request (scripted status, empty body).
    Ignore,
    /// Never answer in time.
    Hang,
}

/// A mock destination.
pub struct MockReceiver {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl MockReceiver {
    /// A loopback listener on port 0, and the app that records what
    /// reaches it.
    async fn listen() -> (
        Arc<Shared>,
        tokio::net::TcpListener,
        SocketAddr,
        CancellationToken,
        Router,
    ) {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(any(record))
            .with_state(shared.clone());
        (shared, listener, addr, CancellationToken::new(), app)
    }

    /// Starts a receiver that answers 200 to everything.
    pub async fn start() -> Self {
        let (shared, listener, addr, stop, app) = Self::listen().await;
        let token = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .ok();
        });
        MockReceiver {
            addr,
            scheme: "http",
            shared,
            stop,
        }
    }

    /// Starts an HTTPS receiver with the certificate `server`, offering
    /// HTTP/2 and HTTP/1.1 by ALPN with `http2`, HTTP/1.1 alone without;
    /// with `client_ca` (PEM), it asks for a client certificate and
    /// accepts only one from that CA.
    pub async fn start_tls(
        server: &super::pki::Leaf,
        client_ca: Option<&str>,
        http2: bool,
    ) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (shared, listener, addr, stop, app) = Self::listen().await;
        let (token, counts) = (stop.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                    () = token.cancelled() => break,
                };
                let (acceptor, app, counts, token) =
                    (acceptor.clone(), app.clone(), counts.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        counts
                            .handshake_failures
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|c| c.to_vec());
                    let service = hyper_util::service::TowerToHyperService::new(
                        app.layer(axum::Extension(PeerCert(peer))),
                    );
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        _ = conn => {},
                        () = token.cancelled() => {},
                    }
                });
            }
        });
        MockReceiver {
            addr,
            scheme: "https",
            shared,
            stop,
        }
    }

    /// TLS handshakes that failed (an HTTPS receiver): a sender that did
    /// not trust the certificate, or presented none when one was asked for.
    pub fn handshake_failures(&self) -> usize {
        self.shared
            .handshake_failures
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers the next requests with these statuses, then 200.
    pub fn script(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// Answers every request with `status` from now on (`None`: 200).
    pub fn always(&self, status: Option<u16>) {
        *self.shared.fixed.lock().unwrap() = status;
    }

    /// How to answer callback validations from now on.
    pub fn validation(&self, v: Validation) {
        *self.shared.validation.lock().unwrap() = v;
    }

    /// Requests other than callback validations.
    pub fn deliveries(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| !r.uri.query().unwrap_or("").contains("validationToken="))
            .collect()
    }

    /// Waits `delay` before answering each request.
    pub fn delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Requests that have arrived so far, including those still waiting
    /// out a `delay`.
    pub fn arrived(&self) -> usize {
        self.shared
            .arrived
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests whose answer was 2xx.
    pub fn successes(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300)
            .collect()
    }

    /// URL for `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The requests that arrived after the first `from`.
    pub fn received_from(&self, from: usize) -> Vec<Received> {
        let received = self.shared.received.lock().unwrap();
        received.get(from..).unwrap_or_default().to_vec()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::wait_until(&format!("{n} deliveries"), timeout, || self.count() >= n).await;
        self.received()
    }
}

impl Drop for MockReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    peer: Option<axum::Extension<PeerCert>>,
    version: axum::http::Version,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    shared
        .arrived
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let token = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("validationToken="))
        .map(str::to_owned);
    if let Some(token) = token {
        let mode = *shared.validation.lock().unwrap();
        let answer = match mode {
            Validation::Echo => Some((StatusCode::OK, token)),
            Validation::WrongToken => Some((StatusCode::OK, "not-the-token".to_owned())),
            Validation::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some((StatusCode::OK, token))
            }
            Validation::Ignore => None,
        };
        if let Some(answer) = answer {
            shared.received.lock().unwrap().push(Received {
                method,
                uri,
                headers,
                body,
                answered: answer.0.as_u16(),
                at: std::time::Instant::now(),
                client_cert: peer.and_then(|p| p.0.0),
                version,
            });
            return answer;
        }
    }
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let scripted = shared.script.lock().unwrap().pop_front();
    let status = scripted.or(*shared.fixed.lock().unwrap()).unwrap_or(200);
    shared.received.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body,
        answered: status,
        at: std::time::Instant::now(),
        client_cert: peer.and_then(|p| p.0.0),
        version,
    });
    (StatusCode::from_u16(status).unwrap(), String::new())
}
