//! Entry points of the cargo-fuzz targets in `gateway/fuzz/`, shared with
//! the replay of their committed corpus under plain `cargo test`
//! (`tests/it/fuzz.rs`), so stable CI runs every input the fuzzers kept.
//!
//! Each takes arbitrary bytes and panics only on a bug. Not an API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::any;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::{ByteSize, Duration as CfgDuration, LimitsConfig};
use crate::ingress::server::Door;
use crate::plugin::{
    CallContext, InboundRequest, LoadedPlugin, PluginConfig, PluginEngine, PluginError,
    PluginLimits, PluginResponse, PluginSource,
};

/// Some variables set, some not, so both interpolation paths run.
fn env(name: &str) -> Option<String> {
    name.len()
        .is_multiple_of(2)
        .then(|| format!("value-of-{name}-0123456789abcdef0123456789"))
}

/// The config loader: YAML parsing, `${VAR}` interpolation, schema and
/// semantic validation must answer every text with a config or errors.
pub fn config_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::from_str(text, &env) {
        // A valid config must also survive what start-up does with it.
        let _ = crate::plugin_limits(&config);
        let _ = crate::retry::RetryPolicy::default();
        for dest in config.destinations.values() {
            let policy = crate::retry::RetryPolicy::from_config(&dest.retry);
            for n in 0..8 {
                let _ = policy.wait(n);
            }
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a fuzzing runtime")
    })
}

/// What the request-head target serves: the door's limits (tight ones, so
/// the limits themselves are exercised) and a handler doing what ingress
/// does with a request before the pipeline.
fn door_and_app() -> &'static (Door, Router) {
    static DOOR: OnceLock<(Door, Router)> = OnceLock::new();
    DOOR.get_or_init(|| {
        let limits = LimitsConfig {
            max_headers: 16,
            max_header_size: ByteSize(8 << 10),
            header_read_timeout: CfgDuration::from_millis(200),
            body_read_timeout: CfgDuration::from_millis(200),
            idle_timeout: CfgDuration::from_millis(200),
            ..LimitsConfig::default()
        };
        let app = Router::new()
            .route("/hooks/{route}", any(echo))
            .fallback(any(echo));
        (Door::new(&limits), app)
    })
}

/// Converts the request as ingress does and answers with a plugin
/// response built from it (its headers echoed, which the response
/// builder must filter).
async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, 4096)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let inbound = crate::ingress::inbound_request(&parts, body, "fuzz", 0);
    let status = inbound
        .body
        .first()
        .map_or(200, |b| u16::from(*b).saturating_mul(4));
    crate::ingress::plugin_response(PluginResponse {
        status,
        headers: inbound.headers,
        body: inbound.body.to_vec(),
    })
}

/// Raw bytes on an HTTP connection: hyper's parser under the door's
/// limits, then ingress's conversion of the request and of a plugin's
/// response. Whatever arrives, the connection ends.
pub fn request_head(data: &[u8]) {
    let (door, app) = door_and_app();
    runtime().block_on(async {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let served = tokio::spawn({
            let door = door.clone();
            let app = app.clone();
            async move { door.serve_io(server, app).await }
        });
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        // The door's own deadlines end every connection well within this.
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer));
        assert!(read.await.is_ok(), "a connection outlived every deadline");
        drop(client);
        let _ = served.await;
    });
}

/// The built-in verifiers, whose signature-header parsing is the SDK's
/// (`hookgate_plugin_sdk::signature`) and the plugins' own, run as the
/// real wasm on the real host.
struct Verifiers {
    /// Kept for the process: the plugins run on it.
    _engine: PluginEngine,
    plugins: Vec<(Arc<LoadedPlugin>, CallContext)>,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let engine = PluginEngine::new(PluginLimits {
            // Generous: a slow fuzzing build must not report timeouts.
            timeout: Duration::from_secs(5),
            ..PluginLimits::default()
        })
        .expect("a plugin engine");
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let configs = [
            ("standard-webhooks", serde_json::json!({ "secret": secret })),
            ("stripe", serde_json::json!({ "secret": "whsec_stripe" })),
            (
                "github",
                serde_json::json!({ "secret": "s3cret", "allow_sha1": true }),
            ),
            ("slack", serde_json::json!({ "secret": "s3cret" })),
            (
                "teams-outgoing",
                serde_json::json!({ "secret": "c2VjcmV0LXRva2Vu" }),
            ),
            ("shopify", serde_json::json!({ "secret": "s3cret" })),
            ("zendesk", serde_json::json!({ "secret": "s3cret" })),
            (
                "twilio",
                serde_json::json!({ "secret": "s3cret", "url": "https://gw.example/hooks/twilio" }),
            ),
        ];
        let plugins = configs
            .into_iter()
            .filter_map(|(name, with)| {
                let bytes = crate::plugin::builtin::get(name)?;
                let plugin = runtime()
                    .block_on(engine.load(name, bytes.to_vec(), PluginSource::Builtin))
                    .expect("a built-in plugin loads");
                let serde_json::Value::Object(map) = with else {
                    return None;
                };
                let ctx = CallContext {
                    plugin: plugin.name().clone(),
                    route: Arc::from("fuzz"),
                    config: Arc::new(PluginConfig::new(Some(&map))),
                    limits: engine.limits(),
                    http: None,
                };
                Some((Arc::new(plugin), ctx))
            })
            .collect();
        Verifiers {
            _engine: engine,
            plugins,
        }
    })
}

/// Signature headers: the input's lines are the values of every header the
/// built-in verifiers read (the last line is the body). A verifier may
/// accept or refuse; it must never trap (a panic in the SDK or a plugin)
/// or run out of memory.
pub fn signature_headers(data: &[u8]) {
    const NAMES: [&str; 16] = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "stripe-signature",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-github-event",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "authorization",
        "x-shopify-hmac-sha256",
        "x-zendesk-webhook-signature",
        "x-zendesk-webhook-signature-timestamp",
        "x-twilio-signature",
        "content-type",
        "x-github-delivery",
    ];
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let headers: Vec<(String, String)> = NAMES
        .iter()
        .zip(lines.by_ref())
        .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
        .collect();
    let body: Vec<u8> = lines.collect::<Vec<_>>().join("\n").into_bytes();
    let req = InboundRequest {
        method: "POST".into(),
        path: "/hooks/fuzz".into(),
        query: String::new(),
        headers,
        body: body.into(),
        route: "fuzz".into(),
        received_at_ms: 1_700_000_000_000,
    };
    for (plugin, ctx) in &verifiers().plugins {
        if let Err(e @ (PluginError::Trap { .. } | PluginError::OutOfMemory { .. })) =
            runtime().block_on(plugin.verify(ctx, &req))
        {
            panic!("{} failed on hostile headers: {e}", plugin.name())
        }
    }
}

/// The store's codecs, fed stored bytes it did not write: the input's
/// lines are column values. Each line goes through every text codec
/// (headers, statuses and signature schemes as both engines decode them,
/// times as the admin API and the console parse and print them); the
/// first lines, as a row, through the SQLite subscription decoder. A decode
/// may refuse; whatever it accepts must encode and decode back to the same
/// value, and nothing may panic.
pub fn store_codecs(data: &[u8]) {
    let fields: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    for field in &fields {
        text_codecs(&String::from_utf8_lossy(field));
        time_codecs(field);
    }
    subscription_row_round_trip(&fields);
}

fn text_codecs(text: &str) {
    use crate::store::{SignatureScheme, postgres, sqlite};

    for decode in [sqlite::headers_from_json, postgres::headers_from_json] {
        if let Ok(headers) = decode(text) {
            let encoded = sqlite::json_text(&headers).expect("decoded headers encode");
            assert_eq!(decode(&encoded).ok(), Some(headers), "headers round trip");
        }
    }
    for status_of in [sqlite::status_of, postgres::status_of] {
        if let Ok(status) = status_of(text) {
            assert_eq!(status.as_str(), text, "status round trip");
        }
    }
    if let Some(scheme) = SignatureScheme::parse(text) {
        assert_eq!(scheme.as_str(), text, "signature scheme round trip");
    }
    // `since`/`until` as the admin API and the console take them; whatever
    // they accept, the console and the API print.
    for parse in [crate::admin::events::parse_time, crate::console::parse_time] {
        if let Ok(ms) = parse("since", text) {
            let _ = crate::console::show_time(ms);
            let _ = crate::store::rfc3339(ms);
        }
    }
}

/// Times in ms as stored (any `u64`: a retry "forever" from now, a
/// subscription valid for ever): printed, and what is printed parses back.
fn time_codecs(field: &[u8]) {
    use crate::store::{RFC3339_MAX_MS, rfc3339, sqlite};

    let mut le = [0u8; 8];
    let n = field.len().min(8);
    le[..n].copy_from_slice(&field[..n]);
    let ms = u64::from_le_bytes(le);

    let stored = sqlite::ms(ms);
    assert_eq!(stored, i64::try_from(ms).unwrap_or(i64::MAX), "ms saturate");
    let printed = rfc3339(ms);
    let expected = ms.min(RFC3339_MAX_MS);
    for parse in [crate::admin::events::parse_time, crate::console::parse_time] {
        assert_eq!(
            parse("since", &printed),
            Ok(expected),
            "{printed} parses back"
        );
    }
    let _ = crate::console::show_time(ms);
    let _ = crate::console::show_age(ms);
}

/// A column value from a line: empty is NULL, `#` an integer, `.` a real,
/// `%` a blob, anything else text (lossy UTF-8, as rusqlite would refuse
/// invalid text anyway).
fn column(line: &[u8]) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match line.split_first() {
        None => Value::Null,
        Some((b'#', rest)) => Value::Integer(
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(i64::MIN),
        ),
        Some((b'.', rest)) => Value::Real(
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN),
        ),
        Some((b'%', rest)) => Value::Blob(rest.to_vec()),
        Some(_) => Value::Text(String::from_utf8_lossy(line).into_owned()),
    }
}

/// The SQLite subscription row: decoded from arbitrary column values,
/// encoded as an insert would write it, decoded again: the same.
fn subscription_row_round_trip(fields: &[&[u8]]) {
    use crate::store::sqlite::{SUBSCRIPTION_COLUMNS, subscription_params, subscription_row};

    thread_local! {
        static DB: rusqlite::Connection =
            rusqlite::Connection::open_in_memory().expect("an in-memory database");
    }
    let width = SUBSCRIPTION_COLUMNS.split(',').count();
    let row: Vec<_> = (0..width)
        .map(|i| {
            fields
                .get(i)
                .map_or(rusqlite::types::Value::Null, |f| column(f))
        })
        .collect();
    let select = format!(
        "SELECT {}",
        (1..=width)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    DB.with(|db| {
        let mut stmt = db.prepare_cached(&select).expect("a SELECT of parameters");
        let Ok(decoded) = stmt.query_row(rusqlite::params_from_iter(row), subscription_row) else {
            return;
        };
        let encoded = subscription_params(&decoded).expect("a decoded subscription encodes");
        let again = stmt
            .query_row(rusqlite::params_from_iter(encoded), subscription_row)
            .expect("an encoded subscription decodes");
        assert_eq!(again, decoded, "subscription row round trip");
    });
}
