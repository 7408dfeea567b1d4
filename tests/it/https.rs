//! Deliveries over HTTPS: the public roots by default, a private CA with
//! `tls.ca_file`, a client certificate with `tls.client_cert_file` and
//! `tls.client_key_file`, files read again at a reload.

use std::time::Duration;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::pki::{self, Ca};
use crate::support::receiver::MockReceiver;
use crate::support::wait_until;

/// POSTs one webhook to `route` and returns its event id.
async fn post(gw: &TestGateway, route: &str) -> String {
    let resp = gw.post(route, &[], b"{\"n\":1}").await;
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// The delivery of event `id` (its only one), once it has an attempt.
async fn attempted(gw: &TestGateway, id: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = gw.admin_get(&format!("/admin/events/{id}")).await;
        let delivery = event["deliveries"][0].clone();
        if delivery["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return delivery;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt after 10 s: {event}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The config: one route per destination, `https` at `url`; `dests` is
/// the `destinations:` block's entries (each `name: { ... }`).
fn config(dests: &[(&str, String)]) -> String {
    let mut yaml = format!("admin: {{ token: \"{ADMIN_TOKEN}\" }}\ndestinations:\n");
    for (name, body) in dests {
        yaml.push_str(&format!(
            "  {name}: {{ {body}, timeout: 5s, retry: {{ schedule: [1h] }} }}\n"
        ));
    }
    yaml.push_str("routes:\n");
    for (name, _) in dests {
        yaml.push_str(&format!("  {name}:\n    to: [{name}]\n"));
    }
    yaml
}

/// A receiver whose certificate comes from a private CA: a destination
/// without `tls:` refuses it (the public roots do not lead to it), the
/// attempt is a retry whose error says why, and nothing reaches the
/// receiver; with `tls.ca_file` (a path relative to the config file), and
/// with `public_roots: false` besides, the delivery goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_only_by_a_destination_that_names_it() {
    let ca = Ca::new("hookgate test CA");
    let sink = MockReceiver::start_tls(&ca.server(), None, true).await;
    let url = sink.url("/in");
    let gw = TestGateway::spawn_with(
        &config(&[
            ("public", format!("url: \"{url}\"")),
            (
                "private",
                format!("url: \"{url}\", tls: {{ ca_file: ca.pem }}"),
            ),
            (
                "only",
                format!("url: \"{url}\", tls: {{ ca_file: ca.pem, public_roots: false }}"),
            ),
        ]),
        |dir| {
            pki::write(dir, "ca.pem", &ca.cert_pem);
        },
    )
    .await;

    let refused = post(&gw, "public").await;
    let delivery = attempted(&gw, &refused).await;
    assert_eq!(delivery["state"], "pending", "{delivery}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("connection failed")
            && error.contains("invalid peer certificate: UnknownIssuer"),
        "the error says the certificate was not trusted: {delivery}"
    );
    assert_eq!(sink.count(), 0, "an untrusted receiver got the body");
    assert!(sink.handshake_failures() >= 1);

    post(&gw, "private").await;
    post(&gw, "only").await;
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.answered == 200));
    // Offered HTTP/2 by ALPN, the gateway takes it.
    assert!(
        got.iter().all(|r| r.version == axum::http::Version::HTTP_2),
        "{:?}",
        got.iter().map(|r| r.version).collect::<Vec<_>>()
    );
}

/// A receiver that asks for a client certificate from its own CA: the
/// destination with `client_cert_file` and `client_key_file` presents it
/// (the receiver sees exactly that certificate), the one without is
/// refused at the handshake. A renewed certificate written over the same
/// file is presented after the next reload.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_presents_the_configured_client_certificate_and_a_reload_renews_it() {
    let ca = Ca::new("hookgate test CA");
    let clients = Ca::new("hookgate test client CA");
    let first = clients.client("gateway-1");
    // HTTP/1.1 only: over HTTP/2 the refusal ends the connection under the
    // request, which then says `connection closed` and not why.
    let sink = MockReceiver::start_tls(&ca.server(), Some(&clients.cert_pem), false).await;
    let url = sink.url("/in");
    let gw = TestGateway::spawn_with(
        &config(&[
            ("anonymous", format!("url: \"{url}\", tls: {{ ca_file: ca.pem }}")),
            (
                "known",
                format!(
                    "url: \"{url}\", tls: {{ ca_file: ca.pem, client_cert_file: client.pem, client_key_file: client.key }}"
                ),
            ),
        ]),
        |dir| {
            pki::write(dir, "ca.pem", &ca.cert_pem);
            pki::write(dir, "client.pem", &first.cert_pem);
            pki::write(dir, "client.key", &first.key_pem);
        },
    )
    .await;

    let refused = post(&gw, "anonymous").await;
    let delivery = attempted(&gw, &refused).await;
    assert_eq!(delivery["state"], "pending", "{delivery}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    // TLS 1.3: the client hears of it at its first read, after the
    // handshake, so the request failed rather than the connection.
    assert!(
        error.contains("received fatal alert: CertificateRequired"),
        "{delivery}"
    );
    assert_eq!(sink.count(), 0, "delivered without a client certificate");

    post(&gw, "known").await;
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].answered, 200);
    assert_eq!(
        got[0].client_cert.as_deref(),
        Some(&first.cert_der[..]),
        "the receiver saw another certificate"
    );

    // Renewed: a new certificate and key over the same files.
    let second = clients.client("gateway-2");
    pki::write(gw.dir(), "client.pem", &second.cert_pem);
    pki::write(gw.dir(), "client.key", &second.key_pem);
    let yaml = std::fs::read_to_string(gw.config_path()).unwrap();
    gw.reload_with(&yaml).await;
    post(&gw, "known").await;
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        got[1].client_cert.as_deref(),
        Some(&second.cert_der[..]),
        "the reload kept the old certificate"
    );
}

/// A reload whose TLS files are bad is refused at the key that names
/// them, and the running config keeps delivering.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_an_unreadable_ca_file_is_refused_and_delivery_goes_on() {
    let ca = Ca::new("hookgate test CA");
    let sink = MockReceiver::start_tls(&ca.server(), None, false).await;
    let url = sink.url("/in");
    let gw = TestGateway::spawn_with(
        &config(&[(
            "private",
            format!("url: \"{url}\", tls: {{ ca_file: ca.pem }}"),
        )]),
        |dir| {
            pki::write(dir, "ca.pem", &ca.cert_pem);
        },
    )
    .await;
    let yaml = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), yaml.replace("ca.pem", "missing.pem")).unwrap();
    let resp = gw
        .admin(reqwest::Method::POST, "/admin/reload")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(!status.is_success(), "{status} {text}");
    assert!(
        text.contains("destinations.private.tls.ca_file") && text.contains("missing.pem"),
        "{text}"
    );
    post(&gw, "private").await;
    wait_until("the delivery", Duration::from_secs(10), || {
        sink.count() == 1
    })
    .await;
}
