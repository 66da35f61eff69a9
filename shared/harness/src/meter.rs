//! Counts the AWS requests a process makes, by service and operation, and
//! the DynamoDB capacity units they consume, by wrapping the SDK's HTTP
//! client. It sees every request before it leaves the process, and its
//! answer, so it works the same against AWS and against an emulator (whose
//! own capacity figures are not sized). Used by `pointsflow-bench
//! --aws-endpoint` for the cost figures in docs/cost.md.
//!
//! Capacity follows DynamoDB's sizing rules: an item's size is the sum of its
//! attribute names and values; a write costs one unit per KB (rounded up), a
//! strongly consistent read one unit per 4 KB, and every action of a
//! transaction twice that. A put is sized from the item it sends. An update
//! or a condition check does not carry the item, so it is sized from its key
//! and the values it sets: exact for the counter items this system updates,
//! which hold nothing else.
//!
//! Global secondary indexes are metered too. The meter learns a table's
//! indexes from its `CreateTable` request and keeps, for every item written,
//! the attributes its indexes use. Each successful write then costs each
//! index what DynamoDB charges: one unit per KB of the index entry (its keys,
//! the table's keys and the projected attributes) when an item enters the
//! index, leaves it, or changes a projected attribute; two writes (the old
//! entry deleted, the new one put) when the index key changes; nothing when
//! none of that changes. An update is not evaluated: one that names an
//! attribute an index uses is counted in [`Usage::unmodelled_updates`].
//!
//! The meter also keeps the write units each item and each index partition
//! took, for the hottest one ([`Usage::hottest`]): DynamoDB gives a single
//! item (and a single partition key value) at most 1,000 write units a
//! second.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::{Map, Value};

/// What was metered so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Requests by (service, operation), e.g. ("sqs", "SendMessageBatch").
    pub calls: BTreeMap<(String, String), u64>,
    /// DynamoDB write capacity units of the tables' own items.
    pub write_units: u64,
    /// DynamoDB write capacity units of the global secondary indexes.
    pub index_write_units: u64,
    /// DynamoDB read capacity units, for reads of items under 4 KB.
    pub read_units: f64,
    /// The largest item written, in bytes.
    pub largest_item: u64,
    /// The item or index partition that took the most write units, and how
    /// many (table and index writes together).
    pub hottest: Option<(String, u64)>,
    /// Successful updates that name an attribute an index uses, which the
    /// meter does not evaluate (their index writes are not counted).
    pub unmodelled_updates: u64,
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

    /// Table and index write units together.
    pub fn all_write_units(&self) -> u64 {
        self.write_units + self.index_write_units
    }
}

/// The one that took the most write units; of equals, the first by name.
fn hottest<'a>(heat: impl Iterator<Item = (&'a String, &'a u64)>) -> Option<(String, u64)> {
    heat.max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(what, units)| (what.clone(), *units))
}

/// What a global secondary index holds beside its keys.
#[derive(Debug, Clone, PartialEq)]
enum Projection {
    KeysOnly,
    Include(Vec<String>),
    All,
}

/// A global secondary index, as the meter sizes its writes.
#[derive(Debug, Clone, PartialEq)]
struct Index {
    name: String,
    pk: String,
    sk: Option<String>,
    projection: Projection,
}

/// A table's key attributes and indexes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Schema {
    pk: String,
    sk: Option<String>,
    indexes: Vec<Index>,
}

impl Schema {
    /// Whether an index keys or projects `attribute`.
    fn uses(&self, attribute: &str) -> bool {
        self.indexes.iter().any(|i| {
            i.pk == attribute
                || i.sk.as_deref() == Some(attribute)
                || match &i.projection {
                    Projection::KeysOnly => false,
                    Projection::Include(names) => names.iter().any(|n| n == attribute),
                    Projection::All => true,
                }
        })
    }

    /// The attributes of `item` some index uses.
    fn relevant(&self, item: &Map<String, Value>) -> Map<String, Value> {
        item.iter()
            .filter(|(name, _)| self.uses(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// An item's key as one string, `pk` and `sk` values joined.
    fn key_of(&self, item: &Value) -> String {
        let part = |name: &str| item.get(name).map(scalar).unwrap_or_default();
        match &self.sk {
            Some(sk) => format!("{} / {}", part(&self.pk), part(sk)),
            None => part(&self.pk),
        }
    }
}

/// A key attribute's value as text (`{"S": "x"}` is `x`).
fn scalar(value: &Value) -> String {
    value
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A write the meter applies to its copy of the indexed attributes once the
/// request succeeds.
#[derive(Debug)]
enum Change {
    Put(Map<String, Value>),
    Delete,
    /// An update naming an attribute an index uses.
    Unmodelled,
}

#[derive(Debug)]
struct Pending {
    table: String,
    key: String,
    change: Change,
}

#[derive(Debug, Default)]
struct State {
    usage: Usage,
    schemas: HashMap<String, Schema>,
    /// The indexed attributes of every item written, by table and key.
    items: HashMap<(String, String), Map<String, Value>>,
    /// Write units by item and by index partition.
    heat: HashMap<String, u64>,
}

impl State {
    fn heat(&mut self, what: String, units: u64) {
        *self.heat.entry(what).or_default() += units;
    }

    fn apply(&mut self, pending: Vec<Pending>) {
        for Pending { table, key, change } in pending {
            let Some(schema) = self.schemas.get(&table).cloned() else {
                continue;
            };
            let slot = (table.clone(), key);
            let old = self.items.get(&slot).cloned();
            let new = match change {
                Change::Put(item) => Some(schema.relevant(&item)),
                Change::Delete => None,
                Change::Unmodelled => {
                    self.usage.unmodelled_updates += 1;
                    continue;
                }
            };
            for index in &schema.indexes {
                for (partition, units) in index_writes(&schema, index, old.as_ref(), new.as_ref()) {
                    self.usage.index_write_units += units;
                    self.heat(format!("index {}: {partition}", index.name), units);
                }
            }
            match new {
                Some(attributes) if !attributes.is_empty() => {
                    self.items.insert(slot, attributes);
                }
                _ => {
                    self.items.remove(&slot);
                }
            }
        }
    }
}

/// The index entry of an item (`None` when the item is not in the index):
/// its index partition key value and its size in bytes. Table keys are not
/// kept by the meter, so the entry is sized with `table_key_bytes` for them.
fn index_entry(
    schema: &Schema,
    index: &Index,
    item: Option<&Map<String, Value>>,
    table_key_bytes: u64,
) -> Option<(String, u64, Map<String, Value>)> {
    let item = item?;
    let pk = item.get(&index.pk)?;
    let mut entry = Map::new();
    entry.insert(index.pk.clone(), pk.clone());
    if let Some(sk) = &index.sk {
        entry.insert(sk.clone(), item.get(sk)?.clone());
    }
    for (name, value) in item {
        let projected = match &index.projection {
            Projection::KeysOnly => false,
            Projection::Include(names) => names.contains(name),
            Projection::All => true,
        };
        if projected && name != &schema.pk && Some(name) != schema.sk.as_ref() {
            entry.insert(name.clone(), value.clone());
        }
    }
    let size = table_key_bytes + item_size(&Value::Object(entry.clone()));
    Some((scalar(pk), size, entry))
}

/// What one write costs `index`: the partitions written and their units.
fn index_writes(
    schema: &Schema,
    index: &Index,
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> Vec<(String, u64)> {
    // The table's own keys are in every entry; the meter sizes them at the
    // length of this system's keys (`pk`, `sk` and a short value each).
    const TABLE_KEYS: u64 = 64;
    let before = index_entry(schema, index, old, TABLE_KEYS);
    let after = index_entry(schema, index, new, TABLE_KEYS);
    let key = |e: &Map<String, Value>| {
        (
            e.get(&index.pk).cloned(),
            index.sk.as_ref().and_then(|sk| e.get(sk).cloned()),
        )
    };
    match (before, after) {
        (None, None) => vec![],
        (None, Some((p, size, _))) | (Some((p, size, _)), None) => vec![(p, units(size, KB))],
        (Some((p0, s0, e0)), Some((p1, s1, e1))) => {
            if key(&e0) != key(&e1) {
                vec![(p0, units(s0, KB)), (p1, units(s1, KB))]
            } else if e0 != e1 {
                vec![(p1, units(s1, KB))]
            } else {
                vec![]
            }
        }
    }
}

/// A shared meter; clones count into the same figures.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    state: Arc<Mutex<State>>,
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn usage(&self) -> Usage {
        let state = self.state();
        let mut usage = state.usage.clone();
        usage.hottest = hottest(state.heat.iter());
        usage
    }

    /// The hottest item or index partition whose name contains `part`
    /// (`ACCT#budget#`: a budget's shards), as [`Usage::hottest`] names it.
    pub fn hottest_of(&self, part: &str) -> Option<(String, u64)> {
        hottest(
            self.state()
                .heat
                .iter()
                .filter(|(what, _)| what.contains(part)),
        )
    }

    /// Forgets what was counted (e.g. the set-up before a measured run),
    /// but not the tables' indexes or what their items hold.
    pub fn reset(&self) {
        let mut state = self.state();
        state.usage = Usage::default();
        state.heat.clear();
    }

    /// Counts `request` and returns the index changes it makes if it succeeds.
    fn record(&self, request: &HttpRequest) -> Vec<Pending> {
        let Some(target) = request.headers().get("x-amz-target") else {
            return vec![];
        };
        let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
        let service = match prefix {
            p if p.starts_with("DynamoDB") => "dynamodb",
            "AmazonSQS" => "sqs",
            other => other,
        };
        let body = if service == "dynamodb" {
            request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        } else {
            None
        };
        let mut state = self.state();
        *state
            .usage
            .calls
            .entry((service.to_owned(), operation.to_owned()))
            .or_default() += 1;
        drop(state);
        match body {
            Some(body) => self.dynamodb(operation, &body),
            None => vec![],
        }
    }

    /// Counts a DynamoDB request's capacity and returns the index changes
    /// it makes if it succeeds.
    fn dynamodb(&self, operation: &str, body: &Value) -> Vec<Pending> {
        let mut state = self.state();
        if operation == "CreateTable" {
            if let Some((table, schema)) = schema_of(body) {
                state.schemas.insert(table, schema);
            }
            return vec![];
        }
        let capacity = dynamodb_capacity(operation, body);
        state.usage.write_units += capacity.write;
        state.usage.read_units += capacity.read;
        state.usage.largest_item = state.usage.largest_item.max(capacity.largest_item);
        let mut pending = Vec::new();
        for w in writes(operation, body) {
            let schema = state
                .schemas
                .get(w.table)
                .cloned()
                .unwrap_or_else(|| Schema {
                    pk: "pk".into(),
                    sk: Some("sk".into()),
                    indexes: vec![],
                });
            let key = schema.key_of(w.item);
            state.heat(format!("item {key}"), w.units);
            let change = match w.kind {
                "Put" => Change::Put(w.item.as_object().cloned().unwrap_or_default()),
                "Delete" => Change::Delete,
                "Update" if names_indexed(&schema, w.action) => Change::Unmodelled,
                _ => continue,
            };
            pending.push(Pending {
                table: w.table.to_owned(),
                key,
                change,
            });
        }
        pending
    }

    fn succeeded(&self, pending: Vec<Pending>) {
        if !pending.is_empty() {
            self.state().apply(pending);
        }
    }
}

/// Whether an update's expression names an attribute an index uses.
fn names_indexed(schema: &Schema, update: &Value) -> bool {
    let aliased = update["ExpressionAttributeNames"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_str())
        .any(|n| schema.uses(n));
    let bare = update["UpdateExpression"]
        .as_str()
        .unwrap_or_default()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| schema.uses(word));
    aliased || bare
}

/// One item a write request writes.
struct Write<'a> {
    table: &'a str,
    /// `Put`, `Update`, `Delete` or `ConditionCheck`.
    kind: &'static str,
    /// The item a put writes, else the key.
    item: &'a Value,
    /// The request or transaction action (an update's expression).
    action: &'a Value,
    /// The item's size as DynamoDB sizes the write.
    bytes: u64,
    /// Write units: one per KB, two in a transaction.
    units: u64,
}

/// Every item a write request writes.
fn writes<'a>(operation: &str, body: &'a Value) -> Vec<Write<'a>> {
    let one = |kind: &'static str, action: &'a Value, factor: u64| -> Option<Write<'a>> {
        let (item, bytes) = match kind {
            "Put" => (&action["Item"], item_size(&action["Item"])),
            "Update" => (&action["Key"], update_size(action)),
            "Delete" | "ConditionCheck" => (&action["Key"], item_size(&action["Key"])),
            _ => return None,
        };
        Some(Write {
            table: action["TableName"].as_str().unwrap_or_default(),
            kind,
            item,
            action,
            bytes,
            units: factor * units(bytes, KB),
        })
    };
    match operation {
        "PutItem" => one("Put", body, 1).into_iter().collect(),
        "UpdateItem" => one("Update", body, 1).into_iter().collect(),
        "DeleteItem" => one("Delete", body, 1).into_iter().collect(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let (kind, action) = a.as_object()?.iter().next()?;
                let kind = ["Put", "Update", "Delete", "ConditionCheck"]
                    .into_iter()
                    .find(|k| k == kind)?;
                one(kind, action, 2)
            })
            .collect(),
        _ => vec![],
    }
}

/// A table's keys and indexes, from its `CreateTable` request.
fn schema_of(body: &Value) -> Option<(String, Schema)> {
    let keys = |schema: &Value| -> (Option<String>, Option<String>) {
        let mut hash = None;
        let mut range = None;
        for k in schema.as_array().into_iter().flatten() {
            let name = k["AttributeName"].as_str().map(str::to_owned);
            match k["KeyType"].as_str() {
                Some("HASH") => hash = name,
                Some("RANGE") => range = name,
                _ => {}
            }
        }
        (hash, range)
    };
    let table = body["TableName"].as_str()?.to_owned();
    let (pk, sk) = keys(&body["KeySchema"]);
    let indexes = body["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let (pk, sk) = keys(&i["KeySchema"]);
            let projection = match i["Projection"]["ProjectionType"].as_str() {
                Some("ALL") => Projection::All,
                Some("INCLUDE") => Projection::Include(
                    i["Projection"]["NonKeyAttributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => Projection::KeysOnly,
            };
            Some(Index {
                name: i["IndexName"].as_str()?.to_owned(),
                pk: pk?,
                sk,
                projection,
            })
        })
        .collect();
    Some((
        table,
        Schema {
            pk: pk?,
            sk,
            indexes,
        },
    ))
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
        let pending = self.meter.record(&request);
        let answer = self.inner.call(request);
        if pending.is_empty() {
            return answer;
        }
        let meter = self.meter.clone();
        HttpConnectorFuture::new(async move {
            let response = answer.await;
            if matches!(&response, Ok(r) if r.status().is_success()) {
                meter.succeeded(pending);
            }
            response
        })
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
    for w in writes(operation, body) {
        c.write += w.units;
        c.largest_item = c.largest_item.max(w.bytes);
    }
    // Items here are under 4 KB (checked by `largest_item`); an eventually
    // consistent read costs half a unit.
    let unit = |asked: &Value| {
        if asked["ConsistentRead"].as_bool().unwrap_or(false) {
            1.0
        } else {
            0.5
        }
    };
    match operation {
        "GetItem" | "Query" => c.read += unit(body),
        // Each key asked for is read as a `GetItem` would read it.
        "BatchGetItem" => {
            for wanted in body["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                let keys = wanted["Keys"].as_array().map_or(0, Vec::len);
                c.read += unit(wanted) * keys as f64;
            }
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
        let batch = json!({"RequestItems": {
            "t": {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}, {"pk": {"S": "c"}}]},
            "u": {"Keys": [{"pk": {"S": "d"}}], "ConsistentRead": true}
        }});
        assert_eq!(dynamodb_capacity("BatchGetItem", &batch).read, 2.5);
    }

    /// A table like the ledger's: a sparse index projecting `points`, and
    /// a keys-only one.
    fn metered_table() -> Meter {
        let meter = Meter::new();
        let create = json!({
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "GlobalSecondaryIndexes": [
                {"IndexName": "waiting",
                 "KeySchema": [{"AttributeName": "wait_pk", "KeyType": "HASH"}, {"AttributeName": "wait_sk", "KeyType": "RANGE"}],
                 "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["points"]}},
                {"IndexName": "unsettled",
                 "KeySchema": [{"AttributeName": "u_pk", "KeyType": "HASH"}],
                 "Projection": {"ProjectionType": "KEYS_ONLY"}}
            ]
        });
        let (table, schema) = schema_of(&create).unwrap();
        meter.state().schemas.insert(table, schema);
        meter
    }

    fn put(meter: &Meter, item: Value, succeeds: bool) -> Usage {
        let before = meter.usage();
        let pending = meter.dynamodb("PutItem", &json!({"TableName": "t", "Item": item}));
        if succeeds {
            meter.succeeded(pending);
        }
        let after = meter.usage();
        Usage {
            write_units: after.write_units - before.write_units,
            index_write_units: after.index_write_units - before.index_write_units,
            ..after
        }
    }

    #[test]
    fn an_index_costs_a_write_to_enter_leave_or_change_and_two_when_its_key_moves() {
        let meter = metered_table();
        let request = |extra: Value| {
            let mut item = json!({"pk": {"S": "REQ#1"}, "sk": {"S": "REQUEST"}, "doc": {"S": "x"}});
            for (k, v) in extra.as_object().unwrap() {
                item[k] = v.clone();
            }
            item
        };
        // Stored in progress: enters the keys-only index.
        let u = put(&meter, request(json!({"u_pk": {"S": "U#0"}})), true);
        assert_eq!((u.write_units, u.index_write_units), (1, 1));
        // Rewritten with the same index key: nothing for the index.
        let u = put(
            &meter,
            request(json!({"u_pk": {"S": "U#0"}, "doc": {"S": "y"}})),
            true,
        );
        assert_eq!(u.index_write_units, 0);
        // A failed conditional write changes nothing in an index.
        let u = put(
            &meter,
            request(json!({"wait_pk": {"S": "W#p"}, "wait_sk": {"S": "1"}})),
            false,
        );
        assert_eq!((u.write_units, u.index_write_units), (1, 0));
        // Leaves one index (a delete) and enters the other (a put).
        let u = put(
            &meter,
            request(json!({"wait_pk": {"S": "W#p"}, "wait_sk": {"S": "1"}, "points": {"N": "5"}})),
            true,
        );
        assert_eq!(u.index_write_units, 2);
        // A projected attribute changes: one write.
        let u = put(
            &meter,
            request(json!({"wait_pk": {"S": "W#p"}, "wait_sk": {"S": "1"}, "points": {"N": "6"}})),
            true,
        );
        assert_eq!(u.index_write_units, 1);
        // The index key moves: the old entry deleted, the new one put.
        let u = put(
            &meter,
            request(json!({"wait_pk": {"S": "W#q"}, "wait_sk": {"S": "1"}, "points": {"N": "6"}})),
            true,
        );
        assert_eq!(u.index_write_units, 2);
        let hottest = meter.usage().hottest.unwrap();
        assert_eq!(hottest, ("item REQ#1 / REQUEST".to_owned(), 6));
    }

    #[test]
    fn the_hottest_item_is_the_one_every_transaction_touches() {
        let meter = metered_table();
        for i in 0..3 {
            let body = json!({"TransactItems": [
                {"Put": {"TableName": "t", "Item": {"pk": {"S": format!("LEDGER#{i}")}, "sk": {"S": "E"}}}},
                {"Update": {"TableName": "t", "Key": {"pk": {"S": "ACCT#budget"}, "sk": {"S": "BALANCE"}},
                            "UpdateExpression": "ADD available :d", "ExpressionAttributeValues": {":d": {"N": "-5"}}}}
            ]});
            meter.dynamodb("TransactWriteItems", &body);
        }
        assert_eq!(
            meter.usage().hottest,
            Some(("item ACCT#budget / BALANCE".to_owned(), 6))
        );
    }

    #[test]
    fn an_update_naming_an_indexed_attribute_is_reported_not_guessed() {
        let meter = metered_table();
        let schema = meter.state().schemas["t"].clone();
        assert!(names_indexed(
            &schema,
            &json!({"UpdateExpression": "SET #w = :w", "ExpressionAttributeNames": {"#w": "wait_pk"}})
        ));
        assert!(names_indexed(
            &schema,
            &json!({"UpdateExpression": "REMOVE u_pk"})
        ));
        assert!(!names_indexed(
            &schema,
            &json!({"UpdateExpression": "ADD available :d, used :u"})
        ));
    }
}
