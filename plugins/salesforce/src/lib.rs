//! `salesforce`: receives Salesforce [outbound messages]: SOAP
//! `notifications` envelopes that a workflow rule or flow sends.
//!
//! Outbound messages carry no signature. What identifies the sender is the
//! `OrganizationId` in the envelope, and (as in ASP.NET WebHooks) a secret
//! in the endpoint URL, `https://gw/hooks/salesforce?code=<secret>`, which
//! the org id alone could not replace: org ids are not secret.
//!
//! ```yaml
//! verify:
//!   plugin: salesforce
//!   with:
//!     organization_id: "00D000000000062"   # 15 or 18 characters
//!     secret: "${SALESFORCE_CODE}"         # the ?code= in the endpoint URL
//! transform: [ { plugin: salesforce } ]    # the notifications as JSON
//! ```
//!
//! `with:` keys (verify):
//!
//! - `organization_id` (required): the org's id. The 15-character id and
//!   its 18-character form are the same org (the last three characters
//!   are a case checksum), so they are compared on the first 15, exactly
//!   (ids are case-sensitive).
//! - `secret` (required): the value of `?code=` (constant-time compare).
//!
//! Answers are SOAP, because that is all Salesforce reads: an accepted
//! message is answered `200` with the `notificationsResponse` /
//! `<Ack>true</Ack>` envelope Salesforce waits for (without it, Salesforce
//! retries for 24 hours), and still forwarded. A wrong org id is `403`, a
//! missing or wrong `?code=` is `401`, and a body that is not an outbound
//! message is `400`, each as a SOAP `Fault` (`soapenv:Client`). The event
//! type is the first notification's sObject type (`Contact`, …); the message
//! id is derived from the notification ids, which Salesforce keeps across
//! its retries, so a retried message deduplicates.
//!
//! Transform (no `with:` keys): the envelope becomes JSON,
//!
//! ```json
//! {"organizationId": "…", "actionId": "…", "sessionId": null,
//!  "enterpriseUrl": "…", "partnerUrl": "…",
//!  "notifications": [{"id": "…", "type": "Contact", "sObject": {"Id": "…", "Email": "…"}}]}
//! ```
//!
//! with field names as Salesforce sends them, values as text, and a nil
//! field (`xsi:nil="true"`) as `null`. A verifier cannot replace the body in
//! plugin interface 0.1, hence the second stage.
//!
//! [outbound messages]: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_understanding.htm

use hookgate_plugin_sdk::{
    self as sdk, Accepted, Error, Header, Message, Request, Response, Transformer, Verdict,
    Verifier, crypto,
};
use serde_json::{Map, Value, json};

/// The outbound messaging namespace of the envelope and of the answer.
const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const CODE_PARAM: &str = "code";

/// The acknowledgement Salesforce's outbound messaging WSDL defines.
const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Body>
    <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
      <Ack>true</Ack>
    </notificationsResponse>
  </soapenv:Body>
</soapenv:Envelope>
"#;

struct Salesforce;

/// The verify stage's `with:` block: the org id and the `?code=` secret.
fn settings() -> Result<(String, String), Error> {
    let org = sdk::config::require_str("organization_id")?;
    if !matches!(org.trim().len(), 15 | 18) {
        return Err(Error::config(
            "`with.organization_id` must be a 15 or 18 character org id",
        ));
    }
    let secret = sdk::config::require_str("secret")?;
    Ok((org, secret))
}

/// The load-time check (`export!`'s `check:`). The gateway checks each use
/// of the plugin without saying which stage it is for, and the transform
/// takes no keys: a block with none is taken as the transform's; one with
/// either key must be a whole verify block.
fn check() -> Result<(), Error> {
    if sdk::config::get("organization_id").is_none() && sdk::config::get("secret").is_none() {
        return Ok(());
    }
    settings().map(drop)
}

impl Verifier for Salesforce {
    fn verify(req: Request) -> Result<Verdict, Error> {
        let (org, secret) = settings()?;

        match req.query_param(CODE_PARAM) {
            None => return Ok(fault(401, "missing ?code= query parameter")),
            Some(code) if !crypto::constant_time_eq(code.as_bytes(), secret.as_bytes()) => {
                return Ok(fault(401, "?code= does not match"));
            }
            Some(_) => {}
        }
        let Some(text) = req.body_str() else {
            return Ok(fault(400, "the body is not UTF-8 XML"));
        };
        let parsed = match parse(text) {
            Ok(parsed) => parsed,
            Err(reason) => return Ok(fault(400, &reason)),
        };
        let sent = parsed["organizationId"].as_str().unwrap_or_default();
        if !same_org(sent, org.trim()) {
            return Ok(fault(
                403,
                "OrganizationId is not the configured organization",
            ));
        }

        let mut accepted = Accepted::new().reply(Response {
            status: 200,
            headers: vec![Header::new("content-type", "text/xml; charset=utf-8")],
            body: ACK.as_bytes().to_vec(),
        });
        let notifications = parsed["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(kind) = notifications.first().and_then(|n| n["type"].as_str()) {
            accepted = accepted.event_type(kind);
        }
        let ids: Vec<&str> = notifications
            .iter()
            .filter_map(|n| n["id"].as_str())
            .collect();
        if !ids.is_empty() {
            accepted = accepted.id(message_id(&ids));
        }
        Ok(Verdict::accept_with(accepted))
    }
}

impl Transformer for Salesforce {
    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        let text = std::str::from_utf8(&msg.body)
            .map_err(|_| Error::invalid_input("the body is not UTF-8 XML"))?;
        let json = parse(text).map_err(Error::invalid_input)?;
        msg.body = serde_json::to_vec(&json).map_err(|e| Error::other(e.to_string()))?;
        msg.content_type = "application/json".to_owned();
        msg.headers
            .retain(|h| !h.name.eq_ignore_ascii_case("content-type"));
        msg.headers
            .push(Header::new("content-type", "application/json"));
        Ok(vec![msg])
    }
}

/// Whether two org ids name the same org: equal on the 15-character
/// case-sensitive id that both forms start with.
fn same_org(sent: &str, configured: &str) -> bool {
    let key = |id: &str| id.get(..15).map(str::to_owned);
    matches!(
        (key(sent), key(configured)),
        (Some(a), Some(b)) if matches!(sent.len(), 15 | 18) && crypto::constant_time_eq(a.as_bytes(), b.as_bytes())
    )
}

/// One id for the whole message: the only notification's id, or a digest
/// of all of them (a message carries up to 100).
fn message_id(ids: &[&str]) -> String {
    match ids {
        [one] => (*one).to_owned(),
        many => {
            let joined = many.join(",");
            let digest = crypto::digest(crypto::Algorithm::Sha256, joined.as_bytes());
            format!("sf_{}", hex::encode(&digest[..16]))
        }
    }
}

/// A SOAP fault as the answer, with `status`.
fn fault(status: u16, reason: &str) -> Verdict {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Body>
    <soapenv:Fault>
      <faultcode>soapenv:Client</faultcode>
      <faultstring>{}</faultstring>
    </soapenv:Fault>
  </soapenv:Body>
</soapenv:Envelope>
"#,
        escape(reason)
    );
    Verdict::respond(Response {
        status,
        headers: vec![Header::new("content-type", "text/xml; charset=utf-8")],
        body: body.into_bytes(),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `notifications` element of an outbound message as JSON; the error
/// says what is missing.
pub fn parse(text: &str) -> Result<Value, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("the body is not XML: {e}"))?;
    let notifications = doc
        .descendants()
        .find(|n| n.has_tag_name((OUTBOUND_NS, "notifications")))
        .ok_or("the body is not a Salesforce outbound message (no notifications element)")?;

    let child_text = |name: &str| -> Value {
        match notifications
            .children()
            .find(|n| n.has_tag_name((OUTBOUND_NS, name)))
        {
            Some(node) if !is_nil(node) => {
                Value::String(node.text().unwrap_or_default().to_owned())
            }
            _ => Value::Null,
        }
    };
    if child_text("OrganizationId").is_null() {
        return Err("the outbound message has no OrganizationId".to_owned());
    }

    let mut list = Vec::new();
    for notification in notifications
        .children()
        .filter(|n| n.has_tag_name((OUTBOUND_NS, "Notification")))
    {
        let id = notification
            .children()
            .find(|n| n.has_tag_name((OUTBOUND_NS, "Id")))
            .and_then(|n| n.text())
            .map(str::to_owned);
        let sobject = notification
            .children()
            .find(|n| n.has_tag_name((OUTBOUND_NS, "sObject")));
        let kind = sobject
            .and_then(|n| n.attribute((XSI_NS, "type")))
            .map(|t| t.rsplit(':').next().unwrap_or(t).to_owned());
        let mut fields = Map::new();
        if let Some(sobject) = sobject {
            for field in sobject.children().filter(|n| n.is_element()) {
                let value = if is_nil(field) {
                    Value::Null
                } else {
                    Value::String(field.text().unwrap_or_default().to_owned())
                };
                fields.insert(field.tag_name().name().to_owned(), value);
            }
        }
        list.push(json!({ "id": id, "type": kind, "sObject": fields }));
    }

    Ok(json!({
        "organizationId": child_text("OrganizationId"),
        "actionId": child_text("ActionId"),
        "sessionId": child_text("SessionId"),
        "enterpriseUrl": child_text("EnterpriseUrl"),
        "partnerUrl": child_text("PartnerUrl"),
        "notifications": list,
    }))
}

fn is_nil(node: roxmltree::Node<'_, '_>) -> bool {
    node.attribute((XSI_NS, "nil")) == Some("true")
}

sdk::export!(Salesforce, stages: [verify, transform], config: [organization_id, secret], check: check);
