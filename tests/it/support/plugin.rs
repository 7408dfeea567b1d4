//! Calling a plugin in-process: the real wasm on the real host, without an
//! HTTP round trip, for tests of a plugin's own behaviour.
//!
//! Plugin calls are async (they run on fibers); this harness drives them
//! from plain `#[test]`s on a runtime of its own, and from
//! `#[tokio::test(flavor = "multi_thread")]` tests on theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hookgate::plugin::{
    CallContext, InboundRequest, LoadedPlugin, Message, PluginConfig, PluginEngine, PluginError,
    PluginLimits, PluginSource, Verdict, builtin,
};

/// One engine for the whole test binary: engines are heavy (a pooling
/// allocator and a ticker thread each).
fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PluginEngine::new(PluginLimits::default()).expect("plugin engine"))
}

/// Runs `f` to completion from synchronous test code.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(f)),
        Err(_) => RUNTIME
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("test runtime")
            })
            .block_on(f),
    }
}

/// Compiled plugins by name, so each is compiled once per test binary.
fn cache() -> &'static Mutex<HashMap<String, Arc<LoadedPlugin>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<LoadedPlugin>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A plugin with a `with:` block, ready to call.
pub struct TestPlugin {
    plugin: Arc<LoadedPlugin>,
    ctx: CallContext,
}

impl TestPlugin {
    /// Built-in plugin `name` configured with `with`.
    pub fn builtin(name: &str, with: serde_json::Value) -> Self {
        let plugin = {
            let key = format!("builtin:{name}");
            let mut cache = cache().lock().unwrap();
            cache
                .entry(key)
                .or_insert_with(|| {
                    let bytes = builtin::get(name)
                        .unwrap_or_else(|| panic!("no built-in plugin named {name:?}"));
                    Arc::new(
                        block_on(engine().load(name, bytes.to_vec(), PluginSource::Builtin))
                            .unwrap_or_else(|e| panic!("loading {name}: {e}")),
                    )
                })
                .clone()
        };
        Self::with_plugin(plugin, with)
    }

    /// Test component `name` (under tests/components) configured with `with`.
    pub fn component(name: &str, with: serde_json::Value) -> Self {
        let plugin = {
            let key = format!("component:{name}");
            let mut cache = cache().lock().unwrap();
            cache
                .entry(key)
                .or_insert_with(|| {
                    let bytes = super::test_component(name);
                    Arc::new(
                        block_on(engine().load(name, bytes, PluginSource::File(name.into())))
                            .unwrap_or_else(|e| panic!("loading {name}: {e}")),
                    )
                })
                .clone()
        };
        Self::with_plugin(plugin, with)
    }

    fn with_plugin(plugin: Arc<LoadedPlugin>, with: serde_json::Value) -> Self {
        let map = match with {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => Default::default(),
            other => panic!("`with` must be a JSON object, not {other}"),
        };
        TestPlugin {
            ctx: CallContext {
                plugin: plugin.name().clone(),
                route: Arc::from("test"),
                config: Arc::new(PluginConfig::new(Some(&map))),
                // These are tests of what a plugin does, not of its deadline
                // (tests/it/sandbox.rs runs the real binary for that): a
                // generous deadline, because CI's 2 cores under the whole
                // suite once starved a 100 ms transform past the default.
                limits: PluginLimits {
                    timeout: Duration::from_secs(10),
                    ..PluginLimits::default()
                },
                http: None,
            },
            plugin,
        }
    }

    /// Warm instances this use keeps between calls.
    pub fn warm_instances(&self) -> usize {
        self.ctx.config.warm_instances()
    }

    /// The compiled plugin (stages, version).
    pub fn loaded(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Runs the verifier.
    pub fn verify(&self, req: &TestRequest) -> Result<Verdict, PluginError> {
        block_on(self.plugin.verify(&self.ctx, &req.to_inbound()))
    }

    /// Runs the transformer.
    pub fn transform(&self, msg: Message) -> Result<Vec<Message>, PluginError> {
        block_on(self.plugin.transform(&self.ctx, &msg))
    }

    /// Runs the router with `defaults` as the route's `to:` list.
    pub fn route(&self, msg: Message, defaults: &[&str]) -> Result<Vec<String>, PluginError> {
        let defaults: Vec<String> = defaults.iter().map(|s| (*s).to_owned()).collect();
        block_on(self.plugin.route(&self.ctx, &msg, &defaults))
    }
}

/// A request as a provider would send it.
#[derive(Clone, Debug)]
pub struct TestRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    received_at_ms: u64,
}

impl TestRequest {
    /// A POST with `body`, received now.
    pub fn post(body: impl Into<Vec<u8>>) -> Self {
        TestRequest {
            method: "POST".into(),
            path: "/hooks/test".into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.into(),
            received_at_ms: hookgate::clock::now_ms(),
        }
    }

    /// A GET with no body, received now.
    pub fn get() -> Self {
        TestRequest {
            method: "GET".into(),
            ..TestRequest::post(Vec::new())
        }
    }

    /// Any method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_ascii_uppercase();
        self
    }

    /// Adds a header (name lowercased, as the gateway does).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Sets the raw query string (without `?`).
    pub fn query(mut self, query: &str) -> Self {
        self.query = query.to_owned();
        self
    }

    /// Sets the request path.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Sets the arrival time (ms since the epoch).
    pub fn at_ms(mut self, ms: u64) -> Self {
        self.received_at_ms = ms;
        self
    }

    /// The request as the gateway hands it to a verifier.
    pub fn to_inbound(&self) -> InboundRequest {
        InboundRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(self.body.clone()),
            route: "test".into(),
            received_at_ms: self.received_at_ms,
        }
    }
}
