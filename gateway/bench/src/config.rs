//! The gateway configs of the benchmark rows, all from one function,
//! [`gateway_yaml`], so the rows differ only in what they say they differ
//! in.

use std::path::Path;

/// Row 4's one difference from row 3: the in-memory store (durability
/// off), to show what the disk costs.
pub const IN_MEMORY_STORE: &str = "store: { engine: memory }";

/// The route every row posts to: `/hooks/bench`.
pub const ROUTE: &str = "bench";

/// `delivery.lease` of the gateways that deliver over HTTP (the delivery
/// rows), instead of the default 60 s. A delivery whose outcome went
/// unrecorded is sent again when its lease ends; the bench watches the
/// sink for one such lease after the last owed delivery arrived (see
/// `delivery::WATCH`), so that this duplicate shows in the row, not a
/// minute after it was printed. Queued deliveries renew their claim after
/// a third of it (1.7 s) before they start; attempts take milliseconds.
pub const DELIVERY_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where accepted messages go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A `kind: log` destination. The gateway runs with `RUST_LOG=warn`, so
    /// it logs nothing: accepted events still go through the delivery
    /// hand-off, without a second HTTP request per event competing for the
    /// two cores with the measured one.
    Discard,
    /// POST to these URLs (the delivery rows' sink): one destination per
    /// URL, `out` then `out2`, `out3`, ..., and the route sends each webhook
    /// to every one of them.
    Urls(Vec<String>),
}

/// What a gateway row varies.
#[derive(Clone, Debug)]
pub struct GatewaySetup {
    /// `github` verify + `github-teams` transform, or no plugins.
    pub plugins: bool,
    /// Durability off (row 4).
    pub in_memory_store: bool,
    /// The PostgreSQL store at this URL (the PostgreSQL rows).
    pub postgres_url: Option<String>,
    /// Where messages go.
    pub destination: Destination,
    /// `plugins.timeout`, when not the default (100 ms). Only `--smoke` sets
    /// it: a debug build on a busy CI machine can overrun 100 ms, and the
    /// smoke run checks that the rows work, not how fast.
    pub plugin_timeout: Option<&'static str>,
    /// The `/v1` subscription API with one tenant ([`API_KEY`]), callbacks
    /// allowed on loopback (the publish rows).
    pub subscriptions: bool,
    /// The destination `paused`: accepted webhooks wait in the store until
    /// a reload removes the flag (the drain measurement fills a backlog
    /// this way).
    pub paused: bool,
}

impl GatewaySetup {
    /// Row 3's route delivering over HTTP to `urls` (one destination each):
    /// the delivery rows, the drain and the two-gateway row start here.
    pub fn delivering(urls: Vec<String>, plugin_timeout: Option<&'static str>) -> Self {
        GatewaySetup {
            plugins: true,
            in_memory_store: false,
            postgres_url: None,
            destination: Destination::Urls(urls),
            plugin_timeout,
            subscriptions: false,
            paused: false,
        }
    }
}

/// The name of a delivering route's `n`th destination (1-based): `out`,
/// then `out2`, `out3`, ... (the sink's copies are numbered alike).
fn destination_name(n: usize) -> String {
    match n {
        1 => "out".to_owned(),
        n => format!("out{n}"),
    }
}

/// The publish rows' tenant key (`accessToken`).
pub const API_KEY: &str = "bench-0123456789abcdef0123456789";

/// The YAML config of a gateway row: loopback port 0, `data_dir` under
/// `dir`, one route `bench`.
pub fn gateway_yaml(dir: &Path, setup: &GatewaySetup) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut yaml = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\n",
        quote(&dir.join("data").display().to_string())
    );
    if setup.in_memory_store {
        yaml.push_str(IN_MEMORY_STORE);
        yaml.push('\n');
    }
    if let Some(url) = &setup.postgres_url {
        yaml.push_str(&format!(
            "store: {{ engine: postgres, url: {} }}\n",
            quote(url)
        ));
    }
    if let Some(timeout) = setup.plugin_timeout {
        yaml.push_str(&format!("plugins: {{ timeout: {timeout} }}\n"));
    }
    if setup.subscriptions {
        yaml.push_str(&format!(
            "subscriptions: {{ api_keys: {{ bench: {} }}, allow_private_callbacks: [127.0.0.0/8] }}\n",
            quote(API_KEY)
        ));
    }
    yaml.push_str("destinations:\n");
    let names: Vec<String> = match &setup.destination {
        Destination::Discard => {
            yaml.push_str("  out: { kind: log }\n");
            vec!["out".to_owned()]
        }
        Destination::Urls(urls) => {
            let names: Vec<String> = (1..=urls.len()).map(destination_name).collect();
            for (name, url) in names.iter().zip(urls) {
                yaml.push_str(&format!(
                    "  {name}: {{ url: {}{} }}\n",
                    quote(url),
                    if setup.paused { ", paused: true" } else { "" }
                ));
            }
            // Delivering gateways get a short lease, so that the bench's
            // watch for duplicates after the drain stays short.
            yaml.push_str(&format!(
                "delivery: {{ lease: {}s }}\n",
                DELIVERY_LEASE.as_secs()
            ));
            names
        }
    };
    yaml.push_str(&format!("routes:\n  {ROUTE}:\n"));
    if setup.plugins {
        yaml.push_str(&format!(
            "    verify: {{ plugin: github, with: {{ secret: {} }} }}\n",
            quote(crate::payload::SECRET)
        ));
        yaml.push_str(
            "    transform: [ { plugin: github-teams, with: { card: message-card } } ]\n",
        );
    }
    yaml.push_str(&format!("    to: [{}]\n", names.join(", ")));
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(plugins: bool, in_memory_store: bool) -> GatewaySetup {
        GatewaySetup {
            plugins,
            in_memory_store,
            postgres_url: None,
            destination: Destination::Discard,
            plugin_timeout: None,
            subscriptions: false,
            paused: false,
        }
    }

    #[test]
    fn row_four_differs_from_row_three_only_by_the_store_key() {
        let dir = Path::new("/tmp/x");
        let row3 = gateway_yaml(dir, &setup(true, false));
        let row4 = gateway_yaml(dir, &setup(true, true));
        assert_eq!(row4.replace(&format!("{IN_MEMORY_STORE}\n"), ""), row3);
        assert!(!row3.contains("store:"));
    }

    #[test]
    fn only_delivering_gateways_get_the_short_lease() {
        let dir = Path::new("/tmp/x");
        assert!(!gateway_yaml(dir, &setup(true, false)).contains("lease"));
        let delivering = GatewaySetup::delivering(vec!["http://127.0.0.1:1/d".into()], None);
        assert!(gateway_yaml(dir, &delivering).contains("delivery: { lease: 5s }"));
    }

    #[test]
    fn only_publish_rows_get_the_subscription_api() {
        let dir = Path::new("/tmp/x");
        assert!(!gateway_yaml(dir, &setup(false, false)).contains("subscriptions:"));
        let publishing = GatewaySetup {
            subscriptions: true,
            ..setup(false, false)
        };
        let yaml = gateway_yaml(dir, &publishing);
        assert!(yaml.contains(&format!("api_keys: {{ bench: \"{API_KEY}\" }}")));
        assert!(yaml.contains("allow_private_callbacks: [127.0.0.0/8]"));
    }

    #[test]
    fn a_paused_destination_differs_only_by_the_flag() {
        let dir = Path::new("/tmp/x");
        let delivering = GatewaySetup::delivering(vec!["http://127.0.0.1:1/d".into()], None);
        let paused = GatewaySetup {
            paused: true,
            ..delivering.clone()
        };
        let (a, b) = (gateway_yaml(dir, &delivering), gateway_yaml(dir, &paused));
        assert!(b.contains(", paused: true }"), "{b}");
        assert_eq!(b.replace(", paused: true", ""), a);
    }

    #[test]
    fn a_fan_out_sends_each_webhook_to_every_url() {
        let dir = Path::new("/tmp/x");
        let one = GatewaySetup::delivering(vec!["http://127.0.0.1:1/d".into()], None);
        let two = GatewaySetup::delivering(
            vec![
                "http://127.0.0.1:1/d".into(),
                "http://127.0.0.1:1/d/2".into(),
            ],
            None,
        );
        let (a, b) = (gateway_yaml(dir, &one), gateway_yaml(dir, &two));
        assert!(a.contains("to: [out]\n"), "{a}");
        assert!(
            b.contains("  out2: { url: \"http://127.0.0.1:1/d/2\" }\n"),
            "{b}"
        );
        assert!(b.contains("to: [out, out2]\n"), "{b}");
        // Otherwise the same config.
        let b = b
            .replace("  out2: { url: \"http://127.0.0.1:1/d/2\" }\n", "")
            .replace("[out, out2]", "[out]");
        assert_eq!(a, b);
    }

    #[test]
    fn rows_without_plugins_have_none() {
        let yaml = gateway_yaml(Path::new("/tmp/x"), &setup(false, false));
        assert!(!yaml.contains("plugin:"));
        assert!(yaml.contains("to: [out]"));
    }
}
