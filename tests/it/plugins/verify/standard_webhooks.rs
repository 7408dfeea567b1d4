//! `standard-webhooks`: `webhook-id` / `webhook-timestamp` /
//! `webhook-signature: v1,<b64> ...` over `"{id}.{ts}.{body}"`, keyed with
//! base64-decode(secret without `whsec_`); Svix's `svix-*` headers too.

use serde_json::json;

use super::*;

// The Standard Webhooks reference vector, from the spec's own libraries
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// `TestWebhookSign`; the same values are in Svix's library tests).
const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
const VECTOR_BODY: &str = r#"{"test": 2432232314}"#;
const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// 32 key bytes, as a `whsec_` secret.
const KEY: &[u8] = b"standard-webhooks-test-key-32byt";

fn secret() -> String {
    format!("whsec_{}", b64(KEY))
}

fn sign(id: &str, timestamp: i64, body: &str) -> String {
    format!(
        "v1,{}",
        b64(hmac_sha256(
            KEY,
            format!("{id}.{timestamp}.{body}").as_bytes()
        ))
    )
}

fn plugin() -> TestPlugin {
    TestPlugin::builtin("standard-webhooks", json!({ "secret": secret() }))
}

fn request(id: &str, timestamp: i64, signature: &str, body: &str) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec())
        .header("webhook-id", id)
        .header("webhook-timestamp", &timestamp.to_string())
        .header("webhook-signature", signature)
        .at_ms(NOW_MS)
}

#[test]
fn standard_webhooks_test_vector_verifies() {
    let req = TestRequest::post(VECTOR_BODY.as_bytes().to_vec())
        .header("webhook-id", VECTOR_ID)
        .header("webhook-timestamp", &VECTOR_TIMESTAMP.to_string())
        .header("webhook-signature", VECTOR_SIGNATURE)
        .at_ms(VECTOR_TIMESTAMP as u64 * 1000);
    let p = TestPlugin::builtin("standard-webhooks", json!({ "secret": VECTOR_SECRET }));
    let (id, _, _) = expect_accept(p.verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some(VECTOR_ID));
}

#[test]
fn secret_without_the_whsec_prefix_works() {
    let req = TestRequest::post(VECTOR_BODY.as_bytes().to_vec())
        .header("webhook-id", VECTOR_ID)
        .header("webhook-timestamp", &VECTOR_TIMESTAMP.to_string())
        .header("webhook-signature", VECTOR_SIGNATURE)
        .at_ms(VECTOR_TIMESTAMP as u64 * 1000);
    let bare = VECTOR_SECRET.trim_start_matches("whsec_");
    let p = TestPlugin::builtin("standard-webhooks", json!({ "secret": bare }));
    expect_accept(p.verify(&req).expect("plugin call"));
}

#[test]
fn valid_signature_is_accepted_with_message_id_and_event_type() {
    let body = r#"{"type":"invoice.paid","timestamp":"2023-11-14T22:13:20Z","data":{}}"#;
    let req = request("msg_2", NOW_SECS, &sign("msg_2", NOW_SECS, body), body);
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("msg_2"));
    assert_eq!(event_type.as_deref(), Some("invoice.paid"));
}

#[test]
fn svix_headers_are_accepted() {
    let body = r#"{"type":"user.created"}"#;
    let req = TestRequest::post(body.as_bytes().to_vec())
        .header("svix-id", "msg_svix")
        .header("svix-timestamp", &NOW_SECS.to_string())
        .header("svix-signature", &sign("msg_svix", NOW_SECS, body))
        .at_ms(NOW_MS);
    let (id, event_type, _) = expect_accept(plugin().verify(&req).expect("plugin call"));
    assert_eq!(id.as_deref(), Some("msg_svix"));
    assert_eq!(event_type.as_deref(), Some("user.created"));
}

#[test]
fn one_matching_v1_among_several_signatures_is_enough() {
    // Key rotation sends several; other versions (v1a is Ed25519) are skipped.
    let body = "{}";
    let header = format!(
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {} v1a,AAAA",
        sign("msg_3", NOW_SECS, body)
    );
    let req = request("msg_3", NOW_SECS, &header, body);
    expect_accept(plugin().verify(&req).expect("plugin call"));
}

#[test]
fn malformed_v1_is_skipped_and_alone_is_a_mismatch() {
    let body = "{}";
    let header = format!("v1,not-base64! {}", sign("msg_3b", NOW_SECS, body));
    let req = request("msg_3b", NOW_SECS, &header, body);
    expect_accept(plugin().verify(&req).expect("plugin call"));

    let req = request("msg_3b", NOW_SECS, "v1,not-base64!", body);
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("does not match"), "{reason}");
}

#[test]
fn wrong_signature_is_rejected() {
    let body = "{}";
    let req = request(
        "msg_4",
        NOW_SECS,
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        body,
    );
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("webhook-signature"), "{reason}");
    assert_no_leak(&reason, &[&secret(), &sign("msg_4", NOW_SECS, body)]);
}

#[test]
fn signature_for_another_message_id_is_rejected() {
    let body = "{}";
    let req = request("msg_5", NOW_SECS, &sign("msg_other", NOW_SECS, body), body);
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn only_other_versions_is_rejected() {
    let req = request("msg_6", NOW_SECS, "v1a,AAAA v2,BBBB", "{}");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("v1"), "{reason}");
}

#[test]
fn stale_timestamp_is_rejected() {
    let t = NOW_SECS - 301;
    let req = request("msg_7", t, &sign("msg_7", t, "{}"), "{}");
    let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
    assert!(reason.contains("webhook-timestamp"), "{reason}");
}

#[test]
fn future_timestamp_is_rejected() {
    let t = NOW_SECS + 301;
    let req = request("msg_8", t, &sign("msg_8", t, "{}"), "{}");
    expect_reject(plugin().verify(&req).expect("plugin call"), 401);
}

#[test]
fn missing_headers_are_rejected_naming_the_header() {
    let body = "{}";
    let full = [
        ("webhook-id", "msg_9".to_owned()),
        ("webhook-timestamp", NOW_SECS.to_string()),
        ("webhook-signature", sign("msg_9", NOW_SECS, body)),
    ];
    for skip in 0..full.len() {
        let mut req = TestRequest::post(body.as_bytes().to_vec()).at_ms(NOW_MS);
        for (i, (name, value)) in full.iter().enumerate() {
            if i != skip {
                req = req.header(name, value);
            }
        }
        let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
        assert!(reason.contains(full[skip].0), "{reason}");
    }
}

#[test]
fn malformed_timestamp_is_rejected() {
    for timestamp in ["soon", "1614265330.5", ""] {
        let req = TestRequest::post(b"{}".to_vec())
            .header("webhook-id", "msg_10")
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", &sign("msg_10", NOW_SECS, "{}"))
            .at_ms(NOW_MS);
        let reason = expect_reject(plugin().verify(&req).expect("plugin call"), 401);
        assert!(reason.contains("webhook-timestamp"), "{reason}");
    }
}

#[test]
fn secret_that_is_not_base64_is_a_config_error() {
    let p = TestPlugin::builtin(
        "standard-webhooks",
        json!({ "secret": "whsec_not base64!" }),
    );
    let req = request("msg_11", NOW_SECS, &sign("msg_11", NOW_SECS, "{}"), "{}");
    let reason = expect_config_error(p.verify(&req));
    assert!(!reason.contains("not base64!"), "{reason}");
}

#[test]
fn missing_secret_is_a_config_error() {
    let p = TestPlugin::builtin("standard-webhooks", json!({}));
    let req = request("msg_12", NOW_SECS, &sign("msg_12", NOW_SECS, "{}"), "{}");
    expect_config_error(p.verify(&req));
}

// --- v1a: Ed25519 with whpk_ public keys ---------------------------------
//
// The spec defines `v1a,<base64 Ed25519 signature>` over the same
// `{id}.{timestamp}.{body}`, with `whpk_<base64 public key>` keys. Its
// reference libraries publish no v1a vector, so signatures are made here
// with ed25519-dalek's signer from fixed seeds.

mod v1a {
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::json;

    use super::super::*;
    use crate::support::gateway::TestGateway;

    const NEW_SEED: [u8; 32] = [7; 32];
    const OLD_SEED: [u8; 32] = [9; 32];

    fn whpk(seed: [u8; 32]) -> String {
        format!(
            "whpk_{}",
            b64(SigningKey::from_bytes(&seed).verifying_key().as_bytes())
        )
    }

    fn sign(seed: [u8; 32], id: &str, timestamp: i64, body: &str) -> String {
        let signature =
            SigningKey::from_bytes(&seed).sign(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1a,{}", b64(signature.to_bytes()))
    }

    fn plugin(secret: serde_json::Value) -> TestPlugin {
        TestPlugin::builtin("standard-webhooks", json!({ "secret": secret }))
    }

    fn request(id: &str, timestamp: i64, signature: &str, body: &str) -> TestRequest {
        TestRequest::post(body.as_bytes().to_vec())
            .header("webhook-id", id)
            .header("webhook-timestamp", &timestamp.to_string())
            .header("webhook-signature", signature)
            .at_ms(NOW_MS)
    }

    const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;

    #[test]
    fn valid_v1a_signature_is_accepted() {
        let req = request(
            "msg_a1",
            NOW_SECS,
            &sign(NEW_SEED, "msg_a1", NOW_SECS, BODY),
            BODY,
        );
        let (id, event_type, _) =
            expect_accept(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap());
        assert_eq!(id.as_deref(), Some("msg_a1"));
        assert_eq!(event_type.as_deref(), Some("invoice.paid"));
    }

    #[test]
    fn several_public_keys_rotate() {
        let keys = json!([whpk(NEW_SEED), whpk(OLD_SEED)]);
        for seed in [NEW_SEED, OLD_SEED] {
            let req = request(
                "msg_a2",
                NOW_SECS,
                &sign(seed, "msg_a2", NOW_SECS, BODY),
                BODY,
            );
            expect_accept(plugin(keys.clone()).verify(&req).unwrap());
        }
        // A key that is no longer listed no longer verifies.
        let req = request(
            "msg_a2",
            NOW_SECS,
            &sign(OLD_SEED, "msg_a2", NOW_SECS, BODY),
            BODY,
        );
        expect_reject(plugin(json!([whpk(NEW_SEED)])).verify(&req).unwrap(), 401);
    }

    #[test]
    fn one_matching_entry_among_several_is_enough() {
        let header = format!(
            "v1a,{} {} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            b64([0u8; 64]),
            sign(NEW_SEED, "msg_a3", NOW_SECS, BODY)
        );
        let req = request("msg_a3", NOW_SECS, &header, BODY);
        expect_accept(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap());
    }

    #[test]
    fn a_list_may_mix_hmac_secrets_and_public_keys() {
        let secret = format!("whsec_{}", b64(b"standard-webhooks-test-key-32byt"));
        let keys = json!([secret, whpk(NEW_SEED)]);
        let hmac = format!(
            "v1,{}",
            b64(hmac_sha256(
                b"standard-webhooks-test-key-32byt",
                format!("msg_a4.{NOW_SECS}.{BODY}").as_bytes()
            ))
        );
        for signature in [hmac, sign(NEW_SEED, "msg_a4", NOW_SECS, BODY)] {
            let req = request("msg_a4", NOW_SECS, &signature, BODY);
            expect_accept(plugin(keys.clone()).verify(&req).unwrap());
        }
    }

    #[test]
    fn tampered_body_id_or_timestamp_is_rejected() {
        let signature = sign(NEW_SEED, "msg_a5", NOW_SECS, BODY);
        for req in [
            request(
                "msg_a5",
                NOW_SECS,
                &signature,
                &BODY.replace("in_1", "in_2"),
            ),
            request("msg_other", NOW_SECS, &signature, BODY),
            request("msg_a5", NOW_SECS + 1, &signature, BODY),
        ] {
            let reason = expect_reject(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap(), 401);
            assert!(reason.contains("does not match"), "{reason}");
        }
    }

    #[test]
    fn stale_v1a_timestamp_is_rejected() {
        let t = NOW_SECS - 301;
        let req = request("msg_a6", t, &sign(NEW_SEED, "msg_a6", t, BODY), BODY);
        let reason = expect_reject(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap(), 401);
        assert!(reason.contains("webhook-timestamp"), "{reason}");
    }

    #[test]
    fn missing_or_other_version_signature_is_rejected() {
        let mut req = TestRequest::post(BODY.as_bytes().to_vec())
            .header("webhook-id", "msg_a7")
            .header("webhook-timestamp", &NOW_SECS.to_string())
            .at_ms(NOW_MS);
        let reason = expect_reject(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap(), 401);
        assert!(reason.contains("missing webhook-signature"), "{reason}");
        // Only a v1 entry, and no whsec_ key to check it with.
        req = req.header(
            "webhook-signature",
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        );
        let reason = expect_reject(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap(), 401);
        assert!(reason.contains("no v1a signature"), "{reason}");
        // Malformed v1a entries never match.
        let req = request("msg_a7", NOW_SECS, "v1a,not-base64! v1a,AAAA", BODY);
        expect_reject(plugin(json!(whpk(NEW_SEED))).verify(&req).unwrap(), 401);
    }

    #[test]
    fn bad_keys_are_config_errors() {
        let req = request(
            "msg_a8",
            NOW_SECS,
            &sign(NEW_SEED, "msg_a8", NOW_SECS, BODY),
            BODY,
        );
        let private = format!("whsk_{}", b64(NEW_SEED));
        let short = format!("whpk_{}", b64([1u8; 16]));
        for secret in [
            json!(private),
            json!(short),
            json!("whpk_!!"),
            json!([]),
            json!([whpk(NEW_SEED), ""]),
        ] {
            let reason = expect_config_error(plugin(secret).verify(&req));
            assert!(!reason.contains(&b64(NEW_SEED)), "{reason}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn through_the_binary() {
        let gw = TestGateway::spawn(&format!(
            "destinations:\n  out: {{ kind: log }}\nroutes:\n  r:\n    verify: {{ plugin: standard-webhooks, with: {{ secret: [\"{}\", \"{}\"] }} }}\n    to: [out]\n",
            whpk(NEW_SEED),
            whpk(OLD_SEED)
        ))
        .await;
        let t = now_secs();
        let send_with = |id: &'static str, t: i64, signature: String, body: String| {
            let gw = &gw;
            async move {
                let ts = t.to_string();
                send(
                    gw,
                    "POST",
                    "",
                    &[
                        ("content-type", "application/json"),
                        ("webhook-id", id),
                        ("webhook-timestamp", &ts),
                        ("webhook-signature", &signature),
                    ],
                    body.as_bytes(),
                )
                .await
            }
        };
        let (status, _, text) = send_with(
            "msg_b1",
            t,
            sign(OLD_SEED, "msg_b1", t, BODY),
            BODY.to_owned(),
        )
        .await;
        assert_eq!(status, 202, "{text}");
        let (status, _, _) = send_with(
            "msg_b2",
            t,
            sign(NEW_SEED, "msg_b2", t, BODY),
            BODY.replace("in_1", "in_9"),
        )
        .await;
        assert_eq!(status, 401);
        let stale = t - 3600;
        let (status, _, text) = send_with(
            "msg_b3",
            stale,
            sign(NEW_SEED, "msg_b3", stale, BODY),
            BODY.to_owned(),
        )
        .await;
        assert_eq!(status, 401);
        assert!(text.contains("webhook-timestamp"), "{text}");
        let (status, _, _) = send(
            &gw,
            "POST",
            "",
            &[("webhook-id", "msg_b4")],
            BODY.as_bytes(),
        )
        .await;
        assert_eq!(status, 401);
    }
}
