//! OpenTelemetry traces (the `otel` cargo feature) through the real
//! binary: one webhook yields the `ingress` span with the event id, its
//! `plugin` and `store.commit` children in the same trace, and a
//! `delivery.attempt` span carrying the same event id, all exported over
//! OTLP/HTTP to a loopback stand-in of a collector.
//!
//! Run with `cargo test -p hookgate --features otel --test it otel`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::Value;

use crate::support::gateway::TestGateway;
use crate::support::receiver::MockReceiver;
use crate::support::{sign, wait_until};

/// One exported span, flattened from OTLP/JSON.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, Value)>,
    service: Option<String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| {
                // OTLP/JSON: {"stringValue": "…"} or {"intValue": "123"}.
                v.as_object()
                    .and_then(|o| o.values().next())
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default()
            })
    }
}

/// A stand-in collector: takes `POST /v1/traces` in OTLP/JSON and keeps
/// every span.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route(
        "/v1/traces",
        post({
            let spans = spans.clone();
            move |body: axum::body::Bytes| async move {
                let export: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                let mut got = spans.lock().unwrap();
                for rs in export["resourceSpans"].as_array().into_iter().flatten() {
                    let service = rs["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .map(str::to_owned);
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            got.push(Span {
                                name: s["name"].as_str().unwrap_or_default().to_owned(),
                                trace_id: s["traceId"].as_str().unwrap_or_default().to_owned(),
                                span_id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                                parent_span_id: s["parentSpanId"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                attributes: s["attributes"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|a| {
                                        (
                                            a["key"].as_str().unwrap_or_default().to_owned(),
                                            a["value"].clone(),
                                        )
                                    })
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_webhook_is_one_trace_of_its_stages_linked_by_the_event_id() {
    let (endpoint, spans) = collector().await;
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn_env(
        &format!(
            r#"
destinations:
  sink: {{ url: "{}" }}
routes:
  github:
    verify: {{ plugin: github, with: {{ secret: s3cret }} }}
    to: [sink]
"#,
            sink.url("/hook")
        ),
        |_| {},
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            // Export within 50 ms instead of the default 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;

    let body = br#"{"action":"opened","issue":{"number":1}}"#;
    let resp = gw
        .post(
            "github",
            &[
                ("content-type", "application/json"),
                ("x-github-event", "issues"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-hub-signature-256", &sign::github("s3cret", body)),
            ],
            body,
        )
        .await;
    assert_eq!(resp.status(), 202);
    let event_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Spans of this webhook: the ones carrying its event id, and those in
    // the trace of its `ingress` span (plugin calls at start-up have
    // traces of their own).
    let find = |name: &str| -> Option<Span> {
        let spans = spans.lock().unwrap();
        let trace = spans
            .iter()
            .find(|s| s.name == "ingress" && s.attr("event_id").as_deref() == Some(&event_id))
            .map(|s| s.trace_id.clone());
        spans
            .iter()
            .find(|s| {
                s.name == name
                    && (s.attr("event_id").as_deref() == Some(&event_id)
                        || trace.as_deref() == Some(&s.trace_id))
            })
            .cloned()
    };
    wait_until("the four stage spans", Duration::from_secs(20), || {
        ["ingress", "plugin", "store.commit", "delivery.attempt"]
            .iter()
            .all(|n| find(n).is_some())
    })
    .await;
    let ingress = find("ingress").unwrap();
    assert_eq!(ingress.attr("event_id").as_deref(), Some(event_id.as_str()));
    assert_eq!(ingress.attr("route").as_deref(), Some("github"));
    assert_eq!(ingress.service.as_deref(), Some("hookgate"));
    assert!(ingress.parent_span_id.is_empty(), "the request is the root");

    let plugin = find("plugin").unwrap();
    assert_eq!(plugin.attr("plugin").as_deref(), Some("github"));
    let commit = find("store.commit").unwrap();
    assert_eq!(commit.attr("event_id").as_deref(), Some(event_id.as_str()));
    for child in [&plugin, &commit] {
        assert_eq!(child.trace_id, ingress.trace_id, "{child:?}");
        assert_eq!(child.parent_span_id, ingress.span_id, "{child:?}");
    }

    // The attempt runs later, on its own: the event id links it.
    let attempt = find("delivery.attempt").unwrap();
    assert_eq!(attempt.attr("event_id").as_deref(), Some(event_id.as_str()));
    assert_eq!(attempt.attr("destination").as_deref(), Some("sink"));
    assert_eq!(attempt.attr("outcome").as_deref(), Some("delivered"));
    assert_eq!(attempt.attr("status").as_deref(), Some("200"));
    assert_eq!(sink.count(), 1);
}
