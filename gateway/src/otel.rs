//! OpenTelemetry traces, built only with the `otel` cargo feature: the
//! stage spans (`ingress`, `plugin`, `store.commit`, `delivery.attempt`,
//! target [`STAGE_TARGET`]) exported over OTLP/HTTP.
//!
//! Configured the OpenTelemetry way, by environment: export is on when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (the
//! default) or `http/json`; `OTEL_SERVICE_NAME` (default `hookgate`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and the batch
//! settings (`OTEL_BSP_*`) are honoured too. gRPC is not built in.
//!
//! Spans go through the batch processor on its own thread; the export
//! requests are sent by our reqwest client on the gateway's runtime, so no
//! second HTTP stack is built. An export that fails is logged by the SDK
//! and dropped: tracing never holds up a webhook.
//!
//! Deliberately not here: the spans themselves (they are plain `tracing`
//! spans where each stage runs) and metrics (Prometheus, `metrics.rs`).

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

pub use crate::observability::STAGE_TARGET;

/// Longest an export request may take: a collector that hangs must not
/// keep the batch thread (and so the flush on shutdown) forever.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest collector answer read (they are a few bytes).
const MAX_ANSWER: usize = 64 << 10;

/// The running exporter; [`OtelGuard::shutdown`] flushes what is batched.
#[derive(Debug)]
pub struct OtelGuard(SdkTracerProvider);

impl OtelGuard {
    /// Exports the spans still batched and stops. Blocking: call it off
    /// the runtime's worker threads (`spawn_blocking`).
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("hookgate: OpenTelemetry flush failed: {e}");
        }
    }
}

/// The tracing layer that exports the stage spans, and its guard; `None`
/// when no OTLP endpoint is configured. Call it on the runtime: exports
/// run on it.
pub fn layer<S>() -> Result<Option<(impl Layer<S>, OtelGuard)>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let client = ReqwestOnTokio::new()?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("hookgate");
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("hookgate");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Only the stage spans, whatever RUST_LOG says for the log.
        .with_filter(Targets::new().with_target(STAGE_TARGET, tracing::Level::DEBUG));
    Ok(Some((layer, OtelGuard(provider))))
}

/// The exporter's HTTP client: the gateway's reqwest stack, driven on the
/// gateway's runtime (the batch processor's thread has none).
#[derive(Debug)]
struct ReqwestOnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ReqwestOnTokio {
    fn new() -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OpenTelemetry must be set up on the runtime".to_owned())?;
        #[expect(
            clippy::disallowed_methods,
            reason = "the trace exporter's client, to the operator's collector: not a delivery"
        )]
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(EXPORT_TIMEOUT)
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
        Ok(ReqwestOnTokio { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ReqwestOnTokio {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let send = async move {
            let mut resp = client.execute(request).await?;
            let mut answer = Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                answer = answer.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        };
        self.runtime.spawn(send).await?
    }
}
