//! Counts the AWS requests a process makes, by service and operation, and
//! the DynamoDB capacity units they consume, by wrapping the SDK's HTTP
//! client. It sees every request before it leaves the process, so it works
//! the same against AWS and against an emulator (whose own capacity figures
//! are not sized). Used by `pointsflow-bench --aws-endpoint` for the cost
//! figures in docs/cost.md.
//!
//! Capacity follows DynamoDB's sizing rules: an item's size is the sum of its
//! attribute names and values; a write costs one unit per KB (rounded up), a
//! strongly consistent read one unit per 4 KB, and every action of a
//! transaction twice that. A put is sized from the item it sends. An update
//! or a condition check does not carry the item, so it is sized from its key
//! and the values it sets: exact for the counter items this system updates,
//! which hold nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::Value;

/// What was metered so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Requests by (service, operation), e.g. ("sqs", "SendMessageBatch").
    pub calls: BTreeMap<(String, String), u64>,
    /// DynamoDB write capacity units.
    pub write_units: u64,
    /// DynamoDB read capacity units, for reads of items under 4 KB.
    pub read_units: f64,
    /// The largest item written, in bytes.
    pub largest_item: u64,
}

impl Usage {
    /// Requests to one service.
    pub fn service_calls(&self, service: &str) -> u64 {
        self.calls
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A shared meter; clones count into the same figures.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    usage: Arc<Mutex<Usage>>,
}

impl Meter {
    pub fn new() -> Self {
        Self::default()
    }

    /// `client`, counting every request it sends into this meter.
    pub fn wrap(&self, client: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(MeteredClient {
            inner: client,
            meter: self.clone(),
        })
    }

    pub fn usage(&self) -> Usage {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets what was counted (e.g. the set-up before a measured run).
    pub fn reset(&self) {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Usage::default();
    }

    fn record(&self, request: &HttpRequest) {
        let Some(target) = request.headers().get("x-amz-target") else {
            return;
        };
        let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
        let service = match prefix {
            p if p.starts_with("DynamoDB") => "dynamodb",
            "AmazonSQS" => "sqs",
            other => other,
        };
        let capacity = if service == "dynamodb" {
            request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .map(|body| dynamodb_capacity(operation, &body))
                .unwrap_or_default()
        } else {
            Capacity::default()
        };
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        *usage
            .calls
            .entry((service.to_owned(), operation.to_owned()))
            .or_default() += 1;
        usage.write_units += capacity.write;
        usage.read_units += capacity.read;
        usage.largest_item = usage.largest_item.max(capacity.largest_item);
    }
}

#[derive(Debug)]
struct MeteredClient {
    inner: SharedHttpClient,
    meter: Meter,
}

impl HttpClient for MeteredClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(MeteredConnector {
            inner: self.inner.http_connector(settings, components),
            meter: self.meter.clone(),
        })
    }
}

#[derive(Debug)]
struct MeteredConnector {
    inner: SharedHttpConnector,
    meter: Meter,
}

impl HttpConnector for MeteredConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.meter.record(&request);
        self.inner.call(request)
    }
}

#[derive(Debug, Default, PartialEq)]
struct Capacity {
    write: u64,
    read: f64,
    largest_item: u64,
}

const KB: u64 = 1024;

fn units(bytes: u64, per: u64) -> u64 {
    bytes.div_ceil(per).max(1)
}

fn dynamodb_capacity(operation: &str, body: &Value) -> Capacity {
    let mut c = Capacity::default();
    let write = |bytes: u64, factor: u64, c: &mut Capacity| {
        c.write += factor * units(bytes, KB);
        c.largest_item = c.largest_item.max(bytes);
    };
    match operation {
        "PutItem" => write(item_size(&body["Item"]), 1, &mut c),
        "UpdateItem" => write(update_size(body), 1, &mut c),
        "DeleteItem" => write(item_size(&body["Key"]), 1, &mut c),
        "TransactWriteItems" => {
            for action in body["TransactItems"].as_array().into_iter().flatten() {
                let bytes = if let Some(put) = action.get("Put") {
                    item_size(&put["Item"])
                } else if let Some(update) = action.get("Update") {
                    update_size(update)
                } else if let Some(check) = action.get("ConditionCheck") {
                    item_size(&check["Key"])
                } else if let Some(delete) = action.get("Delete") {
                    item_size(&delete["Key"])
                } else {
                    continue;
                };
                write(bytes, 2, &mut c);
            }
        }
        "GetItem" | "Query" => {
            // Items here are under 4 KB (checked by `largest_item`); an
            // eventually consistent read costs half a unit.
            let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
            c.read += if consistent { 1.0 } else { 0.5 };
        }
        _ => {}
    }
    c
}

/// The key plus every value an update sets, under its attribute name.
fn update_size(update: &Value) -> u64 {
    let names = update["ExpressionAttributeNames"].as_object();
    let values = update["ExpressionAttributeValues"].as_object();
    let name_bytes: u64 = names
        .into_iter()
        .flatten()
        .map(|(_, n)| n.as_str().map_or(0, |s| s.len() as u64))
        .sum();
    let value_bytes: u64 = values
        .into_iter()
        .flatten()
        .map(|(_, v)| value_size(v))
        .sum();
    item_size(&update["Key"]) + name_bytes + value_bytes
}

/// An item's size in DynamoDB JSON: attribute names plus values.
fn item_size(item: &Value) -> u64 {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

fn number_size(n: &str) -> u64 {
    let digits = n.chars().filter(char::is_ascii_digit).count() as u64;
    digits.div_ceil(2) + 1
}

fn base64_len(s: &str) -> u64 {
    let padding = s.bytes().rev().take_while(|&b| b == b'=').count() as u64;
    (s.len() as u64 / 4 * 3).saturating_sub(padding)
}

/// The size of one `AttributeValue` in DynamoDB JSON.
fn value_size(value: &Value) -> u64 {
    let Some((kind, v)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = |f: fn(&str) -> u64| -> u64 {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(f)
            .sum()
    };
    match kind.as_str() {
        "S" => v.as_str().map_or(0, |s| s.len() as u64),
        "N" => v.as_str().map_or(0, number_size),
        "B" => v.as_str().map_or(0, base64_len),
        "BOOL" | "NULL" => 1,
        "SS" => strings(|s| s.len() as u64),
        "NS" => strings(number_size),
        "BS" => strings(base64_len),
        "L" => {
            3 + v
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<u64>()
        }
        "M" => {
            3 + v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, e)| 1 + n.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// `sdk`, with every request it sends counted by `meter`.
pub fn metered(sdk: SdkConfig, meter: &Meter) -> SdkConfig {
    use aws_smithy_http_client::{Builder, tls};
    // The SDK's own default: hyper 1 with rustls on aws-lc.
    let client = sdk.http_client().unwrap_or_else(|| {
        Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https()
    });
    let wrapped = meter.wrap(client);
    sdk.into_builder().http_client(wrapped).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodb_rules() {
        // "pk" (2) + "REQ#1" (5) + "n" (1) + 12345 (3 digits pairs + 1 = 4)
        let item = json!({"pk": {"S": "REQ#1"}, "n": {"N": "12345"}});
        assert_eq!(item_size(&item), 2 + 5 + 1 + 4);
        assert_eq!(value_size(&json!({"BOOL": true})), 1);
        assert_eq!(value_size(&json!({"B": "aGVsbG8="})), 5);
        assert_eq!(value_size(&json!({"L": [{"S": "ab"}]})), 3 + 1 + 2);
        assert_eq!(value_size(&json!({"M": {"k": {"S": "ab"}}})), 3 + 1 + 1 + 2);
    }

    #[test]
    fn a_transaction_costs_twice_per_kilobyte_of_each_action() {
        let big = "x".repeat(1500);
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": big}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "ACCT#a"}},
                        "ExpressionAttributeValues": {":d": {"N": "5"}}}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "ENTRY#1"}}}}
        ]});
        let c = dynamodb_capacity("TransactWriteItems", &body);
        assert_eq!(c.write, 2 * 2 + 2 + 2);
        assert_eq!(c.largest_item, 2 + 1500);
    }

    #[test]
    fn a_put_costs_one_unit_per_kilobyte() {
        let body = json!({"Item": {"pk": {"S": "x".repeat(2048)}}});
        assert_eq!(dynamodb_capacity("PutItem", &body).write, 3);
        assert_eq!(
            dynamodb_capacity("GetItem", &json!({"ConsistentRead": true})).read,
            1.0
        );
    }
}
