//! Semantic checks that a schema cannot express: addresses parse, names are
//! usable in URLs, every `to:` names a destination. Pure: no I/O, so start-up,
//! reload and `hookgate check` can all run it. Plugin references are
//! resolved later, by `pipeline::compile`, which needs the plugin files.

use std::net::SocketAddr;

use super::load::{ConfigError, ConfigErrors};
use super::{DestinationKind, GatewayConfig};

/// Smallest plugin memory cap that a Rust component can start in.
const MIN_PLUGIN_MEMORY: u64 = 2 << 20;

/// Longest `destinations.*.timeout`.
pub const MAX_DESTINATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Collects every semantic problem in `config`.
pub fn validate(config: &GatewayConfig) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });

    if config.listen.parse::<SocketAddr>().is_err() {
        err(
            "listen".into(),
            format!(
                "{:?} is not an address:port such as 127.0.0.1:8080",
                config.listen
            ),
        );
    }
    if config.plugins.timeout.0.is_zero() {
        err("plugins.timeout".into(), "must be greater than zero".into());
    }
    if config.plugins.memory.0 < MIN_PLUGIN_MEMORY {
        err(
            "plugins.memory".into(),
            format!("must be at least {}", super::ByteSize(MIN_PLUGIN_MEMORY)),
        );
    }
    if config.delivery.workers == 0 {
        err("delivery.workers".into(), "must be at least 1".into());
    }

    for (name, dest) in &config.destinations {
        let at = |key: &str| format!("destinations.{name}.{key}");
        if !is_name(name) {
            err(format!("destinations.{name}"), name_rule());
        }
        if dest.concurrency == 0 {
            err(at("concurrency"), "must be at least 1".into());
        }
        // An attempt renews its delivery's lease while it runs, so any
        // timeout is safe; a very long one only keeps a hung attempt (and
        // its lease, from every other gateway) for that long.
        if dest.timeout.0.is_zero() || dest.timeout.0 > MAX_DESTINATION_TIMEOUT {
            err(
                at("timeout"),
                format!(
                    "must be between 1ms and {}",
                    humantime::format_duration(MAX_DESTINATION_TIMEOUT)
                ),
            );
        }
        let retry = &dest.retry;
        if retry.schedule.is_some() && retry.exponential.is_some() {
            err(
                at("retry"),
                "give either `schedule` or `exponential`, not both".into(),
            );
        }
        if !(0.0..=1.0).contains(&retry.jitter) {
            err(at("retry.jitter"), "must be between 0 and 1".into());
        }
        if let Some(e) = &retry.exponential
            && e.factor < 1.0
        {
            err(at("retry.exponential.factor"), "must be at least 1".into());
        }
        if dest.kind == DestinationKind::Subscribers {
            if config.subscriptions.is_none() {
                err(
                    at("kind"),
                    "`subscribers` needs a `subscriptions:` section".into(),
                );
            }
            match (&dest.object_type, &config.subscriptions) {
                (None, _) => err(
                    at("object_type"),
                    "is required for a subscribers destination".into(),
                ),
                (Some(t), Some(subs)) if !subs.object_types.contains(t) => err(
                    at("object_type"),
                    format!(
                        "{t:?} is not in subscriptions.object_types ({}): no subscription could match it",
                        subs.object_types.join(", ")
                    ),
                ),
                _ => {}
            }
            if dest.object_id.is_none() {
                err(
                    at("object_id"),
                    "is required for a subscribers destination".into(),
                );
            }
        }
        match (dest.kind, &dest.url) {
            (DestinationKind::Http, None) => {
                err(at("url"), "is required for an http destination".into())
            }
            (DestinationKind::Teams, None) => {
                err(at("url"), "is required for a teams destination".into())
            }
            (_, Some(url)) => match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(u) => err(
                    at("url"),
                    format!("scheme {:?} is not http or https", u.scheme()),
                ),
                Err(e) => err(at("url"), format!("{url:?} is not a URL: {e}")),
            },
            (_, None) => {}
        }
        for (h, v) in &dest.headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                err(
                    at(&format!("headers.{h}")),
                    "is not a valid header name".into(),
                );
            } else if http::HeaderValue::from_str(v).is_err() {
                err(
                    at(&format!("headers.{h}")),
                    "is not a valid header value".into(),
                );
            }
        }
    }

    if let Some(subs) = &config.subscriptions {
        if subs.api_keys.is_empty() {
            err(
                "subscriptions.api_keys".into(),
                "needs at least one tenant".into(),
            );
        }
        for (tenant, key) in &subs.api_keys {
            if key.len() < 16 {
                err(
                    format!("subscriptions.api_keys.{tenant}"),
                    "must be at least 16 characters: it is a credential".into(),
                );
            }
        }
        if subs.object_types.is_empty() {
            err(
                "subscriptions.object_types".into(),
                "needs at least one object type".into(),
            );
        }
        for (i, t) in subs.object_types.iter().enumerate() {
            if t.trim().is_empty() || t.trim() != t {
                err(
                    format!("subscriptions.object_types[{i}]"),
                    "must be a non-empty name without surrounding spaces".into(),
                );
            }
        }
        for (i, cidr) in subs.allow_private_callbacks.iter().enumerate() {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                err(
                    format!("subscriptions.allow_private_callbacks[{i}]"),
                    format!("{cidr:?} is not a CIDR such as 127.0.0.0/8"),
                );
            }
        }
    }

    for (name, route) in &config.routes {
        if !is_name(name) {
            err(format!("routes.{name}"), name_rule());
        }
        for (i, to) in route.to.iter().enumerate() {
            if !config.destinations.contains_key(to) {
                err(
                    format!("routes.{name}.to[{i}]"),
                    format!("no destination named {to:?} under `destinations`"),
                );
            }
        }
        let uses = route
            .verify
            .iter()
            .map(|u| ("verify".to_owned(), u))
            .chain(
                route
                    .transform
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (format!("transform[{i}]"), u)),
            )
            .chain(route.route.iter().map(|u| ("route".to_owned(), u)));
        if route.max_plugin_time.0.is_zero() {
            err(
                format!("routes.{name}.max_plugin_time"),
                "must be greater than zero".into(),
            );
        }
        if route.max_in_flight == 0 {
            err(
                format!("routes.{name}.max_in_flight"),
                "must be at least 1".into(),
            );
        }
        for (stage, u) in uses {
            if !is_name(&u.plugin) {
                err(format!("routes.{name}.{stage}.plugin"), name_rule());
            }
            if u.timeout.is_some_and(|t| t.0.is_zero()) {
                err(
                    format!("routes.{name}.{stage}.timeout"),
                    "must be greater than zero".into(),
                );
            }
            if let Some(h) = &u.http {
                if h.allow.is_empty() {
                    err(
                        format!("routes.{name}.{stage}.http.allow"),
                        "needs at least one host".into(),
                    );
                }
                for (i, cidr) in h.allow_private.iter().enumerate() {
                    if cidr.parse::<ipnet::IpNet>().is_err() {
                        err(
                            format!("routes.{name}.{stage}.http.allow_private[{i}]"),
                            format!("{cidr:?} is not a CIDR such as 127.0.0.0/8"),
                        );
                    }
                }
            }
            if let Some(memory) = u.memory {
                if memory.0 < MIN_PLUGIN_MEMORY {
                    err(
                        format!("routes.{name}.{stage}.memory"),
                        format!("must be at least {}", super::ByteSize(MIN_PLUGIN_MEMORY)),
                    );
                } else if memory > config.plugins.memory {
                    err(
                        format!("routes.{name}.{stage}.memory"),
                        format!(
                            "must not exceed plugins.memory ({}): instances come from a pool of that size",
                            config.plugins.memory
                        ),
                    );
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Route, destination and plugin names appear in URLs and file names.
fn is_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn name_rule() -> String {
    "names use letters, digits, '-', '_' and '.', start with a letter or digit, and are at most 64 characters"
        .into()
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;

    #[test]
    fn unknown_destination_in_to_is_reported() {
        let errs = from_str("routes:\n  a:\n    to: [nowhere]\n", &|_| None)
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "routes.a.to[0]");
    }

    #[test]
    fn http_destination_needs_a_url() {
        let errs = from_str("destinations:\n  d: { timeout: 1s }\n", &|_| None)
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "destinations.d.url");
    }
}
