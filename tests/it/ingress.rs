//! The HTTP edge: limits, unknown routes, health and metrics.

use crate::support::gateway::TestGateway;

const ROUTES: &str = r#"
destinations:
  console: { kind: log }
routes:
  open:
    to: [console]
  small:
    max_body_size: 64
    to: [console]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_is_404() {
    let gw = TestGateway::spawn(ROUTES).await;
    let resp = gw.post("nope", &[], b"{}").await;
    assert_eq!(resp.status(), 404);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "unknown_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_is_413() {
    let gw = TestGateway::spawn(ROUTES).await;
    assert_eq!(gw.post("small", &[], &[b'x'; 64]).await.status(), 202);
    assert_eq!(gw.post("small", &[], &[b'x'; 65]).await.status(), 413);
    // Default limit is 1 MiB.
    assert_eq!(
        gw.post("open", &[], &vec![b'x'; (1 << 20) + 1])
            .await
            .status(),
        413
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_without_content_length_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::spawn(ROUTES).await;
    // A chunked body has no Content-Length: the limit must be enforced
    // while reading.
    let addr = gw.url("").trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = b"POST /hooks/small HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"a\r\nyyyyyyyyyy\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&req).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_are_served() {
    let gw = TestGateway::spawn(ROUTES).await;
    assert_eq!(gw.post("open", &[], b"{}").await.status(), 202);
    let health: serde_json::Value = gw
        .client()
        .get(gw.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    // The delivery runs after the 202: wait until it is counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = gw
            .client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("hookgate_deliveries_total") || std::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(
        metrics.contains(r#"hookgate_requests_total{route="open",status="202"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("hookgate_deliveries_total"), "{metrics}");
}
