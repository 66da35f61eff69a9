//! Salesforce Outbound Messages: the SOAP 1.1 `notifications` envelope in,
//! the `notificationsResponse` acknowledgement or a SOAP fault out.
//!
//! The reader refuses DTDs (and with them every entity but the five XML
//! predefines and character references), caps nesting, and reads nothing
//! it does not need: the org id, the action id and, per notification, its
//! id and the sObject's fields (`xsi:nil` fields are kept as absent values).

use std::collections::BTreeMap;

pub mod hostile;

pub const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";
pub const SOBJECT_NS: &str = "urn:sobject.enterprise.soap.sforce.com";
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Deeper than any Outbound Message (Envelope / Body / notifications /
/// Notification / sObject / field is 6).
pub const MAX_DEPTH: usize = 16;
/// Salesforce sends 1 to 100 notifications per message.
pub const MAX_NOTIFICATIONS: usize = 100;
/// Elements in one message: 100 notifications of a few hundred fields.
const MAX_NODES: u32 = 100_000;
/// Namespace declarations in one message. Salesforce declares four on the
/// envelope, one on `notifications` and one on each `sObject`: at most 105.
/// Every element that declares one copies the namespaces in scope, so
/// their number bounds the reader's work, not the body's size.
pub const MAX_NAMESPACE_DECLARATIONS: usize = 256;
/// Namespace declarations in scope at any element (Salesforce: six). Every
/// prefixed name is looked up among them.
pub const MAX_NAMESPACES_IN_SCOPE: usize = 32;
/// Attributes on one element, namespace declarations aside (Salesforce
/// writes at most one, `xsi:type` or `xsi:nil`). The reader
/// compares each attribute with the element's others.
pub const MAX_ATTRIBUTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub organization_id: String,
    pub action_id: Option<String>,
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification's id (`04l...`); the same in Salesforce's retries.
    pub id: String,
    /// The sObject type, e.g. `Opportunity` or `Deal__c`.
    pub object: String,
    /// Field API name -> value; `None` for `xsi:nil` fields.
    pub fields: BTreeMap<String, Option<String>>,
}

impl Notification {
    /// A field's value; absent and nil fields are both `None`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(|v| v.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    #[error("the body is not UTF-8 text")]
    NotUtf8,
    #[error("the XML declares a DTD; DTDs and custom entities are refused")]
    Dtd,
    #[error("the XML nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error(
        "the XML declares more than {MAX_NAMESPACE_DECLARATIONS} namespaces, or more than {MAX_NAMESPACES_IN_SCOPE} in scope"
    )]
    TooManyNamespaces,
    #[error("an XML element has more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("not a Salesforce outbound message: {0}")]
    NotOutboundMessage(String),
    #[error("the message has {0} notifications; Salesforce sends 1 to {MAX_NOTIFICATIONS}")]
    NotificationCount(usize),
}

/// Checks what roxmltree does not, in one linear pass before it parses at
/// all: any DTD, the nesting depth, and the namespace declarations and
/// attributes whose number would make its work grow faster than the body.
fn prescan(text: &str) -> Result<(), SoapError> {
    use xmlparser::{ElementEnd, Token};
    let mut depth = 0usize;
    let mut namespaces = 0usize;
    let mut attributes = 0usize;
    // Declarations made by each open element, and their sum.
    let mut declared: Vec<usize> = Vec::with_capacity(MAX_DEPTH);
    let mut in_scope = 0usize;
    for token in xmlparser::Tokenizer::from(text) {
        match token.map_err(|e| SoapError::Malformed(e.to_string()))? {
            Token::DtdStart { .. }
            | Token::EmptyDtd { .. }
            | Token::EntityDeclaration { .. }
            | Token::DtdEnd { .. } => return Err(SoapError::Dtd),
            Token::ElementStart { .. } => {
                depth += 1;
                attributes = 0;
                if depth > MAX_DEPTH {
                    return Err(SoapError::TooDeep);
                }
                declared.push(0);
            }
            Token::Attribute { prefix, local, .. } => {
                let declares = prefix.as_str() == "xmlns"
                    || (prefix.as_str().is_empty() && local.as_str() == "xmlns");
                if declares {
                    namespaces += 1;
                    in_scope += 1;
                    if let Some(n) = declared.last_mut() {
                        *n += 1;
                    }
                    if namespaces > MAX_NAMESPACE_DECLARATIONS || in_scope > MAX_NAMESPACES_IN_SCOPE
                    {
                        return Err(SoapError::TooManyNamespaces);
                    }
                } else {
                    attributes += 1;
                    if attributes > MAX_ATTRIBUTES {
                        return Err(SoapError::TooManyAttributes);
                    }
                }
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Close(..) | ElementEnd::Empty => {
                    depth = depth.saturating_sub(1);
                    in_scope = in_scope.saturating_sub(declared.pop().unwrap_or(0));
                }
            },
            _ => {}
        }
    }
    Ok(())
}

fn children<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |n| n.is_element() && n.has_tag_name((ns, name)))
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> Option<roxmltree::Node<'a, 'i>> {
    children(node, ns, name).next()
}

fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.text().unwrap_or("").trim().to_owned()
}

fn is_nil(node: roxmltree::Node<'_, '_>) -> bool {
    node.attribute((XSI_NS, "nil"))
        .is_some_and(|v| v.trim() == "true" || v.trim() == "1")
}

fn missing(what: &str) -> SoapError {
    SoapError::NotOutboundMessage(format!("no {what}"))
}

/// Reads an Outbound Message.
pub fn parse(body: &[u8]) -> Result<OutboundMessage, SoapError> {
    let text = std::str::from_utf8(body).map_err(|_| SoapError::NotUtf8)?;
    prescan(text)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SoapError::Dtd,
        other => SoapError::Malformed(other.to_string()),
    })?;
    let envelope = doc.root_element();
    if !envelope.has_tag_name((ENVELOPE_NS, "Envelope")) {
        return Err(missing("SOAP 1.1 Envelope"));
    }
    let body = child(envelope, ENVELOPE_NS, "Body").ok_or_else(|| missing("SOAP Body"))?;
    let notifications = child(body, OUTBOUND_NS, "notifications")
        .ok_or_else(|| missing("notifications element in the outbound namespace"))?;
    let organization_id = child(notifications, OUTBOUND_NS, "OrganizationId")
        .map(text_of)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("OrganizationId"))?;
    let action_id = child(notifications, OUTBOUND_NS, "ActionId")
        .filter(|n| !is_nil(*n))
        .map(text_of)
        .filter(|s| !s.is_empty());

    let mut out = Vec::new();
    for (i, n) in children(notifications, OUTBOUND_NS, "Notification").enumerate() {
        if i >= MAX_NOTIFICATIONS {
            return Err(SoapError::NotificationCount(
                children(notifications, OUTBOUND_NS, "Notification").count(),
            ));
        }
        let id = child(n, OUTBOUND_NS, "Id")
            .map(text_of)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(&format!("Id in notification {}", i + 1)))?;
        let sobject = child(n, OUTBOUND_NS, "sObject")
            .ok_or_else(|| missing(&format!("sObject in notification {}", i + 1)))?;
        let object = sobject
            .attribute((XSI_NS, "type"))
            .map(|t| t.rsplit(':').next().unwrap_or(t).trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing(&format!("xsi:type on sObject in notification {}", i + 1)))?;
        let mut fields = BTreeMap::new();
        for f in sobject
            .children()
            .filter(|c| c.is_element() && c.tag_name().namespace() == Some(SOBJECT_NS))
        {
            // Only scalar fields: a nested element (a related record) is not a value.
            if f.children().any(|c| c.is_element()) {
                continue;
            }
            let value = (!is_nil(f)).then(|| text_of(f));
            fields.insert(f.tag_name().name().to_owned(), value);
        }
        out.push(Notification { id, object, fields });
    }
    if out.is_empty() {
        return Err(SoapError::NotificationCount(0));
    }
    Ok(OutboundMessage {
        organization_id,
        action_id,
        notifications: out,
    })
}

impl OutboundMessage {
    /// The message as Salesforce sends it (for tests, samples and benchmarks).
    pub fn to_xml(&self) -> String {
        let mut out = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="{XSI_NS}"><soapenv:Body><notifications xmlns="{OUTBOUND_NS}"><OrganizationId>{}</OrganizationId>"#,
            escape(&self.organization_id)
        );
        match &self.action_id {
            Some(a) => out.push_str(&format!("<ActionId>{}</ActionId>", escape(a))),
            None => out.push_str(r#"<ActionId xsi:nil="true"/>"#),
        }
        out.push_str(r#"<SessionId xsi:nil="true"/>"#);
        for n in &self.notifications {
            out.push_str(&format!(
                r#"<Notification><Id>{}</Id><sObject xsi:type="sf:{}" xmlns:sf="{SOBJECT_NS}">"#,
                escape(&n.id),
                escape(&n.object)
            ));
            for (name, value) in &n.fields {
                let name = escape(name);
                match value {
                    Some(v) => out.push_str(&format!("<sf:{name}>{}</sf:{name}>", escape(v))),
                    None => out.push_str(&format!(r#"<sf:{name} xsi:nil="true"/>"#)),
                }
            }
            out.push_str("</sObject></Notification>");
        }
        out.push_str("</notifications></soapenv:Body></soapenv:Envelope>");
        out
    }
}

/// The acknowledgement Salesforce expects: anything else is a failure it retries.
pub fn ack() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}"><soapenv:Body><notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
    )
}

/// Who is at fault, in SOAP 1.1 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The message or its credentials: retrying it unchanged will not help.
    Client,
    /// Ours: Salesforce's retry of the same message will be accepted.
    Server,
}

/// A SOAP 1.1 fault; `code` is pointsflow's stable error code.
pub fn fault(fault_code: FaultCode, code: &str, message: &str) -> String {
    let fault_code = match fault_code {
        FaultCode::Client => "soapenv:Client",
        FaultCode::Server => "soapenv:Server",
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}"><soapenv:Body><soapenv:Fault><faultcode>{fault_code}</faultcode><faultstring>{}: {}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#,
        escape(code),
        escape(message)
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A parser turns a raw CR into LF; keep it as written.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, Option<&'a str>)];
    type Note<'a> = (&'a str, &'a str, Fields<'a>);

    fn message(org: &str, notifications: &[Note<'_>]) -> String {
        let mut body = String::new();
        for (id, object, fields) in notifications {
            body.push_str(&format!(
                r#"<Notification><Id>{id}</Id><sObject xsi:type="sf:{object}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">"#
            ));
            for (name, value) in *fields {
                match value {
                    Some(v) => body.push_str(&format!("<sf:{name}>{v}</sf:{name}>")),
                    None => body.push_str(&format!(r#"<sf:{name} xsi:nil="true"/>"#)),
                }
            }
            body.push_str("</sObject></Notification>");
        }
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5g000000XYZAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/61.0/00D5g000004XYZA</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/61.0/00D5g000004XYZA</PartnerUrl>
   {body}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#
        )
    }

    #[test]
    fn reads_notifications_with_nil_fields() {
        let xml = message(
            "00D5g000004XYZAEA2",
            &[
                (
                    "04l5g000000AAAAAA1",
                    "Opportunity",
                    &[
                        ("Id", Some("0065g00000AAAAAAA1")),
                        ("StageName", Some("Closed Won")),
                        ("Amount", Some("12500.00")),
                        ("Description", None),
                        ("Name", Some("Acme &amp; Co")),
                    ],
                ),
                (
                    "04l5g000000AAAAAA2",
                    "Deal__c",
                    &[("Id", Some("a015g00000AAAAAAA1"))],
                ),
            ],
        );
        let m = parse(xml.as_bytes()).unwrap();
        assert_eq!(m.organization_id, "00D5g000004XYZAEA2");
        assert_eq!(m.action_id.as_deref(), Some("04k5g000000XYZAAA"));
        assert_eq!(m.notifications.len(), 2);
        let n = &m.notifications[0];
        assert_eq!(n.id, "04l5g000000AAAAAA1");
        assert_eq!(n.object, "Opportunity");
        assert_eq!(n.field("StageName"), Some("Closed Won"));
        assert_eq!(n.field("Name"), Some("Acme & Co"));
        assert_eq!(n.fields.get("Description"), Some(&None));
        assert_eq!(n.field("Description"), None);
        assert_eq!(m.notifications[1].object, "Deal__c");
    }

    #[test]
    fn refuses_dtds_entities_depth_and_junk() {
        let dtd = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#;
        assert_eq!(parse(dtd.as_bytes()), Err(SoapError::Dtd));
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(parse(deep.as_bytes()), Err(SoapError::TooDeep));
        assert!(matches!(parse(b"<a><b></a>"), Err(SoapError::Malformed(_))));
        assert_eq!(parse(&[0xff, 0xfe]), Err(SoapError::NotUtf8));
        assert!(matches!(
            parse(b"<a/>"),
            Err(SoapError::NotOutboundMessage(_))
        ));
        let unknown_entity = message(
            "00D5g000004XYZA",
            &[("04l1", "Opportunity", &[("Name", Some("&bogus;"))])],
        );
        assert!(matches!(
            parse(unknown_entity.as_bytes()),
            Err(SoapError::Malformed(_))
        ));
    }

    fn namespace_flood(root_declarations: usize, elements: usize) -> String {
        let root: String = (0..root_declarations)
            .map(|i| format!(r#" xmlns:r{i}="urn:r{i}""#))
            .collect();
        let body: String = (0..elements)
            .map(|i| format!(r#"<e xmlns:e{i}="urn:e{i}"/>"#))
            .collect();
        format!("<a{root}>{body}</a>")
    }

    #[test]
    fn refuses_namespace_and_attribute_floods_by_count() {
        let in_scope: String = (0..=MAX_NAMESPACES_IN_SCOPE)
            .map(|i| format!(r#" xmlns:r{i}="urn:r{i}""#))
            .collect();
        let crowded = format!("<a{in_scope}/>");
        assert_eq!(parse(crowded.as_bytes()), Err(SoapError::TooManyNamespaces));
        let flood = namespace_flood(2_000, 40_000);
        assert_eq!(parse(flood.as_bytes()), Err(SoapError::TooManyNamespaces));
        let spread = namespace_flood(0, MAX_NAMESPACE_DECLARATIONS + 1);
        assert_eq!(parse(spread.as_bytes()), Err(SoapError::TooManyNamespaces));
        // At the limit it is read (and refused as not a message, not as a flood).
        let at_limit = namespace_flood(0, MAX_NAMESPACE_DECLARATIONS);
        assert!(matches!(
            parse(at_limit.as_bytes()),
            Err(SoapError::NotOutboundMessage(_))
        ));
        let attributes: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(r#" a{i}="x""#))
            .collect();
        let wide = format!("<a{attributes}/>");
        assert_eq!(parse(wide.as_bytes()), Err(SoapError::TooManyAttributes));
        // A default declaration counts too.
        let defaults: String = (0..=MAX_NAMESPACE_DECLARATIONS)
            .map(|i| format!(r#"<e xmlns="urn:{i}"/>"#))
            .collect();
        let defaults = format!("<a>{defaults}</a>");
        assert_eq!(
            parse(defaults.as_bytes()),
            Err(SoapError::TooManyNamespaces)
        );
    }

    #[test]
    fn a_full_message_stays_inside_the_bounds() {
        let fields: Fields<'_> = &[("Id", Some("0065g00000AAAAAAA1")), ("Amount", Some("1"))];
        let notes: Vec<Note<'_>> = (0..MAX_NOTIFICATIONS)
            .map(|_| ("04l1", "Opportunity", fields))
            .collect();
        let full = message("00D5g000004XYZA", &notes);
        assert_eq!(
            parse(full.as_bytes()).unwrap().notifications.len(),
            MAX_NOTIFICATIONS
        );
    }

    #[test]
    fn counts_notifications() {
        let none = message("00D5g000004XYZA", &[]);
        assert_eq!(parse(none.as_bytes()), Err(SoapError::NotificationCount(0)));
        let fields: Fields<'_> = &[("Id", Some("0065g00000AAAAAAA1"))];
        let many: Vec<Note<'_>> = (0..101).map(|_| ("04l1", "Opportunity", fields)).collect();
        let xml = message("00D5g000004XYZA", &many);
        assert_eq!(
            parse(xml.as_bytes()),
            Err(SoapError::NotificationCount(101))
        );
    }

    #[test]
    fn a_message_reads_back_as_written() {
        let xml = message(
            "00D5g000004XYZA",
            &[(
                "04l1",
                "Opportunity",
                &[("Name", Some("A &lt;b&gt; &amp; 'c'")), ("Amount", None)],
            )],
        );
        let m = parse(xml.as_bytes()).unwrap();
        assert_eq!(parse(m.to_xml().as_bytes()).unwrap(), m);
    }

    #[test]
    fn faults_escape_their_text() {
        let f = fault(FaultCode::Client, "malformed", "a <b> & c");
        assert!(f.contains("<faultcode>soapenv:Client</faultcode>"));
        assert!(f.contains("malformed: a &lt;b&gt; &amp; c"));
        assert!(roxmltree::Document::parse(&f).is_ok());
        assert!(roxmltree::Document::parse(&ack()).is_ok());
    }
}
