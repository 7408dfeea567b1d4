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
use axum::http::{HeaderMap, StatusCode, Uri};
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
        self.url_of(1)
    }

    /// URL of copy `copy` (1-based) of each webhook, for a route that sends
    /// every webhook to several destinations: the sink notes a delivery to
    /// it under [`copy_id`]`(webhook-id, copy)`, so each copy is owed and
    /// counted on its own.
    pub fn url_of(&self, copy: usize) -> String {
        format!("http://{}{}", self.addr, copy_path(copy))
    }

    /// ([`copy_id`], when it arrived) of every delivery so far.
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

/// The key the sink notes copy `copy` of webhook `id` under: the id itself
/// for the first (a route with one destination), `id#copy` for the others.
pub fn copy_id(id: &str, copy: usize) -> String {
    match copy {
        1 => id.to_owned(),
        n => format!("{id}#{n}"),
    }
}

/// The path of copy `copy` ([`Sink::url_of`]).
fn copy_path(copy: usize) -> String {
    match copy {
        1 => "/deliveries".to_owned(),
        n => format!("/deliveries/{n}"),
    }
}

/// The copy a delivery to `path` is ([`Sink::url_of`]); 1 for any other
/// path.
fn copy_of(path: &str) -> usize {
    path.strip_prefix("/deliveries/")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 1)
        .unwrap_or(1)
}

async fn record(
    State(seen): State<Arc<Seen>>,
    uri: Uri,
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
    let id = copy_id(id, copy_of(uri.path()));
    seen.deliveries.lock().expect("not poisoned").push((id, at));
    (StatusCode::OK, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_copy_url_maps_back_to_its_own_key() {
        for copy in 1..=3 {
            let url = format!("http://127.0.0.1:1{}", copy_path(copy));
            let path = url.parse::<Uri>().unwrap().path().to_owned();
            assert_eq!(copy_of(&path), copy, "{url}");
        }
        assert_eq!(copy_id("g1", 1), "g1");
        assert_eq!(copy_id("g1", 2), "g1#2");
        // Anything else is the first copy (the publish rows' callbacks
        // differ by their query only).
        assert_eq!(copy_of("/deliveries/x"), 1);
        assert_eq!(copy_of("/deliveries/1"), 1);
        assert_eq!(copy_of("/other"), 1);
    }
}
