//! The YAML configuration: plain serde structs (this file), loading with
//! `${VAR}` interpolation and JSON-Schema validation ([`load`]), and pure
//! semantic checks ([`validate`]). Every error carries the path of the key
//! it is about.
//!
//! Deliberately not here: anything that does I/O beyond reading the file and
//! the environment (compiling plugins is `pipeline::compile`'s job), so
//! `hookgate check`, start-up and reload share one path.
//!
//! The key names `listen`, `data_dir`, `admin.token`, `plugins.dir`,
//! `destinations.*.{url,headers,timeout}` and
//! `routes.*.{verify,transform,route,to}` with `{plugin, with}` are a
//! contract: tools outside this repo write them.

mod load;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigErrors, from_path, from_str, json_schema, typed_from_path};
pub use units::{ByteSize, Duration, Rate};
pub use validate::{plugin_limits, validate};

/// Largest request body accepted unless a route says otherwise. Webhook
/// payloads are small (GitHub caps at 25 MB but typical events are a few KB);
/// 1 MiB bounds memory per request without refusing real traffic.
pub const DEFAULT_MAX_BODY_SIZE: ByteSize = ByteSize(1 << 20);

/// How long a destination may take to answer unless configured.
pub const DEFAULT_DESTINATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole gateway configuration (`hookgate.yaml`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookgate configuration")]
pub struct GatewayConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:8080`. Changing it
    /// needs a restart.
    #[serde(default = "default_listen")]
    pub listen: String,

    /// Directory for the gateway's own data (event store).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,

    /// The admin API under `/admin`.
    #[serde(default)]
    pub admin: AdminConfig,

    /// Where plugins come from and what each call may use.
    #[serde(default)]
    pub plugins: PluginsConfig,

    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,

    /// Logging.
    #[serde(default)]
    pub log: LogConfig,

    /// Delivery engine settings.
    #[serde(default)]
    pub delivery: DeliveryConfig,

    /// The event store (durability, deduplication, retention).
    #[serde(default)]
    pub store: StoreConfig,

    /// Named places messages are delivered to.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,

    /// Webhook routes; route `NAME` is served at `/hooks/NAME`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,

    /// The sending side: a subscription API (`/v1/webhook`) and event
    /// publishing (`/v1/events`). Not served when absent.
    #[serde(default)]
    pub subscriptions: Option<SubscriptionsConfig>,

    /// Directory of the config file; relative paths in it (event type
    /// schemas) are resolved against it.
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

/// The subscription API. The key names are a contract.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// Tenant name → API key, presented in the `accessToken` header. Each
    /// tenant sees and changes only its own subscriptions.
    pub api_keys: BTreeMap<String, String>,

    /// Networks (CIDRs) callback URLs may reach although they are private,
    /// loopback or link-local. Everything else of that kind is refused
    /// (SSRF), and plain `http://` is allowed only here.
    #[serde(default)]
    pub allow_private_callbacks: Vec<String>,

    /// Retry policy for deliveries to subscribers.
    #[serde(default)]
    pub retry: RetryConfig,

    /// A subscription failing without a single success for this long is
    /// set inactive until re-enabled with `PUT {"active": true}`.
    #[serde(default = "default_disable_after")]
    pub disable_after: Duration,

    /// How long a callback URL may take to echo the validation token.
    #[serde(default = "default_validation_timeout")]
    pub validation_timeout: Duration,

    /// Timeout of each delivery attempt to a subscriber.
    #[serde(default = "default_destination_timeout")]
    pub timeout: Duration,

    /// Optional catalogue of event types. When present, subscribing to an
    /// undeclared type is refused and published `data` must satisfy the
    /// type's JSON Schema.
    #[serde(default)]
    pub event_types: Option<BTreeMap<String, EventTypeConfig>>,

    /// The object types subscriptions and published events may name
    /// (`objectType`). Default: Kaizala's `Group`, `Action` and
    /// `ActionPackage`.
    #[serde(default = "default_object_types")]
    pub object_types: Vec<String>,

    /// After `POST /v1/webhook/{id}/rotate-secret`, the previous secret
    /// keeps signing next to the new one for this long, so a subscriber can
    /// switch without missing a delivery.
    #[serde(default = "default_secret_rotation_overlap")]
    pub secret_rotation_overlap: Duration,
}

fn default_object_types() -> Vec<String> {
    SubscriptionsConfig::default_object_types()
}

impl SubscriptionsConfig {
    /// Kaizala's object types: the default of `object_types`.
    pub fn default_object_types() -> Vec<String> {
        ["Group", "Action", "ActionPackage"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

fn default_secret_rotation_overlap() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}

fn default_disable_after() -> Duration {
    Duration::from_secs(2 * 86_400)
}

fn default_validation_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One declared event type.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeConfig {
    /// What the event means, for subscribers.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema file (relative to the config file) that `data` must
    /// satisfy.
    #[serde(default)]
    pub schema: Option<PathBuf>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// The admin API.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin`, at least 32 bytes. Without one the admin
    /// API is not served.
    #[serde(default)]
    pub token: Option<String>,

    /// A second address (`127.0.0.1:9090`) for `/admin` and `/metrics`.
    /// When set, neither is served on `listen`, so the public port shows no
    /// route names or admin surface. Changing it needs a restart.
    #[serde(default)]
    pub listen: Option<String>,
}

/// Plugin loading and per-call limits.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `NAME.wasm` files; each is plugin `NAME` and overrides a
    /// built-in plugin of the same name.
    #[serde(default)]
    pub dir: Option<PathBuf>,

    /// Wall-clock deadline for one plugin call. The calls made when a
    /// plugin loads (`describe`, `validate-config`) get at least 5 s.
    #[serde(default = "default_plugin_timeout")]
    pub timeout: Duration,

    /// Linear memory cap for one plugin instance.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,

    /// Reload when a file in `dir` or the config file changes. Without
    /// watching, reload with SIGHUP or `POST /admin/reload`.
    #[serde(default = "default_plugin_watch")]
    pub watch: bool,

    /// Keep a few warm instances per use of a plugin (a route's step)
    /// between calls, each for up to 1,000 calls: a call is then a function
    /// call, not an instantiation, and a plugin parses its `with:` block
    /// once. Guest state outlives a webhook only within that use. `false`
    /// gives every call a fresh instance, at about 10 µs more per call.
    #[serde(default = "default_reuse_instances")]
    pub reuse_instances: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            timeout: default_plugin_timeout(),
            memory: default_plugin_memory(),
            watch: default_plugin_watch(),
            reuse_instances: default_reuse_instances(),
        }
    }
}

fn default_reuse_instances() -> bool {
    true
}

fn default_plugin_watch() -> bool {
    true
}

fn default_plugin_timeout() -> Duration {
    Duration(crate::plugin::DEFAULT_PLUGIN_TIMEOUT)
}

fn default_plugin_memory() -> ByteSize {
    ByteSize(crate::plugin::DEFAULT_PLUGIN_MEMORY as u64)
}

/// Limits at the door: how long a client may take to send a request, how
/// many connections and requests are served at once, and how large a
/// request may be. Every limit has a default that is safe on the public
/// internet; all but `max_body_size` apply only at start.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted request body; larger requests get 413.
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,

    /// A request's head (request line and headers) must arrive within this
    /// long of the connection opening, or of its first byte on a kept-alive
    /// connection; otherwise the connection is closed (slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,

    /// Slack for reading a body: a body that has taken longer than this
    /// plus its size divided by `min_body_rate` is answered 408 and the
    /// connection closed. A body that stalls is cut off after this long.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: Duration,

    /// Bytes per second a body must keep up on average once
    /// `body_read_timeout` is used up. `0`: the whole body must arrive
    /// within `body_read_timeout`.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: ByteSize,

    /// A kept-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,

    /// Connections served at once. A connection over the cap is answered
    /// 503 with `Retry-After` and closed at once, never left waiting.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,

    /// Requests handled at once (`/healthz` is not counted). A request
    /// over the cap is answered 503 with `Retry-After`.
    #[serde(default = "default_max_requests_in_flight")]
    pub max_requests_in_flight: usize,

    /// Most header fields in one request; more get 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,

    /// Largest request head (request line and headers) in bytes; at least
    /// 8KiB. A larger head gets 431.
    #[serde(default = "default_max_header_size")]
    pub max_header_size: ByteSize,

    /// On SIGTERM/SIGINT: how long requests in flight may take to finish
    /// before their connections are closed.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            min_body_rate: default_min_body_rate(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_requests_in_flight: default_max_requests_in_flight(),
            max_headers: default_max_headers(),
            max_header_size: default_max_header_size(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_max_body_size() -> ByteSize {
    DEFAULT_MAX_BODY_SIZE
}

/// Providers send a whole webhook head in one packet; 10 s is generous
/// for any real client and short enough that idle sockets held by a
/// slowloris client do not pile up.
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(10)
}

/// 1 KiB/s: a 1 MiB body may take about 17 minutes, far slower than any
/// real sender, while a client dripping a byte now and then is cut off.
fn default_min_body_rate() -> ByteSize {
    ByteSize(1 << 10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Each idle connection costs a file descriptor and a few KiB; serve
/// raises its soft descriptor limit to the hard one to reach this.
fn default_max_connections() -> usize {
    4096
}

fn default_max_requests_in_flight() -> usize {
    1024
}

/// hyper's own default.
fn default_max_headers() -> usize {
    100
}

fn default_max_header_size() -> ByteSize {
    ByteSize(32 << 10)
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Log output.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json` lines. `RUST_LOG` sets the levels.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Delivery engine settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Deliveries in flight at once, across all destinations (each is also
    /// bounded by its own `concurrency`).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long shutdown waits for delivery attempts already in flight.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// How long a claim reserves a delivery for this gateway. Attempts in
    /// flight renew it (every third of it), so it only runs out when a
    /// gateway died or lost its database: then another gateway on the
    /// same PostgreSQL store (or this one after a restart) sends the
    /// delivery after this long. Shorter means faster take-over after a
    /// crash and more renewals.
    #[serde(default = "default_lease")]
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            workers: default_workers(),
            shutdown_grace: default_shutdown_grace(),
            lease: default_lease(),
        }
    }
}

fn default_lease() -> Duration {
    Duration(crate::delivery::dispatcher::LEASE)
}

fn default_dead_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// Where accepted events live until they are delivered.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (default): a durable store in `data_dir`; providers get
    /// their 2xx only after the event is on disk. `postgres`: a shared
    /// PostgreSQL database (`url`), so several gateways serve one queue.
    /// `memory`: nothing survives a restart (tests, benchmarks, throwaway
    /// set-ups).
    #[serde(default)]
    pub engine: StoreEngine,
    /// For `engine: postgres`: the database, as
    /// `postgres://user:password@host:port/database` (key=value connection
    /// strings work too). Use `${VAR}` for the password. TLS as in libpq:
    /// `?sslmode=verify-full&sslrootcert=/path/ca.pem` (`disable`,
    /// `prefer` (default), `require`, `verify-ca`, `verify-full`;
    /// `sslrootcert=system` for the built-in roots; `sslcert` and `sslkey`
    /// for a client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `engine: postgres`: connections this gateway keeps to the
    /// database for its work (three more are opened: two that renew
    /// leases, one that listens for new work).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Delivered events and their attempts are deleted after this long.
    #[serde(default = "default_retention")]
    pub retention: Duration,
    /// Dead letters (events whose deliveries gave up) are deleted after
    /// this long: long enough to notice and replay them.
    #[serde(default = "default_dead_retention")]
    pub dead_retention: Duration,
    /// A webhook whose provider delivery id (`X-GitHub-Delivery`, a Stripe
    /// event id, `webhook-id`, ...) was already accepted on the same route
    /// within this window is answered 2xx and not delivered again.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            engine: StoreEngine::default(),
            url: None,
            pool_size: default_pool_size(),
            retention: default_retention(),
            dead_retention: default_dead_retention(),
            dedup_window: default_dedup_window(),
        }
    }
}

fn default_pool_size() -> usize {
    // Ingest, claims, records and console reads share it; PostgreSQL's
    // default max_connections (100) leaves room for a few gateways.
    16
}

fn default_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_dedup_window() -> Duration {
    Duration::from_secs(86_400)
}

/// Storage engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// SQLite in `data_dir` (WAL, fsync on commit, group commit).
    #[default]
    Sqlite,
    /// In memory only: no durability.
    Memory,
    /// PostgreSQL at `store.url`, shared by every gateway pointed at it.
    Postgres,
}

fn default_workers() -> usize {
    // Each destination is bounded by its own `concurrency`; this bound is
    // for the gateway as a whole, and leaves room for the healthy
    // destinations when one hangs.
    256
}

/// A destination: where messages are sent.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `http` (default) POSTs to `url`; `log` only logs what it would send,
    /// for trying routes out.
    #[serde(default)]
    pub kind: DestinationKind,

    /// For `kind: subscribers`: the object type published events carry.
    #[serde(default)]
    pub object_type: Option<String>,

    /// For `kind: subscribers`: the object id, or a JSON pointer into the
    /// message body when it starts with `/` (e.g. `/repository/full_name`).
    #[serde(default)]
    pub object_id: Option<String>,

    /// For `kind: subscribers`: the tenant whose subscriptions receive the
    /// messages (a name under `subscriptions.api_keys`). Required: without
    /// it any tenant could subscribe to a route's events.
    #[serde(default)]
    pub tenant: Option<String>,

    /// Target URL (http or https); required for `kind: http`.
    #[serde(default)]
    pub url: Option<String>,

    /// Extra headers sent with every delivery (e.g. an API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,

    /// How long the destination may take to answer.
    #[serde(default = "default_destination_timeout")]
    pub timeout: Duration,

    /// Deliveries in flight to this destination at once.
    #[serde(default = "default_destination_concurrency")]
    pub concurrency: usize,

    /// For `kind: http` and `teams`: at most this many request starts to
    /// this destination (`10/s`, `600/min`, `100/h`), for receivers that
    /// throttle. An attempt waits at most a second for its turn; a
    /// delivery further back is postponed without counting an attempt, so
    /// a paced destination holds no capacity another could use. Gateways
    /// sharing a PostgreSQL store keep one schedule per URL between them.
    /// A `teams` destination keeps to Teams' four a second whatever this
    /// says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,

    /// Hold this destination's deliveries without sending them (the
    /// receiver is down for maintenance, or refuses everything until a fix
    /// ships): they are stored and wait, with no attempt counted and no
    /// retry used, and go out as soon as a reload removes the flag.
    /// Webhooks are still accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// When to try again after a failed attempt.
    #[serde(default)]
    pub retry: RetryConfig,

    /// For `kind: http`: sign every attempt, so that the destination can
    /// check that a delivery comes from this gateway and was not altered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningConfig>,

    /// For an `https` http destination: trust a private CA, or present a
    /// client certificate (mutual TLS). Without it the destination's
    /// certificate must lead to one of the public web's roots (Mozilla's
    /// list, built in), and no client certificate is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DestinationTlsConfig>,
}

/// TLS to one destination beyond the defaults. Files are PEM, relative
/// paths are read from the config file's directory, and they are read
/// again at every reload (a renewed certificate takes effect at the
/// reload after it is written).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationTlsConfig {
    /// CA certificates (one or more, PEM) that the destination's
    /// certificate may lead to, besides the public roots: an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Whether the public web's roots are trusted too (default true).
    /// `false` trusts `ca_file` alone, so a certificate from any public CA
    /// for the destination's name is refused.
    #[serde(default = "default_true")]
    pub public_roots: bool,
    /// The certificate this gateway presents (PEM, the leaf first, then
    /// any intermediates), for a destination that asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file` (PEM: PKCS#8, PKCS#1 or
    /// SEC1). Never logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// How a destination's deliveries are signed. Each attempt is signed when
/// it is sent (a retry gets a fresh timestamp); `webhook-id` is the same on
/// every attempt of a message, for the receiver's deduplication.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// `standard-webhooks` (default): `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
    /// which any Standard Webhooks library verifies. `ms-signature`
    /// (ASP.NET WebHooks): `ms-signature: sha256=<hex HMAC-SHA256 of the
    /// body>`.
    #[serde(default)]
    pub scheme: SigningScheme,
    /// The signing secret: for `standard-webhooks`, `whsec_` and the base64
    /// of 24 to 64 random bytes (`openssl rand -base64 32`); for
    /// `ms-signature`, 32 to 64 printable characters. Use `${VAR}`.
    pub secret: String,
    /// While rotating: the secret the destination knows now. Both sign
    /// (two `v1,` signatures, or two `ms-signature` fields), so the
    /// destination can switch to `secret` at its own pace; remove it when
    /// it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
}

/// Signature schemes of a destination's deliveries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SigningScheme {
    /// Standard Webhooks.
    #[default]
    StandardWebhooks,
    /// ASP.NET WebHooks' `ms-signature`.
    MsSignature,
}

impl From<SigningScheme> for crate::store::SignatureScheme {
    fn from(s: SigningScheme) -> Self {
        match s {
            SigningScheme::StandardWebhooks => crate::store::SignatureScheme::StandardWebhooks,
            SigningScheme::MsSignature => crate::store::SignatureScheme::MsSignature,
        }
    }
}

/// Retry policy: either an explicit `schedule` of waits, or `exponential`
/// parameters. Default: 6 retries over about 1.7 days (1m, 10m, 1h, 4h, 12h,
/// 24h), like Kaizala's "6 retries, exponential, within 2 days". Exhausted
/// deliveries become dead letters, which can be replayed.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Waits before retry 1, 2, ... (`[5s, 5m, 30m, 2h]`); its length is
    /// the number of retries.
    #[serde(default)]
    pub schedule: Option<Vec<Duration>>,
    /// Exponential backoff instead of a schedule.
    #[serde(default)]
    pub exponential: Option<ExponentialConfig>,
    /// Random spread applied to each wait, as a fraction (0.1 = ±10%), so
    /// retries to one destination do not arrive in lockstep.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Multiplies every wait (before jitter), default 1. For tests and
    /// fire drills only: `0.0001` runs the default schedule (about 41 h)
    /// in about 15 s, so what happens when retries run out can be watched.
    #[serde(default = "default_scale")]
    pub scale: f64,
}

// Not derived: a derived Default would give `jitter: 0` whenever `retry:`
// is omitted, while the field's own default (and the README) say 0.1.
impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            schedule: None,
            exponential: None,
            jitter: default_jitter(),
            scale: default_scale(),
        }
    }
}

fn default_jitter() -> f64 {
    0.1
}

fn default_scale() -> f64 {
    1.0
}

/// Exponential backoff: wait `initial`, then `initial * factor`, ...,
/// capped at `max_delay`, for `retries` retries.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExponentialConfig {
    /// First wait.
    pub initial: Duration,
    /// Growth per retry.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Longest single wait.
    #[serde(default)]
    pub max_delay: Option<Duration>,
    /// Number of retries after the first attempt.
    pub retries: u32,
}

fn default_factor() -> f64 {
    2.0
}

fn default_destination_timeout() -> Duration {
    DEFAULT_DESTINATION_TIMEOUT
}

fn default_destination_concurrency() -> usize {
    32
}

/// Kinds of destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// POST over HTTP(S).
    #[default]
    Http,
    /// Write the message to the log instead of sending it.
    Log,
    /// Publish the message to the matching subscriptions of the
    /// subscription API (`subscriptions:`), signed and retried per
    /// subscriber.
    Subscribers,
    /// POST to a Microsoft Teams incoming webhook or Workflows URL: like
    /// `http`, but a message over Teams' 28 KB limit is dead-lettered
    /// without being sent, a `200` with an error text (legacy connectors)
    /// counts as a failure, and requests are spaced 250 ms apart (Teams
    /// throttles more than four a second per webhook).
    Teams,
}

/// One webhook route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The verifier: authenticates requests or answers handshakes. Without
    /// one, every request is accepted.
    #[serde(default)]
    pub verify: Option<PluginUseConfig>,

    /// Transforms applied in order; each may turn one message into several
    /// or drop it.
    #[serde(default)]
    pub transform: Vec<PluginUseConfig>,

    /// The router: picks destinations per message. Without one, `to`.
    #[serde(default)]
    pub route: Option<PluginUseConfig>,

    /// Default destinations (names under `destinations`).
    #[serde(default)]
    pub to: Vec<String>,

    /// Largest accepted body for this route (overrides
    /// `limits.max_body_size`).
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,

    /// Requests of this route that may run plugins at the same time; more
    /// are answered `503` with `Retry-After` at once. The cap keeps one
    /// route's slow or hanging plugins from taking every plugin instance
    /// the gateway has, so other routes keep serving.
    #[serde(default = "default_route_in_flight")]
    pub max_in_flight: usize,

    /// Credential headers to forward and store anyway (names, any case).
    /// By default the provider's signature and token headers, the headers
    /// the verifier says it consumed, `authorization` and cookies never
    /// leave the gateway; the admin API shows them redacted even when kept.
    #[serde(default)]
    pub keep_headers: Vec<String>,

    /// Plugin time one request of this route may use across all its plugin
    /// calls; each call's deadline is cut to what is left.
    #[serde(default = "default_request_plugin_time")]
    pub max_plugin_time: Duration,

    /// Relay (Microsoft Teams outgoing webhooks): every message also goes
    /// to this destination, the request waits up to `reply_timeout` for
    /// that delivery's first attempt, and the destination's reply (text or
    /// card) is the answer. When the destination is late, fails, or says
    /// nothing, the verifier's own reply is the fallback answer (for
    /// `teams-outgoing`, its `reply`, `card` or `card_template`), and the
    /// message is still delivered durably, with retries.
    #[serde(default)]
    pub relay: Option<RelayConfig>,
}

/// Where a route relays its messages and how long a reply may take.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The destination (an `http` destination under `destinations`) whose
    /// reply is returned.
    pub to: String,

    /// How long the provider waits for the destination's reply, counted
    /// from the request's arrival; at most 10s (Teams drops an outgoing
    /// webhook's reply after ten seconds).
    #[serde(default = "default_reply_timeout")]
    pub reply_timeout: Duration,
}

fn default_reply_timeout() -> Duration {
    Duration(DEFAULT_REPLY_TIMEOUT)
}

/// Default relay `reply_timeout`: half of what Teams waits, leaving room
/// for the network both ways.
pub const DEFAULT_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest relay `reply_timeout`: Teams gives an outgoing webhook ten
/// seconds to answer.
pub const MAX_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn default_request_plugin_time() -> Duration {
    Duration(crate::plugin::DEFAULT_REQUEST_PLUGIN_TIME)
}

fn default_route_in_flight() -> usize {
    crate::plugin::DEFAULT_ROUTE_IN_FLIGHT
}

/// A plugin used at one stage of a route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginUseConfig {
    /// Plugin name: a built-in, or `NAME` for `plugins.dir/NAME.wasm`.
    pub plugin: String,

    /// Plugin settings, passed to the plugin as JSON (`${VAR}` already
    /// replaced).
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,

    /// Wall-clock deadline for this plugin's calls here (overrides
    /// `plugins.timeout`).
    #[serde(default)]
    pub timeout: Option<Duration>,

    /// Memory cap for this plugin's instances here (overrides
    /// `plugins.memory`, up to 256MiB or `plugins.memory` when larger:
    /// instances come from a pool of that size). Plugins with an embedded
    /// JavaScript or Python runtime start with 9–13 MiB and need more for
    /// large bodies.
    #[serde(default)]
    pub memory: Option<ByteSize>,

    /// Outbound HTTP for this plugin here (the WIT `http` import). Off
    /// without it.
    #[serde(default)]
    pub http: Option<PluginHttpConfig>,
}

/// What a plugin may reach over HTTP.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginHttpConfig {
    /// Host names (or IP literals) the plugin may call; any other host is
    /// refused.
    pub allow: Vec<String>,

    /// Private, loopback or link-local ranges (CIDRs) the allowed hosts may
    /// resolve to; refused otherwise, as for subscriber callbacks. Plain
    /// `http` is accepted only for these.
    #[serde(default)]
    pub allow_private: Vec<String>,

    /// Largest response body the plugin may read.
    #[serde(default)]
    pub max_response_size: Option<ByteSize>,
}

impl GatewayConfig {
    /// Every plugin name the routes use.
    pub fn plugin_names(&self) -> std::collections::BTreeSet<&str> {
        self.routes
            .values()
            .flat_map(|r| r.uses().map(|(_, u)| u.plugin.as_str()))
            .collect()
    }
}

impl RouteConfig {
    /// The route's plugin uses in the order a request meets them, each
    /// with its key under the route (`verify`, `transform[0]`, `route`).
    pub fn uses(&self) -> impl Iterator<Item = (String, &PluginUseConfig)> {
        self.verify
            .iter()
            .map(|u| ("verify".to_owned(), u))
            .chain(
                self.transform
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (format!("transform[{i}]"), u)),
            )
            .chain(self.route.iter().map(|u| ("route".to_owned(), u)))
    }
}
