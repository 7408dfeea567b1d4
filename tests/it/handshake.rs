//! Provider handshakes answered by verify plugins through the real binary:
//! the plugin's response goes straight back, and nothing is stored or
//! delivered.

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::sign;

async fn gateway() -> TestGateway {
    TestGateway::spawn(&format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  console: {{ kind: log }}
routes:
  slack:
    verify: {{ plugin: slack, with: {{ secret: slack-secret }} }}
    to: [console]
  dropbox:
    verify: {{ plugin: dropbox, with: {{ secret: dropbox-secret }} }}
    to: [console]
  graph:
    verify: {{ plugin: graph }}
    to: [console]
  meta:
    verify: {{ plugin: meta, with: {{ secret: meta-secret, verify_token: meta-token }} }}
    to: [console]
  kaizala:
    verify: {{ plugin: kaizala, with: {{ secret: kz-token }} }}
    to: [console]
"#
    ))
    .await
}

async fn text(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, resp.text().await.unwrap())
}

async fn nothing_stored(gw: &TestGateway) {
    let page = gw.admin_get("/admin/events").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        0,
        "handshakes are not events: {page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_url_verification_echoes_the_challenge() {
    let gw = gateway().await;
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = hookgate::clock::now_ms() / 1000;
    let sig = sign::slack("slack-secret", ts, body);
    let resp = gw
        .post(
            "slack",
            &[
                ("content-type", "application/json"),
                ("x-slack-request-timestamp", &ts.to_string()),
                ("x-slack-signature", &sig),
            ],
            body,
        )
        .await;
    let (status, ct, text) = text(resp).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");

    // The same challenge unsigned is refused: the handshake is authenticated.
    let unsigned = gw
        .post("slack", &[("content-type", "application/json")], body)
        .await;
    assert_eq!(unsigned.status(), 401);
    nothing_stored(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropbox_challenge_get_is_echoed() {
    let gw = gateway().await;
    let resp = gw
        .client()
        .get(gw.url("/hooks/dropbox?challenge=dbx-challenge-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff")
    );
    let (status, ct, text) = text(resp).await;
    assert_eq!((status, text.as_str()), (200, "dbx-challenge-123"));
    assert!(ct.starts_with("text/plain"), "{ct}");
    nothing_stored(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_validation_token_on_a_post_is_echoed_decoded() {
    let gw = gateway().await;
    let resp = gw
        .client()
        .post(gw.url("/hooks/graph?validationToken=Validation%3A%20Testing%20client%20application%20reachability"))
        .send()
        .await
        .unwrap();
    let (status, ct, text) = text(resp).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(text, "Validation: Testing client application reachability");
    nothing_stored(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_hub_challenge_needs_the_verify_token() {
    let gw = gateway().await;
    let ok = gw
        .client()
        .get(gw.url(
            "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-token",
        ))
        .send()
        .await
        .unwrap();
    let (status, _, text) = text(ok).await;
    assert_eq!((status, text.as_str()), (200, "1158201444"));
    let wrong =
        gw.client()
            .get(gw.url(
                "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess",
            ))
            .send()
            .await
            .unwrap();
    assert_eq!(wrong.status(), 403);
    nothing_stored(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kaizala_validation_token_is_echoed() {
    let gw = gateway().await;
    let resp = gw
        .client()
        .get(gw.url("/hooks/kaizala?validationToken=kz-4f1c2a"))
        .send()
        .await
        .unwrap();
    let (status, ct, text) = text(resp).await;
    assert_eq!((status, text.as_str()), (200, "kz-4f1c2a"));
    assert!(ct.starts_with("text/plain"), "{ct}");
    // A callback without the token is refused.
    let refused = gw
        .post("kaizala", &[("content-type", "application/json")], b"{}")
        .await;
    assert_eq!(refused.status(), 401);
    nothing_stored(&gw).await;
}
