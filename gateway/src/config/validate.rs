//! Semantic checks that a schema cannot express: addresses parse, names are
//! usable in URLs, every `to:` names a destination. Pure: no I/O, so start-up,
//! reload and `hookgate check` can all run it. Plugin references are
//! resolved later, by `pipeline::compile`, which needs the plugin files.

use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use super::load::{ConfigError, ConfigErrors};
use super::{ByteSize, DestinationKind, Duration, GatewayConfig, RetryConfig};

/// Smallest plugin memory cap that a Rust component can start in.
const MIN_PLUGIN_MEMORY: u64 = 2 << 20;

/// wasm32 linear memory cannot grow past 4 GiB.
const MAX_PLUGIN_MEMORY: u64 = 4 << 30;

/// The range of a plugin call's deadline (`plugins.timeout` and each use's
/// own) and of a request's plugin time (`routes.*.max_plugin_time`).
const MIN_PLUGIN_TIMEOUT: StdDuration = StdDuration::from_millis(1);
const MAX_PLUGIN_TIMEOUT: StdDuration = StdDuration::from_secs(5 * 60);

/// An admin token is a credential: 32 bytes is what `openssl rand -hex 16`
/// prints, and too long to guess.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

const MINUTE: StdDuration = StdDuration::from_secs(60);
const HOUR: StdDuration = StdDuration::from_secs(3600);
const DAY: StdDuration = StdDuration::from_secs(86_400);
const YEAR: StdDuration = StdDuration::from_secs(365 * 86_400);

/// Counts (workers, concurrency, connections) are capped well below what
/// a semaphore or an allocation could not take.
const MAX_COUNT: usize = 1_000_000;

/// The closest a destination's `rate` may space its requests (10,000 a
/// second): finer than that the timer, not the rate, decides.
const MIN_PACE_INTERVAL: StdDuration = StdDuration::from_micros(100);

/// Largest body any route may accept.
const MAX_BODY_SIZE: u64 = 1 << 30;

/// Most waits a retry schedule may list.
const MAX_SCHEDULE_LEN: usize = 100;

/// Most retries an exponential policy may ask for.
const MAX_RETRIES: u32 = 1000;

/// Largest growth factor of an exponential policy.
const MAX_FACTOR: f64 = 1000.0;

/// Checks that `d` is within `[min, max]`.
fn duration_in(
    err: &mut impl FnMut(String, String),
    path: String,
    d: Duration,
    min: StdDuration,
    max: StdDuration,
) {
    if d.0 < min || d.0 > max {
        err(
            path,
            format!(
                "{d} is out of range: must be between {} and {}",
                bound(min),
                bound(max)
            ),
        );
    }
}

/// A range bound in the largest whole unit a config would use (`3650d`
/// rather than humantime's `9years 11months ...`).
fn bound(d: StdDuration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

/// Checks that `n` is within `[min, max]`.
fn count_in(err: &mut impl FnMut(String, String), path: String, n: usize, min: usize, max: usize) {
    if n < min || n > max {
        err(
            path,
            format!("{n} is out of range: must be between {min} and {max}"),
        );
    }
}

/// Checks that `b` is within `[min, max]`.
fn size_in(err: &mut impl FnMut(String, String), path: String, b: ByteSize, min: u64, max: u64) {
    if b.0 < min || b.0 > max {
        err(
            path,
            format!(
                "{b} is out of range: must be between {} and {}",
                ByteSize(min),
                ByteSize(max)
            ),
        );
    }
}

/// Range checks of a `retry:` block at `at`.
fn check_retry(err: &mut impl FnMut(String, String), at: &str, retry: &RetryConfig) {
    if retry.schedule.is_some() && retry.exponential.is_some() {
        err(
            at.to_owned(),
            "give either `schedule` or `exponential`, not both".into(),
        );
    }
    // NaN fails this too.
    if !(0.0..=1.0).contains(&retry.jitter) {
        err(format!("{at}.jitter"), "must be between 0 and 1".into());
    }
    // NaN fails this too. Zero would retry in a busy loop.
    if !(retry.scale > 0.0 && retry.scale <= 1.0) {
        err(
            format!("{at}.scale"),
            "must be greater than 0 and at most 1".into(),
        );
    }
    if let Some(schedule) = &retry.schedule {
        if schedule.len() > MAX_SCHEDULE_LEN {
            err(
                format!("{at}.schedule"),
                format!("lists more than {MAX_SCHEDULE_LEN} waits"),
            );
        }
        for (i, d) in schedule.iter().enumerate() {
            duration_in(
                err,
                format!("{at}.schedule[{i}]"),
                *d,
                StdDuration::ZERO,
                YEAR,
            );
        }
    }
    if let Some(e) = &retry.exponential {
        // NaN fails this too.
        if !(1.0..=MAX_FACTOR).contains(&e.factor) {
            err(
                format!("{at}.exponential.factor"),
                format!("must be between 1 and {MAX_FACTOR}"),
            );
        }
        duration_in(
            err,
            format!("{at}.exponential.initial"),
            e.initial,
            StdDuration::ZERO,
            YEAR,
        );
        if let Some(max) = e.max_delay {
            duration_in(
                err,
                format!("{at}.exponential.max_delay"),
                max,
                StdDuration::ZERO,
                YEAR,
            );
        }
        if e.retries > MAX_RETRIES {
            err(
                format!("{at}.exponential.retries"),
                format!("must be at most {MAX_RETRIES}"),
            );
        }
    }
}

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
    for e in plugin_limits(config) {
        err(e.path, e.message);
    }
    count_in(
        &mut err,
        "delivery.workers".into(),
        config.delivery.workers,
        1,
        MAX_COUNT,
    );
    duration_in(
        &mut err,
        "delivery.shutdown_grace".into(),
        config.delivery.shutdown_grace,
        StdDuration::ZERO,
        HOUR,
    );
    duration_in(
        &mut err,
        "store.retention".into(),
        config.store.retention,
        StdDuration::ZERO,
        100 * YEAR,
    );
    duration_in(
        &mut err,
        "store.dead_retention".into(),
        config.store.dead_retention,
        StdDuration::ZERO,
        100 * YEAR,
    );
    if config.store.engine == super::StoreEngine::Postgres {
        match &config.store.url {
            None => err(
                "store.url".into(),
                "required with engine: postgres (postgres://user:password@host:port/database)"
                    .into(),
            ),
            // The TLS options, checked here so that `hookgate check` sees
            // them (the error never quotes the URL: it holds the password).
            Some(url) => {
                if let Err(e) = crate::store::postgres::tls::split(url) {
                    err("store.url".into(), e);
                }
            }
        }
    }
    count_in(
        &mut err,
        "store.pool_size".into(),
        config.store.pool_size,
        1,
        1024,
    );
    duration_in(
        &mut err,
        "delivery.lease".into(),
        config.delivery.lease,
        StdDuration::from_secs(1),
        HOUR,
    );
    duration_in(
        &mut err,
        "store.dedup_window".into(),
        config.store.dedup_window,
        StdDuration::ZERO,
        100 * YEAR,
    );

    if let Some(token) = &config.admin.token
        && token.len() < MIN_ADMIN_TOKEN_LEN
    {
        err(
            "admin.token".into(),
            format!(
                "must be at least {MIN_ADMIN_TOKEN_LEN} bytes (it is {}): it guards the admin API; generate one with `openssl rand -hex 32`",
                token.len()
            ),
        );
    }
    if let Some(listen) = &config.admin.listen {
        if listen.parse::<SocketAddr>().is_err() {
            err(
                "admin.listen".into(),
                format!("{listen:?} is not an address:port such as 127.0.0.1:9090"),
            );
        } else if *listen == config.listen && !listen.ends_with(":0") {
            err("admin.listen".into(), "must differ from `listen`".into());
        }
    }

    let limits = &config.limits;
    size_in(
        &mut err,
        "limits.max_body_size".into(),
        limits.max_body_size,
        0,
        MAX_BODY_SIZE,
    );
    duration_in(
        &mut err,
        "limits.header_read_timeout".into(),
        limits.header_read_timeout,
        StdDuration::from_millis(10),
        10 * MINUTE,
    );
    duration_in(
        &mut err,
        "limits.body_read_timeout".into(),
        limits.body_read_timeout,
        StdDuration::from_millis(10),
        HOUR,
    );
    size_in(
        &mut err,
        "limits.min_body_rate".into(),
        limits.min_body_rate,
        0,
        MAX_BODY_SIZE,
    );
    duration_in(
        &mut err,
        "limits.idle_timeout".into(),
        limits.idle_timeout,
        StdDuration::from_millis(10),
        DAY,
    );
    count_in(
        &mut err,
        "limits.max_connections".into(),
        limits.max_connections,
        1,
        MAX_COUNT,
    );
    count_in(
        &mut err,
        "limits.max_requests_in_flight".into(),
        limits.max_requests_in_flight,
        1,
        MAX_COUNT,
    );
    count_in(
        &mut err,
        "limits.max_headers".into(),
        limits.max_headers,
        1,
        10_000,
    );
    // hyper's read buffer cannot be smaller than 8 KiB.
    size_in(
        &mut err,
        "limits.max_header_size".into(),
        limits.max_header_size,
        8 << 10,
        1 << 20,
    );
    duration_in(
        &mut err,
        "limits.shutdown_timeout".into(),
        limits.shutdown_timeout,
        StdDuration::ZERO,
        HOUR,
    );

    for (name, dest) in &config.destinations {
        let at = |key: &str| format!("destinations.{name}.{key}");
        if !is_name(name) {
            err(format!("destinations.{name}"), name_rule());
        }
        count_in(&mut err, at("concurrency"), dest.concurrency, 1, MAX_COUNT);
        // An attempt renews its delivery's lease while it runs, so any
        // timeout is safe; a very long one only keeps a hung attempt (and
        // its lease, from every other gateway) for that long.
        duration_in(
            &mut err,
            at("timeout"),
            dest.timeout,
            StdDuration::from_millis(1),
            MAX_DESTINATION_TIMEOUT,
        );
        check_retry(&mut err, &at("retry"), &dest.retry);
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
            match (&dest.tenant, &config.subscriptions) {
                (None, _) => err(
                    at("tenant"),
                    "is required for a subscribers destination: without it every tenant's subscriptions would receive this route's events".into(),
                ),
                (Some(t), Some(subs)) if !subs.api_keys.contains_key(t) => err(
                    at("tenant"),
                    format!("no tenant named {t:?} under `subscriptions.api_keys`"),
                ),
                _ => {}
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
        if let Some(rate) = &dest.rate {
            if !matches!(dest.kind, DestinationKind::Http | DestinationKind::Teams) {
                err(
                    at("rate"),
                    "only http and teams destinations are paced (a subscription's deliveries follow its own lane)"
                        .into(),
                );
            }
            if rate.count == 0 {
                err(
                    at("rate"),
                    "the count must be at least 1 (remove the destination from its routes to send nothing)"
                        .into(),
                );
            } else if rate.interval() < MIN_PACE_INTERVAL {
                err(
                    at("rate"),
                    format!("{rate} is more than 10000/s, the most a destination can be paced to"),
                );
            }
        }
        if dest.paused && dest.kind == DestinationKind::Subscribers {
            err(
                at("paused"),
                "a subscriber is paused by disabling its subscription (PUT /v1/webhook/{id} with {\"active\": false})"
                    .into(),
            );
        }
        if let Some(signing) = &dest.signing {
            if dest.kind != DestinationKind::Http {
                err(
                    at("signing"),
                    "only an http destination signs (subscribers sign with their subscriptions' secrets)"
                        .into(),
                );
            }
            let scheme = signing.scheme.into();
            // The message never quotes the secret.
            if let Err(e) = crate::signing::check_secret(scheme, &signing.secret) {
                err(at("signing.secret"), e);
            }
            if let Some(previous) = &signing.previous_secret
                && let Err(e) = crate::signing::check_secret(scheme, previous)
            {
                err(at("signing.previous_secret"), e);
            }
        }
        if let Some(tls) = &dest.tls {
            // The files themselves are read where the client is built
            // (`pipeline::compile`, which `hookgate check` runs too), at
            // the key that names them.
            if dest.kind != DestinationKind::Http {
                err(
                    at("tls"),
                    "only an http destination takes TLS options (a subscriber's callback is on the public web)"
                        .into(),
                );
            } else if let Some(url) = dest.url.as_deref()
                && reqwest::Url::parse(url).is_ok_and(|u| u.scheme() != "https")
            {
                err(
                    at("tls"),
                    format!("the destination's url is not https ({url:?}): no TLS to configure"),
                );
            }
            match (&tls.client_cert_file, &tls.client_key_file) {
                (Some(_), None) => err(
                    at("tls.client_key_file"),
                    "is required with client_cert_file".into(),
                ),
                (None, Some(_)) => err(
                    at("tls.client_cert_file"),
                    "is required with client_key_file".into(),
                ),
                _ => {}
            }
            if !tls.public_roots && tls.ca_file.is_none() {
                err(
                    at("tls.public_roots"),
                    "false needs ca_file: otherwise no certificate could be trusted".into(),
                );
            }
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
        check_retry(&mut err, "subscriptions.retry", &subs.retry);
        duration_in(
            &mut err,
            "subscriptions.disable_after".into(),
            subs.disable_after,
            StdDuration::ZERO,
            10 * YEAR,
        );
        // The secret a rotation replaces keeps signing this long: a
        // rotation after a leak must end its use within days, not never.
        duration_in(
            &mut err,
            "subscriptions.secret_rotation_overlap".into(),
            subs.secret_rotation_overlap,
            StdDuration::ZERO,
            30 * DAY,
        );
        duration_in(
            &mut err,
            "subscriptions.validation_timeout".into(),
            subs.validation_timeout,
            StdDuration::from_millis(1),
            5 * MINUTE,
        );
        duration_in(
            &mut err,
            "subscriptions.timeout".into(),
            subs.timeout,
            StdDuration::from_millis(1),
            HOUR,
        );
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
        if let Some(size) = route.max_body_size {
            size_in(
                &mut err,
                format!("routes.{name}.max_body_size"),
                size,
                0,
                MAX_BODY_SIZE,
            );
        }
        for (i, to) in route.to.iter().enumerate() {
            if !config.destinations.contains_key(to) {
                err(
                    format!("routes.{name}.to[{i}]"),
                    format!("no destination named {to:?} under `destinations`"),
                );
            }
        }
        if let Some(relay) = &route.relay {
            match config.destinations.get(&relay.to) {
                None => err(
                    format!("routes.{name}.relay.to"),
                    format!("no destination named {:?} under `destinations`", relay.to),
                ),
                Some(d) if d.kind != super::DestinationKind::Http => err(
                    format!("routes.{name}.relay.to"),
                    "must be an `http` destination: only a reply from one can be relayed".into(),
                ),
                Some(_) => {}
            }
            duration_in(
                &mut err,
                format!("routes.{name}.relay.reply_timeout"),
                relay.reply_timeout,
                StdDuration::from_millis(1),
                super::MAX_REPLY_TIMEOUT,
            );
        }
        // Every request of the route adds this to the clock for its
        // deadline: past the clock's range that addition panics.
        duration_in(
            &mut err,
            format!("routes.{name}.max_plugin_time"),
            route.max_plugin_time,
            MIN_PLUGIN_TIMEOUT,
            MAX_PLUGIN_TIMEOUT,
        );
        if route.max_in_flight == 0 {
            err(
                format!("routes.{name}.max_in_flight"),
                "must be at least 1".into(),
            );
        }
        for (stage, u) in route.uses() {
            if !is_name(&u.plugin) {
                err(format!("routes.{name}.{stage}.plugin"), name_rule());
            }
            if let Some(h) = &u.http {
                if h.allow.is_empty() {
                    err(
                        format!("routes.{name}.{stage}.http.allow"),
                        "needs at least one host".into(),
                    );
                }
                // Read whole on the host before the plugin gets it, so it
                // cannot be more than a use may give a plugin's memory.
                if let Some(max) = h.max_response_size {
                    size_in(
                        &mut err,
                        format!("routes.{name}.{stage}.http.max_response_size"),
                        max,
                        1,
                        crate::plugin::MAX_USE_MEMORY as u64,
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
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// What is out of range among the limits plugins are loaded and called
/// under: `plugins.timeout` and `plugins.memory`, and each use's own
/// `timeout` and `memory`. Part of [`validate`]; `hookgate check` asks it
/// alone to know whether it may load the plugins of a config that
/// failed other checks.
pub fn plugin_limits(config: &GatewayConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
    duration_in(
        &mut err,
        "plugins.timeout".into(),
        config.plugins.timeout,
        MIN_PLUGIN_TIMEOUT,
        MAX_PLUGIN_TIMEOUT,
    );
    size_in(
        &mut err,
        "plugins.memory".into(),
        config.plugins.memory,
        MIN_PLUGIN_MEMORY,
        MAX_PLUGIN_MEMORY,
    );
    for (name, route) in &config.routes {
        for (stage, u) in route.uses() {
            // A use's deadline replaces `plugins.timeout` and is held to
            // the same range: a plugin's calls are bounded whatever a
            // route says.
            if let Some(t) = u.timeout {
                duration_in(
                    &mut err,
                    format!("routes.{name}.{stage}.timeout"),
                    t,
                    MIN_PLUGIN_TIMEOUT,
                    MAX_PLUGIN_TIMEOUT,
                );
            }
            if let Some(memory) = u.memory {
                if memory.0 < MIN_PLUGIN_MEMORY {
                    err(
                        format!("routes.{name}.{stage}.memory"),
                        format!("must be at least {}", super::ByteSize(MIN_PLUGIN_MEMORY)),
                    );
                } else if memory > use_memory_ceiling(config.plugins.memory) {
                    err(
                        format!("routes.{name}.{stage}.memory"),
                        format!(
                            "must not exceed {} (or plugins.memory when that is larger): instances come from a pool of that size",
                            super::ByteSize(crate::plugin::MAX_USE_MEMORY as u64)
                        ),
                    );
                }
            }
        }
    }
    errors
}

/// The most memory one use of a plugin may have: the plugin pool's slot
/// size (see `plugin::MAX_USE_MEMORY`).
fn use_memory_ceiling(plugins_memory: ByteSize) -> ByteSize {
    ByteSize(plugins_memory.0.max(crate::plugin::MAX_USE_MEMORY as u64))
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

    fn paths(yaml: &str) -> Vec<String> {
        let env = |name: &str| (name == "EMPTY").then(String::new);
        match from_str(yaml, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn empty_or_short_admin_tokens_are_refused() {
        assert_eq!(paths("admin: { token: ${EMPTY} }\n"), ["admin.token"]);
        assert_eq!(paths("admin: { token: short-token }\n"), ["admin.token"]);
        assert!(paths("admin: { token: 0123456789abcdef0123456789abcdef }\n").is_empty());
    }

    #[test]
    fn subscribers_destinations_name_a_known_tenant() {
        let subs = "subscriptions: { api_keys: { a: 0123456789abcdef } }\n";
        let dest = |extra: &str| {
            format!(
                "{subs}destinations:\n  s: {{ kind: subscribers, object_type: Group, object_id: x{extra} }}\n"
            )
        };
        assert_eq!(paths(&dest("")), ["destinations.s.tenant"]);
        assert_eq!(paths(&dest(", tenant: b")), ["destinations.s.tenant"]);
        assert!(paths(&dest(", tenant: a")).is_empty());
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics() {
        for (yaml, path) in [
            ("plugins: { timeout: 100000000000d }", "plugins.timeout"),
            ("plugins: { timeout: 0s }", "plugins.timeout"),
            ("plugins: { memory: 1000GiB }", "plugins.memory"),
            (
                "routes: { r: { verify: { plugin: github, timeout: 100000000000d } } }",
                "routes.r.verify.timeout",
            ),
            (
                "routes: { r: { transform: [ { plugin: template, timeout: 0s } ] } }",
                "routes.r.transform[0].timeout",
            ),
            (
                "routes: { r: { verify: { plugin: github, timeout: 301s } } }",
                "routes.r.verify.timeout",
            ),
            (
                "routes: { r: { max_plugin_time: 200000000000000d } }",
                "routes.r.max_plugin_time",
            ),
            (
                "routes: { r: { max_plugin_time: 0s } }",
                "routes.r.max_plugin_time",
            ),
            (
                "delivery: { workers: 18446744073709551615 }",
                "delivery.workers",
            ),
            ("store: { retention: 1000000000d }", "store.retention"),
            ("store: { dedup_window: 1000000000d }", "store.dedup_window"),
            (
                "store: { dead_retention: 1000000000d }",
                "store.dead_retention",
            ),
            (
                "routes: { r: { verify: { plugin: paypal, http: { allow: [x.example], max_response_size: 1000GiB } } } }",
                "routes.r.verify.http.max_response_size",
            ),
            (
                "subscriptions: { api_keys: { a: 0123456789abcdef }, secret_rotation_overlap: 31d }",
                "subscriptions.secret_rotation_overlap",
            ),
            ("limits: { max_connections: 0 }", "limits.max_connections"),
            (
                "limits: { max_header_size: 1KiB }",
                "limits.max_header_size",
            ),
            (
                "limits: { header_read_timeout: 0s }",
                "limits.header_read_timeout",
            ),
            ("limits: { max_body_size: 100GiB }", "limits.max_body_size"),
            (
                "destinations: { d: { url: \"http://x\", concurrency: 18446744073709551615 } }",
                "destinations.d.concurrency",
            ),
            (
                "destinations: { d: { url: \"http://x\", retry: { exponential: { initial: 1s, factor: 1e308, retries: 4294967295 } } } }",
                "destinations.d.retry.exponential.factor",
            ),
            (
                "destinations: { d: { url: \"http://x\", retry: { schedule: [100000d] } } }",
                "destinations.d.retry.schedule[0]",
            ),
        ] {
            let found = paths(&format!("{yaml}\n"));
            assert!(found.iter().any(|p| p == path), "{yaml}: {found:?}");
        }
    }

    #[test]
    fn a_use_may_give_a_plugin_more_memory_than_the_default_up_to_the_pool_slot() {
        let route = |memory: &str| {
            format!(
                "destinations: {{ c: {{ kind: log }} }}\nroutes:\n  r:\n    verify: {{ plugin: github, memory: {memory} }}\n    to: [c]\n"
            )
        };
        // An embedded JS or Python runtime, above the 16MiB default.
        assert!(paths(&route("64MiB")).is_empty());
        assert!(paths(&route("256MiB")).is_empty());
        assert_eq!(paths(&route("257MiB")), ["routes.r.verify.memory"]);
        assert!(
            paths(&format!(
                "plugins: {{ memory: 512MiB }}\n{}",
                route("512MiB")
            ))
            .is_empty()
        );
    }

    #[test]
    fn signing_needs_an_http_destination_and_a_secret_its_scheme_accepts() {
        let secret = "whsec_c2hvcnQ=";
        let errs = paths(&format!(
            "destinations:\n  d: {{ url: \"http://x\", signing: {{ secret: \"{secret}\" }} }}\n  \
             m: {{ url: \"http://x\", signing: {{ scheme: ms-signature, secret: short, previous_secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }} }}\n  \
             l: {{ kind: log, signing: {{ secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }} }}\n"
        ));
        assert_eq!(
            errs,
            [
                "destinations.d.signing.secret",
                "destinations.l.signing",
                "destinations.m.signing.secret",
            ]
        );
        let messages = from_str(
            &format!(
                "destinations:\n  d: {{ url: \"http://x\", signing: {{ secret: \"{secret}\" }} }}\n"
            ),
            &|_| None,
        )
        .unwrap_err()
        .0;
        assert!(
            messages.iter().all(|e| !e.message.contains(secret)),
            "{messages:?}"
        );
        assert!(paths(
            "destinations:\n  d: { url: \"http://x\", signing: { secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" } }\n"
        )
        .is_empty());
    }

    #[test]
    fn a_rate_paces_only_http_and_teams_destinations_and_not_past_10000_a_second() {
        let destinations = "destinations:\n  h: { url: \"http://x\", rate: 10/s }\n  \
             t: { kind: teams, url: \"https://x\", rate: 100/h }\n  \
             l: { kind: log, rate: 1/s }\n  \
             fast: { url: \"http://x\", rate: 20000/s }\n  \
             edge: { url: \"http://x\", rate: 10000/s }\n  \
             huge: { url: \"http://x\", rate: 999999999/min }\n  \
             zero: { url: \"http://x\", rate: 0/s }\n";
        assert_eq!(
            paths(destinations),
            [
                "destinations.fast.rate",
                "destinations.huge.rate",
                "destinations.l.rate",
                "destinations.zero.rate"
            ]
        );
        // A unit that is none of s, min and h is the schema's error, at
        // the key's path (the checks across keys wait for it).
        assert_eq!(
            paths(&format!(
                "{destinations}  unit: {{ url: \"http://x\", rate: 10/d }}\n"
            )),
            ["destinations.unit.rate"]
        );
        let errs = from_str(
            "destinations:\n  d: { url: \"http://x\", rate: 0/s }\n",
            &|_| None,
        )
        .unwrap_err()
        .0;
        assert!(errs[0].message.contains("at least 1"), "{errs:?}");
    }

    #[test]
    fn any_destination_but_the_subscribers_one_can_be_paused() {
        assert_eq!(
            paths(
                "destinations:\n  h: { url: \"http://x\", paused: true }\n  \
                 t: { kind: teams, url: \"https://x\", paused: true }\n  \
                 l: { kind: log, paused: true }\n  \
                 s: { kind: subscribers, object_type: repo, object_id: x, tenant: a, paused: true }\n"
            )
            .into_iter()
            .filter(|p| p.ends_with(".paused"))
            .collect::<Vec<_>>(),
            ["destinations.s.paused"]
        );
    }

    #[test]
    fn tls_options_are_for_https_http_destinations_and_come_in_pairs() {
        assert_eq!(
            paths(
                "destinations:\n  ok: { url: \"https://x\", tls: { ca_file: ca.pem } }\n  \
                 mtls: { url: \"https://x\", tls: { client_cert_file: c.pem, client_key_file: k.pem } }\n  \
                 plain: { url: \"http://x\", tls: { ca_file: ca.pem } }\n  \
                 l: { kind: log, tls: { ca_file: ca.pem } }\n  \
                 t: { kind: teams, url: \"https://x\", tls: { ca_file: ca.pem } }\n  \
                 nokey: { url: \"https://x\", tls: { client_cert_file: c.pem } }\n  \
                 nocert: { url: \"https://x\", tls: { client_key_file: k.pem } }\n  \
                 noroots: { url: \"https://x\", tls: { public_roots: false } }\n"
            ),
            [
                "destinations.l.tls",
                "destinations.nocert.tls.client_cert_file",
                "destinations.nokey.tls.client_key_file",
                "destinations.noroots.tls.public_roots",
                "destinations.plain.tls",
                "destinations.t.tls",
            ]
        );
    }

    #[test]
    fn http_destination_needs_a_url() {
        let errs = from_str("destinations:\n  d: { timeout: 1s }\n", &|_| None)
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "destinations.d.url");
    }
}
