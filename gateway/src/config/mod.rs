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

pub use load::{ConfigError, ConfigErrors, from_path, from_str, json_schema};
pub use units::{ByteSize, Duration};
pub use validate::validate;

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

    /// Named places messages are delivered to.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,

    /// Webhook routes; route `NAME` is served at `/hooks/NAME`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
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
    /// Bearer token for `/admin`. Without one the admin API is not served.
    #[serde(default)]
    pub token: Option<String>,
}

/// Plugin loading and per-call limits.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `NAME.wasm` files; each is plugin `NAME` and overrides a
    /// built-in plugin of the same name.
    #[serde(default)]
    pub dir: Option<PathBuf>,

    /// Wall-clock deadline for one plugin call.
    #[serde(default = "default_plugin_timeout")]
    pub timeout: Duration,

    /// Linear memory cap for one plugin instance.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,

    /// Reload when a file in `dir` or the config file changes. Without
    /// watching, reload with SIGHUP or `POST /admin/reload`.
    #[serde(default = "default_plugin_watch")]
    pub watch: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            timeout: default_plugin_timeout(),
            memory: default_plugin_memory(),
            watch: default_plugin_watch(),
        }
    }
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

/// Request limits.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted request body; larger requests get 413.
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

fn default_max_body_size() -> ByteSize {
    DEFAULT_MAX_BODY_SIZE
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
    /// Messages waiting for delivery before new webhooks are answered 503.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Deliveries in flight at once, across all destinations.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue_capacity: default_queue_capacity(),
            workers: default_workers(),
        }
    }
}

fn default_queue_capacity() -> usize {
    10_000
}

fn default_workers() -> usize {
    64
}

/// A destination: where messages are sent.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `http` (default) POSTs to `url`; `log` only logs what it would send,
    /// for trying routes out.
    #[serde(default)]
    pub kind: DestinationKind,

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
}

impl GatewayConfig {
    /// Every plugin name the routes use.
    pub fn plugin_names(&self) -> std::collections::BTreeSet<&str> {
        self.routes
            .values()
            .flat_map(|r| {
                r.verify
                    .iter()
                    .chain(r.transform.iter())
                    .chain(r.route.iter())
                    .map(|u| u.plugin.as_str())
            })
            .collect()
    }
}
