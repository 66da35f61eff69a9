//! Bodies built to make an XML reader work hard, each filled to a given
//! size: the property tests, the fuzz corpus and the bench read them, so
//! the bound on the reader's work is checked on the bodies that would break
//! it.

use super::{
    ENVELOPE_NS, MAX_ATTRIBUTES, MAX_DEPTH, MAX_NAMESPACES_IN_SCOPE, OUTBOUND_NS, SOBJECT_NS,
};

/// One hostile family: its name and a body of about `bytes` bytes.
pub struct Family {
    pub name: &'static str,
    pub build: fn(bytes: usize) -> String,
}

pub const FAMILIES: &[Family] = &[
    Family {
        name: "namespace flood (declarations on the root, one more per element)",
        build: namespace_flood,
    },
    Family {
        name: "namespaces at the limit, prefixed elements",
        build: namespaces_at_limit,
    },
    Family {
        name: "attributes at the limit on every element",
        build: attributes_at_limit,
    },
    Family {
        name: "empty elements",
        build: empty_elements,
    },
    Family {
        name: "nesting at the limit",
        build: deep_nesting,
    },
    Family {
        name: "character references",
        build: character_references,
    },
    Family {
        name: "one notification with many fields",
        build: wide_notification,
    },
];

fn envelope(declarations: &str, body: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="{ENVELOPE_NS}"{declarations}><soapenv:Body><notifications xmlns="{OUTBOUND_NS}"><OrganizationId>00D5g000004XYZA</OrganizationId>{body}</notifications></soapenv:Body></soapenv:Envelope>"#
    )
}

/// Repeats `unit(i)` until the body would pass `bytes`.
fn fill(bytes: usize, overhead: usize, unit: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    let mut i = 0;
    loop {
        let next = unit(i);
        if overhead + out.len() + next.len() > bytes {
            return out;
        }
        out.push_str(&next);
        i += 1;
    }
}

/// 2,000 declarations on the root, then one more on every element.
pub fn namespace_flood(bytes: usize) -> String {
    let root = fill(bytes / 10, 0, |i| format!(r#" xmlns:r{i}="urn:r{i}""#));
    let overhead = envelope(&root, "").len();
    let body = fill(bytes, overhead, |i| {
        format!(r#"<e xmlns:e{i}="urn:e{i}"/>"#)
    });
    envelope(&root, &body)
}

/// As many declarations as allowed on the root, and every element and
/// attribute using the last prefix declared.
pub fn namespaces_at_limit(bytes: usize) -> String {
    let root: String = (0..MAX_NAMESPACES_IN_SCOPE - 2)
        .map(|i| format!(r#" xmlns:r{i}="urn:r{i}""#))
        .collect();
    let last = MAX_NAMESPACES_IN_SCOPE - 3;
    let overhead = envelope(&root, "").len();
    let body = fill(bytes, overhead, |_| {
        format!(r#"<r{last}:e r{last}:a="1"/>"#)
    });
    envelope(&root, &body)
}

pub fn attributes_at_limit(bytes: usize) -> String {
    let attributes: String = (0..MAX_ATTRIBUTES)
        .map(|i| format!(r#" a{i}="x""#))
        .collect();
    let overhead = envelope("", "").len();
    let body = fill(bytes, overhead, |_| format!("<e{attributes}/>"));
    envelope("", &body)
}

pub fn empty_elements(bytes: usize) -> String {
    let overhead = envelope("", "").len();
    envelope("", &fill(bytes, overhead, |_| "<e/>".to_owned()))
}

pub fn deep_nesting(bytes: usize) -> String {
    let depth = MAX_DEPTH - 3;
    let unit = format!("{}{}", "<d>".repeat(depth), "</d>".repeat(depth));
    let overhead = envelope("", "").len();
    envelope("", &fill(bytes, overhead, |_| unit.clone()))
}

pub fn character_references(bytes: usize) -> String {
    let overhead = envelope("", "<e></e>").len();
    let text = fill(bytes, overhead, |_| "&#x1F600;&amp;".to_owned());
    envelope("", &format!("<e>{text}</e>"))
}

pub fn wide_notification(bytes: usize) -> String {
    let head = format!(r#"<Notification><Id>04l1</Id><sObject xmlns:sf="{SOBJECT_NS}">"#);
    let tail = "</sObject></Notification>";
    let overhead = envelope("", "").len() + head.len() + tail.len();
    let fields = fill(bytes, overhead, |i| format!("<sf:F{i}>v</sf:F{i}>"));
    envelope("", &format!("{head}{fields}{tail}"))
}
