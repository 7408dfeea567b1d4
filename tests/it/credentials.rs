//! Credentials authenticate a webhook to the gateway and stop there: no
//! destination, store row or admin answer carries them unless a route
//! explicitly keeps one for its destination (and admin output redacts even
//! that).

use std::time::Duration;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;

const TOKEN: &str = "gitlab-shared-token-never-forwarded";
const BODY: &[u8] = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;

async fn gitlab_gateway(sink: &MockReceiver, keep: &str) -> TestGateway {
    let yaml = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}", timeout: 5s }}
routes:
  gitlab:
    verify: {{ plugin: gitlab, with: {{ secret: "{TOKEN}" }} }}
    to: [sink]
{keep}
"#,
        sink.url("/in")
    );
    TestGateway::spawn(&yaml).await
}

/// Posts a GitLab push with its token (and a cookie and a bearer token,
/// which are credentials too) and returns the event id.
async fn post_push(gw: &TestGateway) -> String {
    let resp = gw
        .post(
            "gitlab",
            &[
                ("content-type", "application/json"),
                ("x-gitlab-token", TOKEN),
                ("x-gitlab-event", "Push Hook"),
                ("authorization", "Bearer also-a-secret"),
                ("cookie", "session=also-a-secret"),
            ],
            BODY,
        )
        .await;
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_token_never_reaches_a_destination_or_the_admin_api() {
    let sink = MockReceiver::start().await;
    let gw = gitlab_gateway(&sink, "").await;
    let id = post_push(&gw).await;

    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let delivered = &got[0];
    assert_eq!(&delivered.body[..], BODY);
    assert_eq!(delivered.header("x-gitlab-event"), Some("Push Hook"));
    for name in ["x-gitlab-token", "authorization", "cookie"] {
        assert!(
            delivered.headers.get(name).is_none(),
            "{name} was forwarded: {:?}",
            delivered.headers
        );
    }
    let all_headers = format!("{:?}", delivered.headers);
    assert!(!all_headers.contains("also-a-secret") && !all_headers.contains(TOKEN));

    let event = gw.admin_get(&format!("/admin/events/{id}")).await;
    let text = event.to_string();
    assert!(
        event["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "{event:#}"
    );
    assert!(
        !text.contains(TOKEN),
        "the admin API shows the token: {event:#}"
    );
    assert!(!text.contains("also-a-secret"), "{event:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_may_keep_a_credential_for_its_destination_but_admin_redacts_it() {
    let sink = MockReceiver::start().await;
    let gw = gitlab_gateway(&sink, "    keep_headers: [X-Gitlab-Token]").await;
    let id = post_push(&gw).await;

    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("x-gitlab-token"), Some(TOKEN));
    assert!(got[0].headers.get("authorization").is_none());

    let event = gw.admin_get(&format!("/admin/events/{id}")).await;
    assert!(!event.to_string().contains(TOKEN), "{event:#}");
    let headers = event["messages"][0]["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "x-gitlab-token" && h[1] == "[redacted]"),
        "{event:#}"
    );
}
