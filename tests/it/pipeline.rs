//! The whole path: a signed GitHub webhook is verified and transformed by
//! built-in wasm plugins and arrives at a destination.

use std::time::Duration;

use crate::support::gateway::TestGateway;
use crate::support::receiver::MockReceiver;
use crate::support::sign;

const SECRET: &str = "it's-a-secret";

fn issue_opened() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/github-issue-opened.json"
    ))
    .unwrap()
}

async fn github_route(sink: &MockReceiver) -> TestGateway {
    TestGateway::spawn(&format!(
        r#"
destinations:
  teams: {{ url: "{}", timeout: 5s }}
routes:
  github:
    verify: {{ plugin: github, with: {{ secret: "{SECRET}" }} }}
    transform: [ {{ plugin: github-teams, with: {{ card: message-card }} }} ]
    to: [teams]
"#,
        sink.url("/teams")
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_github_issue_arrives_as_a_message_card() {
    let sink = MockReceiver::start().await;
    let gw = github_route(&sink).await;
    let body = issue_opened();
    let sig = sign::github(SECRET, &body);
    let resp = gw
        .post(
            "github",
            &[
                ("content-type", "application/json"),
                ("x-github-event", "issues"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-hub-signature-256", &sig),
            ],
            &body,
        )
        .await;
    assert_eq!(resp.status(), 202);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(
        answer["id"].as_str().unwrap().starts_with("evt_"),
        "{answer}"
    );
    assert_eq!(answer["deliveries"], 1);

    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let delivery = &got[0];
    assert_eq!(delivery.uri.path(), "/teams");
    assert_eq!(delivery.header("content-type"), Some("application/json"));
    assert_eq!(
        delivery.header("webhook-id"),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "the provider's delivery id is the stable id sent on"
    );
    let card = delivery.json();
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["@context"], "https://schema.org/extensions");
    assert!(
        card["title"].as_str().unwrap().contains("Found a bug"),
        "{card}"
    );
    assert!(!card["summary"].as_str().unwrap().is_empty());
    assert!(
        card["themeColor"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    let facts = card["sections"][0]["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["value"] == "#1347"), "{card}");
    let action = &card["potentialAction"][0];
    assert_eq!(action["@type"], "OpenUri");
    assert_eq!(
        action["targets"][0]["uri"],
        "https://github.com/octo-org/hello-world/issues/1347"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_signature_gets_401_and_delivers_nothing() {
    let sink = MockReceiver::start().await;
    let gw = github_route(&sink).await;
    let body = issue_opened();
    let wrong = sign::github("not-the-secret", &body);
    let resp = gw
        .post(
            "github",
            &[
                ("x-github-event", "issues"),
                ("x-hub-signature-256", &wrong),
            ],
            &body,
        )
        .await;
    assert_eq!(resp.status(), 401);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "verification_failed");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{err}"
    );

    let missing = gw
        .post("github", &[("x-github-event", "issues")], &body)
        .await;
    assert_eq!(missing.status(), 401);

    // A good request afterwards proves the sink is reachable, so the count
    // below really shows that the bad ones were not delivered.
    let sig = sign::github(SECRET, &body);
    let ok = gw
        .post("github", &[("x-hub-signature-256", &sig)], &body)
        .await;
    assert_eq!(ok.status(), 202);
    sink.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_is_checked_over_the_raw_bytes() {
    // Same JSON, different whitespace: a gateway that re-serialised the
    // body before verifying would accept this.
    let sink = MockReceiver::start().await;
    let gw = github_route(&sink).await;
    let body = issue_opened();
    let sig = sign::github(SECRET, &body);
    let reformatted =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&body).unwrap())
            .unwrap();
    let resp = gw
        .post("github", &[("x-hub-signature-256", &sig)], &reformatted)
        .await;
    assert_eq!(resp.status(), 401);
}
