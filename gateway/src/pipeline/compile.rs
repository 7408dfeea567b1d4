//! Config → [`Snapshot`]: resolves every plugin a route names (a
//! `plugins.dir/NAME.wasm`, else the built-in), compiles it once, checks it
//! implements the stage it is used for, and prepares each `with:` block.
//!
//! Plugins whose bytes did not change since `previous` are reused, so a
//! reload recompiles only what changed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{CompiledDestination, CompiledRoute, PluginStep, Snapshot};
use crate::config::{ConfigError, ConfigErrors, GatewayConfig, PluginUseConfig};
use crate::delivery::plugin_http::{DEFAULT_PLUGIN_HTTP_RESPONSE, PluginHttp};
use crate::plugin::{
    CallContext, LoadedPlugin, PluginConfig, PluginEngine, PluginLimits, PluginSource, Stage,
    builtin,
};

/// Builds a snapshot from a validated config. Slow (compiles wasm): run it
/// off the request path.
pub async fn compile(
    config: &GatewayConfig,
    engine: &PluginEngine,
    previous: Option<&Snapshot>,
    generation: u64,
) -> Result<Snapshot, ConfigErrors> {
    let mut errors = Vec::new();
    let mut plugins: BTreeMap<String, Arc<LoadedPlugin>> = BTreeMap::new();

    let defaults = engine.limits();
    // First use of each plugin, for error paths, and the largest limits any
    // use gives it, for the calls made at load.
    let mut first_use: BTreeMap<&str, String> = BTreeMap::new();
    let mut load_limits: BTreeMap<&str, PluginLimits> = BTreeMap::new();
    for (route, r) in &config.routes {
        for (stage, u) in r.uses() {
            first_use
                .entry(u.plugin.as_str())
                .or_insert_with(|| format!("routes.{route}.{stage}.plugin"));
            let l = use_limits(u, defaults);
            load_limits
                .entry(u.plugin.as_str())
                .and_modify(|m| {
                    m.timeout = m.timeout.max(l.timeout);
                    m.memory = m.memory.max(l.memory);
                })
                .or_insert(l);
        }
    }

    for (name, path) in &first_use {
        match resolve(name, config.plugins.dir.as_deref()) {
            Err(message) => errors.push(ConfigError {
                path: path.clone(),
                message,
            }),
            Ok((bytes, source)) => {
                let hash = hex::encode(Sha256::digest(&bytes));
                let reused = previous
                    .and_then(|p| p.plugins.get(*name))
                    .filter(|p| p.hash() == hash && *p.source() == source)
                    .cloned();
                let loaded = match reused {
                    Some(p) => Ok(p),
                    None => {
                        let limits = load_limits.get(name).copied().unwrap_or(defaults);
                        engine
                            .load_with(name, bytes, source, limits)
                            .await
                            .map(Arc::new)
                    }
                };
                match loaded {
                    Ok(p) => {
                        plugins.insert((*name).to_owned(), p);
                    }
                    Err(e) => errors.push(ConfigError {
                        path: path.clone(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }

    // Every `with:` block is checked by its plugin now, so a typo is a
    // config error with its path, not a 500 at the first webhook.
    for (route, r) in &config.routes {
        for (stage, u) in r.uses() {
            let Some(plugin) = plugins.get(&u.plugin) else {
                continue;
            };
            if let Err(problems) = plugin
                .validate_config_with(&u.with, use_limits(u, defaults))
                .await
            {
                for p in problems {
                    let mut path = format!("routes.{route}.{stage}.with");
                    if !p.path.is_empty() {
                        path.push('.');
                        path.push_str(&p.path);
                    }
                    errors.push(ConfigError {
                        path,
                        message: p.message,
                    });
                }
            }
        }
    }

    let mut destinations: HashMap<String, Arc<CompiledDestination>> = HashMap::new();
    for (name, d) in &config.destinations {
        let mut compiled = CompiledDestination::new(name, d);
        if let Some(tls) = &d.tls {
            // Read on a blocking thread: a file on a slow mount must not
            // hold up the runtime a reload runs on.
            let (tls, base_dir) = (tls.clone(), config.base_dir.clone());
            let kept = previous
                .and_then(|p| p.destinations.get(name))
                .and_then(|p| p.client.clone());
            let built = tokio::task::spawn_blocking(move || {
                crate::delivery::tls::client(&tls, &base_dir, kept.as_ref())
            })
            .await
            .unwrap_or_else(|e| {
                Err(vec![crate::delivery::tls::TlsProblem {
                    key: "ca_file",
                    message: format!("reading the TLS files failed: {e}"),
                }])
            });
            match built {
                Ok(client) => compiled.client = Some(client),
                Err(problems) => errors.extend(problems.into_iter().map(|p| ConfigError {
                    path: format!("destinations.{name}.tls.{}", p.key),
                    message: p.message,
                })),
            }
        }
        destinations.insert(name.clone(), Arc::new(compiled));
    }

    let mut routes = HashMap::new();
    for (name, r) in &config.routes {
        let route_name: Arc<str> = Arc::from(name.as_str());
        let mut step = |stage: Stage, at: String, u: &PluginUseConfig| -> Option<PluginStep> {
            let plugin = plugins.get(&u.plugin)?.clone();
            if !plugin.implements(stage) {
                let has: Vec<String> = plugin.stages().iter().map(|s| s.to_string()).collect();
                errors.push(ConfigError {
                    path: format!("routes.{name}.{at}.plugin"),
                    message: format!(
                        "plugin {:?} does not implement {stage} (it implements: {})",
                        u.plugin,
                        if has.is_empty() {
                            "nothing".to_owned()
                        } else {
                            has.join(", ")
                        }
                    ),
                });
                return None;
            }
            let limits = use_limits(u, defaults);
            let http = match &u.http {
                None => match builtin::default_http_allow(&u.plugin)
                    .filter(|_| *plugin.source() == PluginSource::Builtin)
                {
                    None => None,
                    // The provider's public endpoints only: no private
                    // ranges, the default response cap.
                    Some(hosts) => match PluginHttp::new(
                        hosts.iter().map(|h| (*h).to_owned()).collect(),
                        Vec::new(),
                        DEFAULT_PLUGIN_HTTP_RESPONSE,
                        limits.timeout,
                    ) {
                        Ok(client) => Some(Arc::new(client)),
                        Err(message) => {
                            errors.push(ConfigError {
                                path: format!("routes.{name}.{at}"),
                                message,
                            });
                            return None;
                        }
                    },
                },
                Some(h) => match PluginHttp::new(
                    h.allow.clone(),
                    h.allow_private
                        .iter()
                        .filter_map(|c| c.parse().ok())
                        .collect(),
                    h.max_response_size
                        .map_or(DEFAULT_PLUGIN_HTTP_RESPONSE, |m| m.0 as usize),
                    limits.timeout,
                ) {
                    Ok(client) => Some(Arc::new(client)),
                    Err(message) => {
                        errors.push(ConfigError {
                            path: format!("routes.{name}.{at}.http"),
                            message,
                        });
                        return None;
                    }
                },
            };
            Some(PluginStep {
                ctx: CallContext {
                    plugin: plugin.name().clone(),
                    route: route_name.clone(),
                    config: Arc::new(if config.plugins.reuse_instances {
                        PluginConfig::new(Some(&u.with))
                    } else {
                        PluginConfig::single_use(Some(&u.with))
                    }),
                    limits,
                    http,
                },
                plugin,
            })
        };
        let verify = r
            .verify
            .as_ref()
            .and_then(|u| step(Stage::Verify, "verify".into(), u));
        let transform: Vec<PluginStep> = r
            .transform
            .iter()
            .enumerate()
            .filter_map(|(i, u)| step(Stage::Transform, format!("transform[{i}]"), u))
            .collect();
        let route = r
            .route
            .as_ref()
            .and_then(|u| step(Stage::Route, "route".into(), u));
        routes.insert(
            name.clone(),
            Arc::new(CompiledRoute {
                name: route_name,
                verify,
                transform,
                route,
                to: r.to.clone(),
                max_body_size: r.max_body_size.unwrap_or(config.limits.max_body_size).0,
                in_flight: previous
                    .and_then(|p| p.routes.get(name))
                    .filter(|p| p.max_in_flight == r.max_in_flight)
                    .map(|p| p.in_flight.clone())
                    .unwrap_or_else(|| Arc::new(Semaphore::new(r.max_in_flight))),
                max_in_flight: r.max_in_flight,
                max_plugin_time: r.max_plugin_time.0,
                relay: r.relay.clone(),
                keep_headers: r
                    .keep_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            }),
        );
    }

    let subscriptions = match &config.subscriptions {
        None => None,
        Some(c) => match crate::subscriptions::SubscriptionsRuntime::compile(c, &config.base_dir) {
            Ok(rt) => Some(Arc::new(rt)),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        },
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Snapshot {
        subscriptions,
        generation,
        config: Arc::new(config.clone()),
        routes,
        destinations,
        plugins,
    })
}

/// The limits of one use of a plugin: its `timeout:`/`memory:`, else the
/// defaults.
fn use_limits(u: &PluginUseConfig, defaults: PluginLimits) -> PluginLimits {
    PluginLimits {
        timeout: u.timeout.map_or(defaults.timeout, |t| t.0),
        memory: u.memory.map_or(defaults.memory, |m| m.0 as usize),
    }
}

/// `dir/NAME.wasm` if present, else the built-in `NAME`.
fn resolve(name: &str, dir: Option<&Path>) -> Result<(Vec<u8>, PluginSource), String> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.wasm"));
        match std::fs::read(&path) {
            Ok(bytes) => return Ok((bytes, PluginSource::File(path.display().to_string()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    match builtin::get(name) {
        Some(bytes) => Ok((bytes.to_vec(), PluginSource::Builtin)),
        None => Err(format!(
            "no plugin named {name:?}: not built in{}",
            dir.map(|d| format!(" and no {name}.wasm in {}", d.display()))
                .unwrap_or_default()
        )),
    }
}
