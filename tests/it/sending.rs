//! The sending side to the letter: Kaizala's `/v1/webhook` reference
//! samples sent verbatim, its object-type catalogue and field spellings,
//! and ASP.NET WebHooks' sender (extra headers and properties, chosen
//! secrets, `ms-signature`), with secret rotation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::receiver::{MockReceiver, Received};
use crate::support::{sign, wait_until};

const KEY: &str = "tenant-a-key-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn yaml(extra: &str) -> String {
    format!(
        r#"
subscriptions:
  api_keys: {{ tenant-a: "{KEY}" }}
  allow_private_callbacks: [127.0.0.0/8]
  retry: {{ schedule: [30ms, 30ms, 30ms], jitter: 0 }}
  validation_timeout: 1s
  secret_rotation_overlap: 1h
{extra}
"#
    )
}

/// Sends `body` as the raw text given (so the reference's own bytes go on
/// the wire) and reads the JSON answer.
async fn call_raw(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = gw
        .client()
        .request(method, gw.url(path))
        .header("accessToken", KEY);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn call(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call_raw(gw, method, path, body.map(|b| b.to_string()).as_deref()).await
}

/// Subscribes `sink` to every event of group `o`; must succeed.
async fn subscribe_to_group_o(gw: &TestGateway, sink: &MockReceiver) {
    let (status, created) = call(
        gw,
        Method::POST,
        "/v1/webhook",
        Some(json!({ "objectId": "o", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": sink.url("/cb") })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
}

/// Publishes a `MemberAdded` event of group `object_id`: its answer,
/// which must be 202.
async fn publish_member_added(gw: &TestGateway, object_id: &str) -> Value {
    let (status, body) = call(
        gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": object_id, "objectType": "Group", "eventType": "MemberAdded", "data": {} })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body
}

async fn first_delivery(sink: &MockReceiver) -> Received {
    wait_until("a delivery", WAIT, || !sink.deliveries().is_empty()).await;
    sink.deliveries().remove(0)
}

/// Kaizala's reference (`/v1/webhook`, "Request Body - Subscribe to all
/// events at group level"), byte for byte but for the callback URL, which
/// must reach the test's receiver.
fn reference_create_body(callback: &str) -> String {
    r#"{  
   "objectId":"74943849802190eaea3810",
   "objectType":"Group",
   "eventTypes":[
      "ActionCreated",
      "ActionResponse",
      "SurveyCreated",
      "JobCreated",
      "SurveyResponse",
      "JobResponse",
      "TextMessageCreated",
      "AttachmentCreated",
      "Announcement",
      "MemberAdded",
      "MemberRemoved",
      "GroupAdded",
      "GroupRemoved"
   ],
   "callBackUrl":"https://requestb.in/123",
   "callBackToken":"tokenToBeVerifiedByCallback",
   "callBackContext":"Any data which is required to be returned in callback"
}
"#
    .replace("https://requestb.in/123", callback)
}

/// The reference's PUT sample ("Sample Request Body"), likewise.
fn reference_put_body(callback: &str) -> String {
    r#"    { 
       "objectId":"74943849802190eaea3810",
       "objectType":"Group",
       "eventTypes":[
          "ActionCreated",
          "ActionResponse",
          "SurveyCreated",
          "JobCreated",
          "SurveyResponse",
          "JobResponse",
          "TextMessageCreated",
          "AttachmentCreated",
          "Announcement",
          "MemberAdded",
          "MemberRemoved",
          "GroupAdded",
          "GroupRemoved"
       ],
       "callBackUrl":"https://requestb.in/123",
       "callBackToken":"tokenToBeVerifiedByCallback",
      "Active": "true" 
    } 
"#
    .replace("https://requestb.in/123", callback)
}

const ALL_13: [&str; 13] = [
    "ActionCreated",
    "ActionResponse",
    "SurveyCreated",
    "JobCreated",
    "SurveyResponse",
    "JobResponse",
    "TextMessageCreated",
    "AttachmentCreated",
    "Announcement",
    "MemberAdded",
    "MemberRemoved",
    "GroupAdded",
    "GroupRemoved",
];

#[tokio::test(flavor = "multi_thread")]
async fn kaizala_reference_samples_pass_verbatim() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let callback = sink.url("/kaizala");

    // POST: the reference's body with all 13 event types.
    let (status, created) = call_raw(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(&reference_create_body(&callback)),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["webhookId"].as_str().unwrap().to_owned();

    // GET (the reference's query) answers the reference's fields.
    let (status, list) = call(
        &gw,
        Method::GET,
        "/v1/webhook?objectId=74943849802190eaea3810&objectType=Group",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let hook = &list["webhooks"][0];
    assert_eq!(hook["id"], id.as_str());
    assert_eq!(hook["objectId"], "74943849802190eaea3810");
    assert_eq!(hook["objectType"], "Group");
    assert_eq!(hook["events"], json!(ALL_13));
    assert_eq!(hook["filters"], json!([]));
    assert_eq!(hook["callbackUrl"], callback.as_str());
    assert_eq!(hook["callbackToken"], "tokenToBeVerifiedByCallback");
    assert_eq!(hook["active"], true);
    // validity defaults to two years from creation (`ts`), in epoch ms
    // (the API takes its time a moment before the store stamps `ts`).
    let two_years_ms = 2 * 365 * 86_400_000_u64;
    let lifetime = hook["validity"].as_u64().unwrap() as i64 - hook["ts"].as_u64().unwrap() as i64;
    assert!(
        (lifetime - two_years_ms as i64).abs() < 60_000,
        "validity - ts = {lifetime}: {hook}"
    );
    // GET of one webhook answers the same view.
    let (status, one) = call(&gw, Method::GET, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(&one, hook);

    // An event comes back with callBackContext as `context` and the token.
    let (status, _) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "74943849802190eaea3810", "objectType": "Group", "eventType": "MemberAdded", "data": {} })),
    )
    .await;
    assert_eq!(status, 202);
    let got = first_delivery(&sink).await;
    assert_eq!(
        got.json()["context"],
        "Any data which is required to be returned in callback"
    );
    assert_eq!(
        got.header("kz-callback-token"),
        Some("tokenToBeVerifiedByCallback")
    );

    // PUT: the reference's sample body ("Active": "true" as a string).
    let validations_before = sink.received().len() - sink.deliveries().len();
    let (status, put) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(&reference_put_body(&callback)),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["active"], true);
    assert_eq!(
        sink.received().len() - sink.deliveries().len(),
        validations_before,
        "an unchanged callback URL is not validated again"
    );

    // Paused, then re-enabled with the reference's own `{"Active": "true"}`.
    let (status, paused) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(r#"{ "Active": "false" }"#),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["active"], false);
    let (status, resumed) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some("{ \n  \"Active\": \"true\" \n} \n"),
    )
    .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["active"], true);
    assert!(resumed["disabledReason"].is_null());

    // Strings other than "true"/"false" are refused, naming the key.
    let (status, err) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(r#"{"Active": "yes"}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "active");

    // DELETE, then it is gone.
    let (status, _) = call(&gw, Method::DELETE, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&gw, Method::GET, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn pascal_case_keys_string_validity_and_get_answers_are_accepted() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let validity = hookgate::clock::now_ms() + 86_400_000;
    let (status, created) = call(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(json!({
            "ObjectId": "g-1", "ObjectType": "Action", "EventTypes": ["ActionResponse"],
            "CallBackUrl": sink.url("/cb"), "Validity": validity.to_string(),
        })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["webhookId"].as_str().unwrap();
    let (_, view) = call(&gw, Method::GET, &format!("/v1/webhook/{id}"), None).await;
    assert_eq!(view["validity"], validity);
    assert_eq!(view["objectType"], "Action");

    // What GET answers, PUT accepts back unchanged.
    let (status, again) = call(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(view.clone()),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, view);

    // One key under two spellings is ambiguous: refused, naming it.
    let (status, err) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(r#"{"active": true, "Active": "false"}"#),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_types_come_from_a_configurable_catalogue() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let body = |t: &str| json!({ "objectId": "o", "objectType": t, "eventTypes": ["*"], "callBackUrl": sink.url("/cb") });
    let (status, err) = call(&gw, Method::POST, "/v1/webhook", Some(body("Planet"))).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["field"], "objectType");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Group, Action, ActionPackage"),
        "{err}"
    );
    for t in ["Group", "Action", "ActionPackage"] {
        let (status, b) = call(&gw, Method::POST, "/v1/webhook", Some(body(t))).await;
        assert_eq!(status, 200, "{t}: {b}");
    }
    let (status, _) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "o", "objectType": "Planet", "eventType": "e", "data": {} })),
    )
    .await;
    assert_eq!(status, 400);

    // The catalogue is the operator's: with Planet in it, Planet works,
    // and the served OpenAPI document lists it.
    let gw = TestGateway::spawn(&yaml("  object_types: [Planet, Moon]")).await;
    let (status, b) = call(&gw, Method::POST, "/v1/webhook", Some(body("Planet"))).await;
    assert_eq!(status, 200, "{b}");
    let (status, _) = call(&gw, Method::POST, "/v1/webhook", Some(body("Group"))).await;
    assert_eq!(status, 400);
    let doc: Value = gw
        .client()
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["schemas"]["CreateWebhook"]["properties"]["objectType"]["enum"],
        json!(["Planet", "Moon"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asp_net_style_subscriber_gets_its_headers_and_properties_and_verifies_ms_signature() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let secret = "an-asp-net-receiver-secret-0123456789";
    let (status, created) = call(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(json!({
            "objectId": "g-1", "objectType": "Group", "eventTypes": ["MemberAdded"],
            "callBackUrl": sink.url("/api/webhooks/incoming/custom"),
            "secret": secret,
            "signatureScheme": "ms-signature",
            "headers": { "X-Api-Key": "k-123", "X-Tenant": "blue" },
            "properties": { "region": "eu", "tier": 3 },
        })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["secret"], secret, "the subscriber's secret is kept");
    assert_eq!(created["signatureScheme"], "ms-signature");
    let (status, _) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "g-1", "objectType": "Group", "eventType": "MemberAdded", "data": { "member": "ana" } })),
    )
    .await;
    assert_eq!(status, 202);
    let got = first_delivery(&sink).await;
    assert_eq!(got.header("x-api-key"), Some("k-123"));
    assert_eq!(got.header("x-tenant"), Some("blue"));
    let body = got.json();
    assert_eq!(body["properties"], json!({ "region": "eu", "tier": 3 }));
    assert_eq!(body["data"]["member"], "ana");
    // The receiver's check: HMAC-SHA256 of the raw body with the secret.
    assert_eq!(
        got.header("ms-signature"),
        Some(sign::ms_signature(secret, &got.body).as_str())
    );
    assert_ne!(
        got.header("ms-signature"),
        Some(sign::ms_signature("another-secret-another-secret-00", &got.body).as_str())
    );
    assert!(got.header("webhook-signature").is_none());
    assert!(
        got.header("webhook-id").is_some(),
        "the stable id still comes"
    );

    // Hop-by-hop and signature headers cannot be set; a short secret is
    // refused; each names its field.
    for (extra, field) in [
        (
            json!({ "headers": { "Connection": "close" } }),
            "headers.Connection",
        ),
        (
            json!({ "headers": { "ms-signature": "sha256=00" } }),
            "headers.ms-signature",
        ),
        (
            json!({ "headers": { "Webhook-Signature": "v1,x" } }),
            "headers.Webhook-Signature",
        ),
        (
            json!({ "secret": "short", "signatureScheme": "ms-signature" }),
            "secret",
        ),
        (
            json!({ "secret": "not-a-whsec-secret-but-long-enough-000" }),
            "secret",
        ),
    ] {
        let mut body = json!({ "objectId": "g-1", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": sink.url("/cb") });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, err) = call(&gw, Method::POST, "/v1/webhook", Some(body)).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["field"], field, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn during_a_rotation_both_the_old_and_the_new_secret_verify() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;

    // Standard Webhooks: two `v1,` signatures.
    let (_, created) = call(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(json!({ "objectId": "g-1", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": sink.url("/std") })),
    )
    .await;
    let id = created["webhookId"].as_str().unwrap().to_owned();
    let old = created["secret"].as_str().unwrap().to_owned();
    let (status, rotated) = call(
        &gw,
        Method::POST,
        &format!("/v1/webhook/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert!(rotated["previousSecretExpiresAt"].is_string());

    // ms-signature: a chosen new secret; two `ms-signature` fields.
    let ms_old = "ms-old-secret-0123456789-0123456789";
    let ms_new = "ms-new-secret-0123456789-0123456789";
    let (_, created) = call(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(json!({ "objectId": "g-1", "objectType": "Group", "eventTypes": ["*"], "callBackUrl": sink.url("/ms"), "secret": ms_old, "signatureScheme": "ms-signature" })),
    )
    .await;
    let ms_id = created["webhookId"].as_str().unwrap().to_owned();
    let (status, r) = call(
        &gw,
        Method::POST,
        &format!("/v1/webhook/{ms_id}/rotate-secret"),
        Some(json!({ "secret": ms_new })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["secret"], ms_new);

    let (status, _) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "g-1", "objectType": "Group", "eventType": "MemberAdded", "data": {} })),
    )
    .await;
    assert_eq!(status, 202);
    wait_until("both deliveries", WAIT, || sink.deliveries().len() >= 2).await;
    let deliveries = sink.deliveries();
    let std = deliveries.iter().find(|d| d.uri.path() == "/std").unwrap();
    let (wid, ts, sig) = (
        std.header("webhook-id").unwrap(),
        std.header("webhook-timestamp").unwrap(),
        std.header("webhook-signature").unwrap(),
    );
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    assert!(
        sign::standard_webhooks_valid(&old, wid, ts, sig, &std.body),
        "old secret"
    );
    assert!(
        sign::standard_webhooks_valid(&new, wid, ts, sig, &std.body),
        "new secret"
    );

    let ms = deliveries.iter().find(|d| d.uri.path() == "/ms").unwrap();
    let values = ms.header_values("ms-signature");
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(
        values[0],
        sign::ms_signature(ms_new, &ms.body),
        "newest first"
    );
    assert!(values.contains(&sign::ms_signature(ms_old, &ms.body).as_str()));
}

/// Kaizala's rule with hookgate's defaults: 6 exponential retries over
/// about 41 h (`1m, 10m, 1h, 4h, 12h, 24h`), `disable_after: 2d`. A
/// subscriber that fails one event must be disabled when that event's
/// retries run out, not only after two days of failure. The default
/// schedule runs here scaled down by `retry.scale` (each wait × 0.00002,
/// about 3 s in all), with the default jitter and `disable_after`.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_failing_with_the_default_schedule_is_disabled_when_its_retries_run_out() {
    const SCALE: f64 = 0.00002;
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&format!(
        r#"
subscriptions:
  api_keys: {{ tenant-a: "{KEY}" }}
  allow_private_callbacks: [127.0.0.0/8]
  retry: {{ scale: {SCALE} }}
  validation_timeout: 1s
"#
    ))
    .await;
    let (status, created) = call_raw(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(&reference_create_body(&sink.url("/cb"))),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["webhookId"].as_str().unwrap().to_owned();
    sink.always(Some(500));
    let (status, body) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "74943849802190eaea3810", "objectType": "Group", "eventType": "TextMessageCreated", "data": { "n": 1 } })),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let deadline = std::time::Instant::now() + WAIT;
    let view = loop {
        let (_, view) = call(&gw, Method::GET, &format!("/v1/webhook/{id}"), None).await;
        if view["active"] == false {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never disabled: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        view["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("retries ran out")),
        "disabled because the retries ran out, not by disable_after: {view}"
    );
    // The first attempt and the six retries of the default schedule, no
    // more, spread over (nearly, with ±10% jitter) its scaled length.
    let attempts = sink.deliveries();
    assert_eq!(attempts.len(), 7, "1 attempt + 6 retries");
    let span = attempts[6].at - attempts[0].at;
    // README's default, written out here rather than read from the code.
    let scheduled: Duration = [60, 600, 3_600, 4 * 3_600, 12 * 3_600, 24 * 3_600]
        .iter()
        .map(|s| Duration::from_secs(*s).mul_f64(SCALE))
        .sum();
    assert!(
        span >= scheduled.mul_f64(0.9),
        "attempts span {span:?}, the scaled schedule {scheduled:?}"
    );

    // Disabled, it keeps what is published for it, lists it, and sends it
    // once re-enabled. The event whose retries ran out is a dead letter,
    // not parked.
    let (status, published) = call(
        &gw,
        Method::POST,
        "/v1/events",
        Some(json!({ "objectId": "74943849802190eaea3810", "objectType": "Group", "eventType": "MemberAdded", "data": { "n": 2 } })),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    let (status, parked) = call(&gw, Method::GET, &format!("/v1/webhook/{id}/parked"), None).await;
    assert_eq!(status, 200, "{parked}");
    let parked = parked["parked"].as_array().unwrap().clone();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0]["storedEventId"]
            .as_str()
            .is_some_and(|e| e.starts_with("evt_")),
        "{parked:?}"
    );
    assert_eq!(parked[0]["eventType"], "MemberAdded");
    assert_eq!(sink.deliveries().len(), 7, "nothing sent while disabled");

    sink.always(None);
    let (status, view) = call_raw(
        &gw,
        Method::PUT,
        &format!("/v1/webhook/{id}"),
        Some(r#"{"Active": "true"}"#),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    wait_until("the parked event after re-enable", WAIT, || {
        sink.deliveries().len() >= 8
    })
    .await;
    assert_eq!(sink.deliveries()[7].json()["data"]["n"], 2);
    let (_, parked) = call(&gw, Method::GET, &format!("/v1/webhook/{id}/parked"), None).await;
    assert_eq!(parked["parked"], json!([]));
}

/// A `410 Gone` from the callback disables the subscription at once: no
/// retry, whatever is left of the schedule.
#[tokio::test(flavor = "multi_thread")]
async fn a_410_disables_the_subscription_at_once() {
    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml("")).await;
    let (status, created) = call_raw(
        &gw,
        Method::POST,
        "/v1/webhook",
        Some(&reference_create_body(&sink.url("/cb"))),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["webhookId"].as_str().unwrap().to_owned();
    sink.always(Some(410));
    publish_member_added(&gw, "74943849802190eaea3810").await;
    let deadline = std::time::Instant::now() + WAIT;
    let view = loop {
        let (_, view) = call(&gw, Method::GET, &format!("/v1/webhook/{id}"), None).await;
        if view["active"] == false {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never disabled: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        view["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{view}"
    );
    assert_eq!(sink.deliveries().len(), 1, "one attempt, no retry");
}

/// The id a subscriber sees (`eventId`, `webhook-id`) is the stored
/// event's own when the gateway chose it, and the event's dedup key when
/// the publisher did: either way the console's search finds the event by
/// it (it looks a message id up by its event or provider id).
#[tokio::test(flavor = "multi_thread")]
async fn a_published_event_is_found_by_the_id_its_subscribers_see() {
    use crate::support::gateway::ADMIN_TOKEN;

    let sink = MockReceiver::start().await;
    let gw = TestGateway::spawn(&yaml(&format!("admin: {{ token: {ADMIN_TOKEN} }}"))).await;
    subscribe_to_group_o(&gw, &sink).await;
    let publish = |id: Option<&str>| {
        let mut body = json!({ "objectId": "o", "objectType": "Group", "eventType": "MemberAdded", "data": {} });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        call(&gw, Method::POST, "/v1/events", Some(body))
    };
    let (status, gateways) = publish(None).await;
    assert_eq!(status, 202, "{gateways}");
    let (status, publishers) = publish(Some("publisher-chosen-1")).await;
    assert_eq!(status, 202, "{publishers}");
    assert_eq!(publishers["id"], "publisher-chosen-1");
    wait_until("both deliveries", WAIT, || sink.deliveries().len() >= 2).await;
    for answer in [&gateways, &publishers] {
        let id = answer["id"].as_str().unwrap();
        let got = sink
            .deliveries()
            .into_iter()
            .find(|d| d.json()["eventId"] == id)
            .unwrap_or_else(|| panic!("a delivery of {id}"));
        assert_eq!(got.header("webhook-id"), Some(id));
    }
    // The gateway's own id is the stored event's: the admin API and the
    // console show it under the id the subscriber saw. A publisher's id is
    // the event's dedup key, which the console's search looks up.
    let id = gateways["id"].as_str().unwrap();
    let event = gw.admin_get(&format!("/admin/events/{id}")).await;
    assert_eq!(event["id"], id, "{event}");
    let page = gw.admin_get("/admin/events?limit=10").await;
    let by_publisher = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source_id"] == "publisher-chosen-1");
    assert!(by_publisher.is_some(), "{page}");
}

/// A reload that drops the `subscriptions:` block postpones subscriber
/// deliveries, a minute at a time; the reload that brings it back sends
/// what waited at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_restores_the_subscription_api_sends_what_waited_at_once() {
    use crate::support::gateway::ADMIN_TOKEN;

    let sink = MockReceiver::start().await;
    let admin = format!("admin: {{ token: {ADMIN_TOKEN} }}");
    let with = yaml(&admin).replace("[30ms, 30ms, 30ms]", "[1s, 1s, 1s]");
    let gw = TestGateway::spawn(&with).await;
    subscribe_to_group_o(&gw, &sink).await;
    // The first attempt fails: its retry comes due after the block is gone.
    sink.always(Some(503));
    let published = publish_member_added(&gw, "o").await;
    let id = published["id"].as_str().unwrap().to_owned();
    first_delivery(&sink).await;

    gw.reload_with(&format!("\n{admin}\n")).await;
    let path = format!("/admin/events/{id}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let event = gw.admin_get(&path).await;
        if event["deliveries"]
            .to_string()
            .contains("the subscription API is not configured; postponed")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not postponed: {event:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    sink.always(None);
    let tried = sink.deliveries().len();
    let back = std::time::Instant::now();
    gw.reload_with(&with).await;
    wait_until("the waiting delivery", Duration::from_secs(10), || {
        sink.deliveries().len() > tried
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(3),
        "the waiting delivery came {:?} after the reload",
        back.elapsed()
    );
    let deadline = std::time::Instant::now() + WAIT;
    while gw.admin_get(&path).await["status"] != "delivered" {
        assert!(
            std::time::Instant::now() < deadline,
            "never recorded delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
