//! `salesforce`: outbound messages (SOAP). The org id and `?code=` are
//! checked, answers are SOAP (the `Ack` Salesforce waits for, or a
//! `Fault`), and the transform stage forwards the notifications as JSON.
//! Outbound messages carry no signature or timestamp, so there is no stale
//! case: Salesforce's retries of one message are caught by its id.

use serde_json::{Value, json};

use super::*;
use crate::support::receiver::MockReceiver;
use hookgate::plugin::Message;

const ORG_15: &str = "00D000000000062";
const ORG_18: &str = "00D000000000062EAA";
const CODE: &str = "salesforce-code-0123456789abcdef";

/// An outbound message in the shape of Salesforce's documented example
/// (SOAP API Developer Guide, "Outbound Messaging": notification WSDL):
/// two Contact notifications, one field nil.
fn message(org: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k000000000062</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/61.0/00D000000000062</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/61.0/00D000000000062</PartnerUrl>
   <Notification>
    <Id>04l000000000001AAA</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>003000000000001AAA</sf:Id>
     <sf:Email>jane@example.com</sf:Email>
     <sf:Phone xsi:nil="true"/>
    </sObject>
   </Notification>
   <Notification>
    <Id>04l000000000002AAA</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>003000000000002AAA</sf:Id>
     <sf:Email>joe@example.com</sf:Email>
     <sf:Phone>+1 555 0100</sf:Phone>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#
    )
}

fn message_json(org: &str) -> Value {
    json!({
        "organizationId": org,
        "actionId": "04k000000000062",
        "sessionId": null,
        "enterpriseUrl": "https://example.my.salesforce.com/services/Soap/c/61.0/00D000000000062",
        "partnerUrl": "https://example.my.salesforce.com/services/Soap/u/61.0/00D000000000062",
        "notifications": [
            { "id": "04l000000000001AAA", "type": "Contact",
              "sObject": { "Id": "003000000000001AAA", "Email": "jane@example.com", "Phone": null } },
            { "id": "04l000000000002AAA", "type": "Contact",
              "sObject": { "Id": "003000000000002AAA", "Email": "joe@example.com", "Phone": "+1 555 0100" } }
        ]
    })
}

fn plugin(org: &str) -> TestPlugin {
    TestPlugin::builtin(
        "salesforce",
        json!({ "organization_id": org, "secret": CODE }),
    )
}

fn post(body: &str, query: &str) -> TestRequest {
    TestRequest::post(body.as_bytes().to_vec())
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .query(query)
}

fn code() -> String {
    format!("code={CODE}")
}

/// A SOAP fault with `status`, as the plugin answers refusals.
#[track_caller]
fn expect_fault(verdict: Verdict, status: u16) -> String {
    let response = expect_respond(verdict);
    assert_eq!(response.status, status);
    assert!(header(&response, "content-type").is_some_and(|c| c.starts_with("text/xml")));
    let body = String::from_utf8(response.body).unwrap();
    assert!(body.contains("<soapenv:Fault>"), "{body}");
    assert!(
        body.contains("<faultcode>soapenv:Client</faultcode>"),
        "{body}"
    );
    body
}

#[test]
fn outbound_message_is_acked_and_forwarded() {
    let (id, event_type, reply) = expect_accept(
        plugin(ORG_15)
            .verify(&post(&message(ORG_15), &code()))
            .expect("plugin call"),
    );
    assert_eq!(event_type.as_deref(), Some("Contact"));
    // Two notifications: one id derived from both, stable across retries.
    let id = id.expect("an id");
    assert!(id.starts_with("sf_"), "{id}");
    let again = expect_accept(
        plugin(ORG_15)
            .verify(&post(&message(ORG_15), &code()))
            .unwrap(),
    )
    .0;
    assert_eq!(again.as_deref(), Some(id.as_str()));

    let reply = reply.expect("the SOAP Ack");
    assert_eq!(reply.status, 200);
    assert!(header(&reply, "content-type").is_some_and(|c| c.starts_with("text/xml")));
    let ack = String::from_utf8(reply.body).unwrap();
    assert!(
        ack.contains(r#"<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#),
        "{ack}"
    );
    assert!(ack.contains("<Ack>true</Ack>"), "{ack}");
    assert!(ack.contains(r#"xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#));
}

#[test]
fn one_notification_keeps_its_own_id() {
    let body = message(ORG_15);
    let start = body
        .find("   <Notification>\n    <Id>04l000000000002AAA")
        .unwrap();
    let end = body.rfind("</Notification>").unwrap() + "</Notification>\n".len();
    let single = format!("{}{}", &body[..start], &body[end..]);
    let (id, _, _) = expect_accept(
        plugin(ORG_15)
            .verify(&post(&single, &code()))
            .expect("plugin call"),
    );
    assert_eq!(id.as_deref(), Some("04l000000000001AAA"));
}

#[test]
fn fifteen_and_eighteen_character_org_ids_are_the_same_org() {
    expect_accept(
        plugin(ORG_18)
            .verify(&post(&message(ORG_15), &code()))
            .unwrap(),
    );
    expect_accept(
        plugin(ORG_15)
            .verify(&post(&message(ORG_18), &code()))
            .unwrap(),
    );
}

#[test]
fn another_org_is_403_with_a_soap_fault() {
    let verdict = plugin(ORG_15)
        .verify(&post(&message("00D000000000099"), &code()))
        .expect("plugin call");
    let body = expect_fault(verdict, 403);
    assert!(body.contains("OrganizationId"), "{body}");
    // Org ids are case-sensitive.
    let verdict = plugin(ORG_15)
        .verify(&post(&message("00d000000000062"), &code()))
        .unwrap();
    expect_fault(verdict, 403);
}

#[test]
fn wrong_or_missing_code_is_401_with_a_soap_fault() {
    let body = expect_fault(
        plugin(ORG_15)
            .verify(&post(&message(ORG_15), "code=nope"))
            .unwrap(),
        401,
    );
    assert!(!body.contains(CODE));
    expect_fault(
        plugin(ORG_15).verify(&post(&message(ORG_15), "")).unwrap(),
        401,
    );
}

#[test]
fn a_body_that_is_not_an_outbound_message_is_400() {
    for body in [
        "not xml",
        r#"<?xml version="1.0"?><a/>"#,
        // A DTD could expand entities without bound; it is refused.
        r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>"#,
    ] {
        expect_fault(plugin(ORG_15).verify(&post(body, &code())).unwrap(), 400);
    }
}

#[test]
fn bad_config_is_a_config_error() {
    let req = post(&message(ORG_15), &code());
    for with in [
        json!({ "secret": CODE }),
        json!({ "organization_id": ORG_15 }),
        json!({ "organization_id": "00D0000", "secret": CODE }),
    ] {
        expect_config_error(TestPlugin::builtin("salesforce", with).verify(&req));
    }
}

#[test]
fn transform_forwards_the_notifications_as_json() {
    let msg = Message {
        id: Some("sf_x".into()),
        event_type: Some("Contact".into()),
        content_type: "text/xml; charset=utf-8".into(),
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: message(ORG_15).into_bytes().into(),
    };
    let mut out = TestPlugin::builtin("salesforce", json!({}))
        .transform(msg)
        .expect("plugin call");
    let out = out.remove(0);
    assert_eq!(out.content_type, "application/json");
    assert_eq!(out.id.as_deref(), Some("sf_x"));
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body, message_json(ORG_15));
}

#[tokio::test(flavor = "multi_thread")]
async fn through_the_binary_ack_fault_and_json_delivery() {
    let sink = MockReceiver::start().await;
    let gw = gateway(
        &format!(
            "    verify: {{ plugin: salesforce, with: {{ organization_id: \"{ORG_18}\", secret: \"{CODE}\" }} }}\n    transform: [ {{ plugin: salesforce }} ]"
        ),
        Some(&sink),
    )
    .await;
    let xml = [
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", "\"\""),
    ];

    let (status, ct, text) = send(&gw, "POST", &code(), &xml, message(ORG_15).as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(text.contains("<Ack>true</Ack>"), "{text}");

    // Tampered: another org's message on this endpoint.
    let (status, ct, text) = send(
        &gw,
        "POST",
        &code(),
        &xml,
        message("00D000000000099").as_bytes(),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        ct.starts_with("text/xml") && text.contains("<soapenv:Fault>"),
        "{text}"
    );
    // Missing credential.
    let (status, _, text) = send(&gw, "POST", "", &xml, message(ORG_15).as_bytes()).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("<soapenv:Fault>"), "{text}");

    let delivered = sink.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].json(), message_json(ORG_15));
}
