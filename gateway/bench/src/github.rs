//! What a GitHub webhook delivery looks like on the wire, besides its body
//! (`payload.rs`): the headers GitHub sends, and its delivery ids.
//!
//! The ids matter to a gateway that deduplicates: each one is a key in a
//! unique index, and where a new key lands in that index decides how many
//! pages a commit writes. GitHub's `X-GitHub-Delivery` is a version-1
//! (time-based) UUID made when the delivery is: the `guid` of the example
//! delivery in GitHub's REST API description, `58474f00-b361-11eb-836d-
//! 0e4f3503ccbe`, decodes to 2021-05-12 20:33:43.92 UTC, and that example's
//! `delivered_at` is `2021-05-12T20:33:44Z` (so is the delivery-headers
//! page's example, `72d3162e-cc78-11e3-...`, a version-1 UUID of 2014). A
//! version-1 UUID's text leads with the low 32 bits of its timestamp (100 ns
//! ticks), which wrap every 429 s, so successive deliveries have ascending
//! ids within any seven minutes. The bench makes its ids the same way.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha1::Sha1;

use crate::payload;

/// 100 ns ticks from the Gregorian epoch of UUIDs (1582-10-15) to the Unix
/// epoch (RFC 9562, section 5.1).
const GREGORIAN_TO_UNIX_TICKS: u64 = 0x01B2_1DD2_1381_4000;

/// The headers of a GitHub `issues` delivery of `body` to a repository
/// webhook with a secret, as GitHub's documentation lists them, except
/// `X-GitHub-Delivery` (one per request: [`DeliveryIds`]) and those the
/// HTTP client adds (`Host`, `Content-Length`).
pub fn delivery_headers(body: &[u8]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let mut add = |name: &'static str, value: String| -> anyhow::Result<()> {
        headers.insert(name, HeaderValue::from_str(&value)?);
        Ok(())
    };
    add("accept", "*/*".into())?;
    add("content-type", "application/json".into())?;
    add("user-agent", "GitHub-Hookshot/hookgate-bench".into())?;
    add("x-github-event", "issues".into())?;
    add("x-github-hook-id", "292430182".into())?;
    add("x-github-hook-installation-target-id", "79929171".into())?;
    add(
        "x-github-hook-installation-target-type",
        "repository".into(),
    )?;
    add("x-hub-signature", sha1_signature(body))?;
    add("x-hub-signature-256", payload::github_signature(body))?;
    Ok(headers)
}

/// `sha1=<hex>`: GitHub's legacy `X-Hub-Signature` of `body` under
/// [`payload::SECRET`], which GitHub still sends beside the SHA-256 one.
pub fn sha1_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(payload::SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivery ids for one load's requests: version-1 UUIDs of the time each
/// is made. One sender (a load worker) owns a `DeliveryIds`; two differ in
/// their clock sequence (the worker's index) and node (the load's name), so
/// ids never repeat across workers, loads or runs, and one sender's
/// timestamps strictly increase.
#[derive(Debug)]
pub struct DeliveryIds {
    clock_seq: u16,
    node: [u8; 6],
    last_tick: u64,
}

impl DeliveryIds {
    /// Ids for worker `worker` of the load named `load`.
    pub fn new(load: &str, worker: usize) -> Self {
        // The clock sequence holds 14 bits of the worker (the UUID's variant
        // bits are the builder's); the node's last two bytes the next 16.
        let mut node = node_of(load);
        let high = ((worker >> 14) as u16).to_be_bytes();
        node[4] ^= high[0];
        node[5] ^= high[1];
        DeliveryIds {
            clock_seq: worker as u16 & 0x3fff,
            node,
            last_tick: 0,
        }
    }

    /// The next id, of now (or one tick past the last, if the clock has not
    /// moved or went back).
    pub fn next_id(&mut self) -> String {
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let tick = (since_unix.as_nanos() / 100) as u64 + GREGORIAN_TO_UNIX_TICKS;
        self.last_tick = tick.max(self.last_tick + 1);
        uuid::Builder::from_gregorian_timestamp(self.last_tick, self.clock_seq, &self.node)
            .into_uuid()
            .to_string()
    }
}

/// A UUID's 48-bit node from a load's name (FNV-1a), with the multicast bit
/// set as RFC 9562 asks of a node that is not a MAC address.
fn node_of(load: &str) -> [u8; 6] {
    let hash = load.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let [_, _, node @ ..] = hash.to_be_bytes();
    let mut node: [u8; 6] = node;
    node[0] |= 0x01;
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tick of a version-1 UUID's text.
    fn tick_of(id: &str) -> u64 {
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(uuid.get_version_num(), 1, "{id}");
        uuid.get_timestamp().unwrap().to_gregorian().0
    }

    #[test]
    fn githubs_example_guid_decodes_to_its_delivered_at() {
        // GitHub's REST API description: guid and delivered_at of one
        // example delivery. 2021-05-12T20:33:44Z is 1,620,851,624 s.
        let tick = tick_of("58474f00-b361-11eb-836d-0e4f3503ccbe");
        let unix_ms = (tick - GREGORIAN_TO_UNIX_TICKS) / 10_000;
        assert_eq!(unix_ms, 1_620_851_623_920);
        let node = [0x0e, 0x4f, 0x35, 0x03, 0xcc, 0xbe];
        assert_eq!(
            uuid::Builder::from_gregorian_timestamp(tick, 0x036d, &node)
                .into_uuid()
                .to_string(),
            "58474f00-b361-11eb-836d-0e4f3503ccbe"
        );
    }

    #[test]
    fn ids_are_version_1_uuids_of_now_and_never_repeat() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for load in ["pg2a", "pg2b"] {
            for worker in [0, 1, 63, 16_384, 16_385] {
                let mut ids = DeliveryIds::new(load, worker);
                for _ in 0..1000 {
                    let id = ids.next_id();
                    assert_eq!(id.len(), 36);
                    assert_eq!(&id[14..15], "1", "version 1: {id}");
                    assert!(
                        matches!(&id[19..20], "8" | "9" | "a" | "b"),
                        "variant: {id}"
                    );
                    let tick = tick_of(&id);
                    let ms = (tick - GREGORIAN_TO_UNIX_TICKS) / 10_000;
                    assert!(ms + 1 >= before && ms < before + 60_000, "{id}: {ms}");
                    assert!(seen.insert(id));
                    last = tick;
                }
            }
        }
        assert!(last > 0);
    }

    #[test]
    fn one_senders_ids_ascend_even_when_the_clock_does_not_move() {
        let mut ids = DeliveryIds::new("delivery", 7);
        let ticks: Vec<u64> = (0..10_000).map(|_| tick_of(&ids.next_id())).collect();
        assert!(ticks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sha1_signature_matches_openssl() {
        // printf 'Hello, World!' | openssl dgst -sha1 -hmac bench-secret
        assert_eq!(payload::SECRET, "bench-secret");
        assert_eq!(
            sha1_signature(b"Hello, World!"),
            "sha1=899caba8d99f58efa6152fa78df73fd50e230fdc"
        );
    }

    #[test]
    fn headers_are_githubs_and_carry_both_signatures() {
        let body = payload::issue_opened_small();
        let headers = delivery_headers(&body).unwrap();
        assert_eq!(headers["x-github-event"], "issues");
        assert!(
            headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("GitHub-Hookshot/")
        );
        assert_eq!(
            headers["x-hub-signature-256"].to_str().unwrap(),
            payload::github_signature(&body)
        );
        assert_eq!(
            headers["x-hub-signature"].to_str().unwrap(),
            sha1_signature(&body)
        );
        assert!(
            headers.get("x-github-delivery").is_none(),
            "one per request"
        );
    }
}
