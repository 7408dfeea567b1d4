//! `paypal` through the real binary: PayPal IPN verified by posting the
//! message back (`cmd=_notify-validate`) to a loopback stand-in of PayPal's
//! verify-back endpoint, which answers `VERIFIED` only for the exact bytes
//! it "sent". The stand-in is reachable only because the route's `http:`
//! block allows it; the plugin's default allow-list (PayPal's own hosts)
//! refuses it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

use crate::support::gateway::{ADMIN_TOKEN, TestGateway};
use crate::support::receiver::MockReceiver;

/// An IPN in the form PayPal sends (the IPN simulator's `web_accept`
/// message: field order and `windows-1252` charset as PayPal sends them;
/// `%E9` is "é" in windows-1252, which must go back unchanged).
const IPN: &str = "mc_gross=19.95&protection_eligibility=Eligible&address_status=confirmed&payer_id=LPLWNMTBWMFAY&tax=0.00&address_street=1+Main+St&payment_date=20%3A12%3A59+Jan+13%2C+2009+PST&payment_status=Completed&charset=windows-1252&address_zip=95131&first_name=Ren%E9&mc_fee=0.88&address_country_code=US&address_name=Test+User&notify_version=2.6&custom=&payer_status=verified&address_country=United+States&address_city=San+Jose&quantity=1&verify_sign=AtkOfCXbDm2hu0ZELryHFjY-Vb7PAUvS6nMXgysbElEn9v-1XcmSoGtf&payer_email=gpmac_1231902590_per%40paypal.com&txn_id=61E67681CH3238416&payment_type=instant&last_name=User&address_state=CA&receiver_email=gpmac_1231902686_biz%40paypal.com&payment_fee=0.88&receiver_id=S8XGHLYDW9T3S&txn_type=express_checkout&item_name=&mc_currency=USD&item_number=&residence_country=US&test_ipn=1&handling_amount=0.00&transaction_subject=&payment_gross=19.95&shipping=0.00&ipn_track_id=4830f7b42171d";

/// What the stand-in was asked: content type and body of each request.
type Asked = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A stand-in of `https://ipnpb.paypal.com/cgi-bin/webscr`: `VERIFIED`
/// for exactly `cmd=_notify-validate&` + a message it sent, `INVALID`
/// for anything else; records what it was asked.
struct FakePayPal {
    url: String,
    asked: Asked,
    /// Answer this status instead (PayPal having a bad day), when set.
    down: Arc<Mutex<Option<u16>>>,
}

async fn fake_paypal(sent: &'static str) -> FakePayPal {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let down = Arc::new(Mutex::new(None::<u16>));
    let app = Router::new().route(
        "/cgi-bin/webscr",
        post({
            let (asked, down) = (asked.clone(), down.clone());
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                asked
                    .lock()
                    .unwrap()
                    .push((content_type.clone(), body.to_vec()));
                if let Some(status) = *down.lock().unwrap() {
                    return (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        "down".to_owned(),
                    );
                }
                let genuine = [b"cmd=_notify-validate&".as_slice(), sent.as_bytes()].concat();
                let form = content_type.as_deref() == Some("application/x-www-form-urlencoded");
                let verdict = if form && body[..] == genuine[..] {
                    "VERIFIED"
                } else {
                    "INVALID"
                };
                (axum::http::StatusCode::OK, verdict.to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cgi-bin/webscr", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    FakePayPal { url, asked, down }
}

async fn gateway(paypal: &FakePayPal, orders: &MockReceiver) -> TestGateway {
    TestGateway::spawn(&format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  orders: {{ url: "{orders}" }}
routes:
  paypal:
    verify:
      plugin: paypal
      with: {{ url: "{paypal}" }}
      timeout: 2s
      http: {{ allow: [127.0.0.1], allow_private: [127.0.0.0/8] }}
    max_plugin_time: 2s
    to: [orders]
  paypal-defaults:
    verify: {{ plugin: paypal, with: {{ url: "{paypal}" }}, timeout: 2s }}
    max_plugin_time: 2s
    to: [orders]
"#,
        paypal = paypal.url,
        orders = orders.url("/orders"),
    ))
    .await
}

async fn ipn(gw: &TestGateway, route: &str, body: &[u8]) -> (u16, String) {
    let resp = gw
        .post(
            route,
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_ipn_is_answered_200_and_delivered() {
    let paypal = fake_paypal(IPN).await;
    let orders = MockReceiver::start().await;
    let gw = gateway(&paypal, &orders).await;

    let (status, body) = ipn(&gw, "paypal", IPN.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "", "PayPal wants an empty 200");

    // The message went back byte for byte, prefixed, form-encoded.
    let asked = paypal.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].0.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        asked[0].1,
        [b"cmd=_notify-validate&".as_slice(), IPN.as_bytes()].concat()
    );

    let got = orders.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        &got[0].body[..],
        IPN.as_bytes(),
        "the IPN is forwarded as received"
    );
    let events = gw.admin_get("/admin/events?route=paypal").await;
    let event: &Value = &events["events"][0];
    assert_eq!(event["source_id"], "4830f7b42171d", "{event}");
    assert_eq!(event["event_type"], "express_checkout", "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_missing_and_unverifiable_ipns_are_refused() {
    let paypal = fake_paypal(IPN).await;
    let orders = MockReceiver::start().await;
    let gw = gateway(&paypal, &orders).await;

    // Tampered: one field changed; PayPal answers INVALID.
    let tampered = IPN.replace("mc_gross=19.95", "mc_gross=1995.00");
    let (status, body) = ipn(&gw, "paypal", tampered.as_bytes()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("INVALID"), "{body}");
    assert_eq!(paypal.asked.lock().unwrap().len(), 1);

    // Missing: nothing to verify, and PayPal is not asked.
    let (status, body) = ipn(&gw, "paypal", b"").await;
    assert_eq!(status, 400, "{body}");
    let resp = gw
        .client()
        .get(gw.url("/hooks/paypal"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        paypal.asked.lock().unwrap().len(),
        1,
        "PayPal was not asked"
    );

    // PayPal cannot answer now: refused with the reason (PayPal resends).
    *paypal.down.lock().unwrap() = Some(503);
    let (status, body) = ipn(&gw, "paypal", IPN.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("503"), "{body}");
    *paypal.down.lock().unwrap() = None;

    // The plugin's default allow-list is PayPal's hosts: a loopback
    // stand-in is reachable only through the route's `http:` block.
    let (status, body) = ipn(&gw, "paypal-defaults", IPN.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("allow-list"), "{body}");
    assert_eq!(
        paypal.asked.lock().unwrap().len(),
        2,
        "refused before sending"
    );

    // None of these was stored, so none can be delivered; the genuine one
    // still is.
    let (status, _) = ipn(&gw, "paypal", IPN.as_bytes()).await;
    assert_eq!(status, 200);
    orders.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(orders.count(), 1, "only the verified IPN was delivered");
}
