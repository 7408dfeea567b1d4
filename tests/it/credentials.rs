//! Credentials authenticate a webhook to the gateway and stop there: no
//! destination, store row or admin answer carries them unless a route
//! explicitly keeps one for its destination (and admin output redacts even
//! that).

use std::time::Duration;

use crate::plugins::verify::{b64, hmac_sha1};
use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;

const TOKEN: &str = "gitlab-shared-token-never-forwarded";
const BODY: &[u8] = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;

/// A gateway with the admin API and one route `route` (`verify`, and
/// `extra` YAML lines of the route) delivering to `sink`.
async fn gateway(sink: &MockReceiver, route: &str, verify: &str, extra: &str) -> TestGateway {
    let yaml = format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  sink: {{ url: "{}", timeout: 5s }}
routes:
  {route}:
    verify: {verify}
    to: [sink]
{extra}
"#,
        sink.url("/in")
    );
    TestGateway::spawn(&yaml).await
}

async fn gitlab_gateway(sink: &MockReceiver, keep: &str) -> TestGateway {
    let verify = format!("{{ plugin: gitlab, with: {{ secret: \"{TOKEN}\" }} }}");
    gateway(sink, "gitlab", &verify, keep).await
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

/// The stored copy of the inbound request (the console's event page) has
/// credentials redacted by the same rules as forwarding: Trello's
/// `X-Trello-Webhook` signature, whose name says nothing, included.
#[tokio::test(flavor = "multi_thread")]
async fn the_stored_inbound_request_keeps_no_signature() {
    const SECRET: &str = "trello-oauth-secret-for-tests";
    const CALLBACK: &str = "https://hooks.example.com/hooks/trello";
    const BODY: &str =
        r#"{"action":{"id":"5f1a2b3c4d5e6f7a8b9c0d1e","type":"updateCard","data":{}}}"#;
    let sink = MockReceiver::start().await;
    let verify = format!(
        "{{ plugin: trello, with: {{ secret: \"{SECRET}\", callback_url: \"{CALLBACK}\" }} }}"
    );
    let gw = gateway(&sink, "trello", &verify, "").await;
    let signature = b64(hmac_sha1(
        SECRET.as_bytes(),
        format!("{BODY}{CALLBACK}").as_bytes(),
    ));
    let resp = gw
        .post(
            "trello",
            &[
                ("content-type", "application/json"),
                ("x-trello-webhook", &signature),
                ("x-request-note", "plain-visible-value"),
            ],
            BODY.as_bytes(),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sink.wait_for(1, Duration::from_secs(10)).await;

    // Sign in to the console over plain HTTP: the sign-in form's cookie is
    // its CSRF token; the answer to the form sets the session cookie.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test's own client, redirects off to read the session cookie"
    )]
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let cookie_of = |resp: &reqwest::Response, name: &str| -> String {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie: {:?}", resp.headers()))
            .to_owned()
    };
    let form = client.get(gw.url("/ui")).send().await.unwrap();
    let csrf = cookie_of(&form, "hookgate_console_login");
    let signed_in = client
        .post(gw.url("/ui"))
        .header("cookie", format!("hookgate_console_login={csrf}"))
        .form(&[("token", ADMIN_TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    let session = cookie_of(&signed_in, "hookgate_console");
    let page = client
        .get(gw.url(&format!("/ui/events/{id}")))
        .header("cookie", format!("hookgate_console={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let inbound = html
        .split("id=\"inbound-headers\"")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no inbound headers on the page: {html}"));
    assert!(
        inbound.contains("<th>x-trello-webhook</th><td>[redacted]</td>"),
        "{inbound}"
    );
    assert!(inbound.contains("plain-visible-value"), "{inbound}");
    let sig_start = &signature[..12];
    assert!(
        !html.contains(sig_start),
        "the signature is shown: {inbound}"
    );
}
