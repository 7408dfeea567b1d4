//! The outbound SSRF guard for subscriber callbacks: a URL supplied by a
//! subscriber must not reach the gateway's own network.
//!
//! Two checks, both needed:
//! - [`check_url`] before anything is sent: scheme, IP literals, and every
//!   address the name resolves to now;
//! - the HTTP clients' resolvers ([`resolve_vetted`]: the delivery
//!   client's [`super::client::Dns::Guarded`] for callbacks,
//!   [`GuardedResolver`] for plugins' reqwest client): they resolve again
//!   at connect time and hand the connector only vetted addresses, so a
//!   name that re-binds to 127.0.0.1 after the first check (DNS
//!   rebinding) still cannot be reached.
//!
//! Loopback, private, link-local (cloud metadata at 169.254.169.254),
//! carrier-grade NAT, unspecified, broadcast, multicast and documentation
//! ranges are refused, including in IPv4-mapped and NAT64 IPv6 forms,
//! unless the operator allow-lists a CIDR.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address subscribers must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    // Forms that carry an IPv4 address are judged by it, so that
    // `::ffff:127.0.0.1` is as internal as `127.0.0.1`.
    if let Some(v4) = embedded_v4(v6) {
        return is_internal_v4(v4);
    }
    v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        // ::/96, IPv4-compatible (`::a.b.c.d`, deprecated by RFC 4291):
        // nothing public lives there, and stacks that still route it reach
        // the embedded IPv4 address.
        || seg[..6] == [0, 0, 0, 0, 0, 0]
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed inside some networks)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation 2001:db8::/32
        || seg[..3] == [0x64, 0xff9b, 0x0001] // local-use NAT64 64:ff9b:1::/48 (RFC 8215)
        || seg[..4] == [0x0100, 0, 0, 0] // discard-only 100::/64 (RFC 6666)
        // Tunnels: 6to4 2002::/16 and Teredo 2001::/32 reach IPv4 hosts
        // through relays, including ones inside the network; no public
        // webhook endpoint needs them.
        || seg[0] == 0x2002
        || (seg[0] == 0x2001 && seg[1] == 0)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-translated (`::ffff:0:a.b.c.d`, RFC 2765) or well-known NAT64
/// (`64:ff9b::a.b.c.d`, RFC 6052) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = v6.segments();
    let tail = || Ipv4Addr::from((u32::from(seg[6]) << 16) | u32::from(seg[7]));
    match seg[..6] {
        [0, 0, 0, 0, 0, 0xffff] => Some(tail()),
        [0, 0, 0, 0, 0xffff, 0] => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(tail()),
        _ => None,
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // 0.0.0.0/8
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99.0/24, 6to4 relay anycast
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || o[0] >= 240 // reserved
}

/// Whether `ip` may be reached, given the allow-list.
pub fn permitted(ip: IpAddr, allow: &[IpNet]) -> bool {
    !is_internal(ip) || allowed(ip, allow)
}

fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    // An allow-listed IPv4 network covers its IPv6 embeddings too: they
    // are judged by the same address.
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&ip))
}

/// Checks a callback URL before anything is sent to it. Plain `http` is
/// accepted only for allow-listed addresses (test and private set-ups).
pub async fn check_url(url: &reqwest::Url, allow: &[IpNet]) -> Result<(), String> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("scheme {other:?} is not https")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed".into());
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    for ip in &addrs {
        if !permitted(*ip, allow) {
            return Err(format!(
                "{host} resolves to {ip}, an internal address (allow-list it in subscriptions.allow_private_callbacks)"
            ));
        }
        if !https && !allowed(*ip, allow) {
            return Err("callback URLs must use https".into());
        }
    }
    Ok(())
}

/// Where the resolver reads the current allow-list.
pub type AllowList = Arc<dyn Fn() -> Arc<Vec<IpNet>> + Send + Sync>;

/// The subscriber client's resolver: only vetted addresses reach the
/// connector. The allow-list is read at each resolution, so a reload that
/// changes it applies at once.
pub struct GuardedResolver {
    allow: AllowList,
}

impl GuardedResolver {
    /// A resolver reading the allow-list from `allow`.
    pub fn new(allow: AllowList) -> Self {
        GuardedResolver { allow }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = (self.allow)();
        Box::pin(async move {
            let addrs: Addrs = Box::new(resolve_vetted(name.as_str(), &allow).await?.into_iter());
            Ok(addrs)
        })
    }
}

/// Every address `host` resolves to now that `allow` permits (see
/// [`permitted`]); none is an error naming the host. What both resolvers
/// (this module's for reqwest, the delivery client's) hand their
/// connector.
pub async fn resolve_vetted(
    host: &str,
    allow: &[IpNet],
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let vetted: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .filter(|a| permitted(a.ip(), allow))
        .collect();
    if vetted.is_empty() {
        return Err(format!("{host} resolves only to internal addresses").into());
    }
    Ok(vetted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
            // IPv4-compatible ::a.b.c.d, public or not.
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            // IPv4-translated ::ffff:0:a.b.c.d.
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            // Local-use NAT64, whatever it embeds.
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:ffff::1",
            // 6to4 and Teredo tunnels.
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            // Site-local and discard-only.
            "fec0::1",
            "feff::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "192.88.99.1",
            "2001:db8::1",
        ] {
            assert!(is_internal(ip(a)), "{a}");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2001:4860:4860::8888",
            "100:0:0:1::1",
            "2001:1::1",
        ] {
            assert!(!is_internal(ip(a)), "{a}");
        }
    }

    #[test]
    fn allow_list_opens_only_its_networks() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(permitted(ip("127.0.0.1"), &allow));
        assert!(permitted(ip("::ffff:127.0.0.1"), &allow));
        assert!(!permitted(ip("10.0.0.1"), &allow));
        assert!(!permitted(ip("::1"), &allow));
    }

    #[tokio::test]
    async fn the_resolver_hands_out_only_vetted_addresses() {
        // "localhost" stands in for a name that (re)binds to an internal
        // address: refused at connect time unless allow-listed.
        let closed = GuardedResolver::new(Arc::new(|| Arc::new(Vec::new())));
        let name: Name = "localhost".parse().unwrap();
        assert!(closed.resolve(name).await.is_err());
        let open = GuardedResolver::new(Arc::new(|| {
            Arc::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])
        }));
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn urls_are_checked_before_sending() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_url(&u("http://127.0.0.1:9/cb"), &allow).await.is_ok());
        assert!(check_url(&u("http://127.0.0.1:9/cb"), &[]).await.is_err());
        assert!(
            check_url(&u("https://169.254.169.254/latest"), &allow)
                .await
                .is_err()
        );
        assert!(check_url(&u("https://[::1]/x"), &allow).await.is_err());
        assert!(check_url(&u("ftp://example.com/x"), &allow).await.is_err());
        assert!(
            check_url(&u("https://u:p@93.184.216.34/x"), &allow)
                .await
                .is_err()
        );
        assert!(
            check_url(&u("http://93.184.216.34/x"), &allow)
                .await
                .is_err(),
            "plain http only when allow-listed"
        );
        assert!(
            check_url(&u("https://93.184.216.34/x"), &allow)
                .await
                .is_ok()
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn v6(bits: u128) -> IpAddr {
            IpAddr::V6(Ipv6Addr::from(bits))
        }

        proptest! {
            /// Every IPv6 form that embeds an IPv4 address is judged by it,
            /// and an allow-listed IPv4 network covers those forms too.
            #[test]
            fn embedded_ipv4_is_judged_like_ipv4(a in any::<u32>()) {
                let v4 = IpAddr::V4(Ipv4Addr::from(a));
                let a = u128::from(a);
                let mapped = v6((0xffff << 32) | a);
                let translated = v6((0xffff << 48) | a);
                let nat64 = v6((0x0064_ff9b << 96) | a);
                for form in [mapped, translated, nat64] {
                    prop_assert_eq!(is_internal(form), is_internal(v4), "{} vs {}", form, v4);
                }
                let allow: Vec<IpNet> = vec![IpNet::new(v4, 32).unwrap()];
                for form in [mapped, translated, nat64] {
                    prop_assert!(permitted(form, &allow), "{} not covered by {}/32", form, v4);
                }
            }

            /// The ranges nothing public lives in are refused whatever the
            /// rest of the address.
            #[test]
            fn reserved_ipv6_ranges_are_internal(low in any::<u128>()) {
                for (prefix, len) in [
                    (0u128, 96u32),                        // ::/96, IPv4-compatible
                    (0x0064_ff9b_0001 << 80, 48),          // 64:ff9b:1::/48
                    (0x2002 << 112, 16),                   // 6to4
                    (0x2001_0000 << 96, 32),               // Teredo
                    (0xfec0 << 112, 10),                   // site-local
                    (0x0100 << 112, 64),                   // discard-only
                    (0xfc00 << 112, 7),                    // unique local
                    (0xfe80 << 112, 10),                   // link-local
                    (0xff00 << 112, 8),                    // multicast
                    (0x2001_0db8 << 96, 32),               // documentation
                ] {
                    let host = if len == 0 { low } else { low & (u128::MAX >> len) };
                    let ip = v6(prefix | host);
                    prop_assert!(is_internal(ip), "{} in {}/{}", ip, v6(prefix), len);
                }
            }

            /// The IPv4 private ranges, whatever the host part.
            #[test]
            fn private_ipv4_ranges_are_internal(host in any::<u32>()) {
                for (net, len) in [
                    ([10, 0, 0, 0], 8u32), ([172, 16, 0, 0], 12), ([192, 168, 0, 0], 16),
                    ([127, 0, 0, 0], 8), ([169, 254, 0, 0], 16), ([100, 64, 0, 0], 10),
                    ([0, 0, 0, 0], 8), ([240, 0, 0, 0], 4),
                ] {
                    let ip = u32::from(Ipv4Addr::from(net)) | (host & (u32::MAX >> len));
                    let ip = IpAddr::V4(Ipv4Addr::from(ip));
                    prop_assert!(is_internal(ip), "{}", ip);
                }
            }
        }
    }
}
