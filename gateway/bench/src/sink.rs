//! The delivery rows' destination: a small axum server inside the bench
//! process that answers 200 and notes when it saw each `webhook-id`. It
//! shares the bench's clock with the load generator, so "answered" and
//! "delivered" instants compare directly. As a subscriber's callback it
//! also passes the gateway's validation: a request without a
//! `webhook-id` whose body is `{"validationToken": T}` gets `T` back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;

#[derive(Default)]
struct Seen {
    deliveries: Mutex<Vec<(String, Instant)>>,
}

/// A running sink, stopped when dropped.
pub struct Sink {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Starts a sink on a loopback port-0 listener.
    pub async fn start() -> anyhow::Result<Self> {
        let seen = Arc::new(Seen::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(any(record)).with_state(seen.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink { addr, seen, task })
    }

    /// URL to deliver to.
    pub fn url(&self) -> String {
        format!("http://{}/deliveries", self.addr)
    }

    /// (webhook-id, when it arrived) of every delivery so far.
    pub fn deliveries(&self) -> Vec<(String, Instant)> {
        self.seen.deliveries.lock().expect("not poisoned").clone()
    }

    /// (webhook-id, when it arrived) of the deliveries after the first
    /// `from`, in arrival order.
    pub fn deliveries_from(&self, from: usize) -> Vec<(String, Instant)> {
        let seen = self.seen.deliveries.lock().expect("not poisoned");
        seen.get(from..).map_or_else(Vec::new, <[_]>::to_vec)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let at = Instant::now();
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) else {
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("validationToken")?.as_str().map(str::to_owned));
        if let Some(token) = token {
            return (StatusCode::OK, token);
        }
        seen.deliveries
            .lock()
            .expect("not poisoned")
            .push((String::new(), at));
        return (StatusCode::OK, String::new());
    };
    let id = id.to_owned();
    seen.deliveries.lock().expect("not poisoned").push((id, at));
    (StatusCode::OK, String::new())
}
