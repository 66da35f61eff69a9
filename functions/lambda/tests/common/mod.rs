//! Provisioning a function's AWS resources on the emulator, for the tests
//! that run the built binaries under the template's environment.

#![allow(dead_code)]

use pointsflow_aws::tables::{self, QueuePair};
use pointsflow_conformance::runtime_api::{self, Outcome};
use pointsflow_lambda::{
    AWS_ENDPOINT, CALLBACK_DLQ_URL, CALLBACK_QUEUE_URL, CONFIG_SECRET, DISPATCH_DLQ_URL,
    DISPATCH_FUNCTION_ARN, DISPATCH_QUEUE_URL, ELIGIBILITY_DLQ_URL, ELIGIBILITY_QUEUE_URL,
    EVENT_BUS, SCHEDULE_DEAD_LETTER_ARN, SCHEDULE_PREFIX, SCHEDULER_ROLE_ARN, STACK, TABLE,
};
use serde_json::Value;

/// A configuration of one API source (`salesforce`) and one real-time
/// program (`sales-incentive`) crediting a partner nobody calls.
pub const CONFIG: &str = r#"
[[sources]]
id = "salesforce"
api_key = "pf_test_key_0123456789"

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "partner-key"

[[programs]]
id = "sales-incentive"
sources = ["salesforce"]
name = "Sales incentive"
currency = "USD"
budget = 1000000
points = { rule = "given" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

/// The table, queues and configuration secret of one test stack.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub endpoint: String,
    pub table: String,
    pub secret: String,
    pub eligibility: QueuePair,
    pub dispatch: QueuePair,
    pub callbacks: QueuePair,
    /// The event bus (its name).
    pub event_bus: String,
}

impl Provisioned {
    /// Creates everything on the emulator at `endpoint`, the configuration
    /// (`config_toml`) in a Secrets Manager secret.
    pub async fn create(endpoint: &str, prefix: &str, config_toml: &str) -> Result<Self, String> {
        let sdk = pointsflow_harness::emulator::config_at(endpoint).await;
        let table = format!("{prefix}-ledger");
        tables::create_ledger_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let eligibility =
            tables::create_queue_pair(&sqs, &format!("{prefix}-eligibility"), 30, 5).await?;
        let dispatch =
            tables::create_queue_pair(&sqs, &format!("{prefix}-dispatch"), 30, 5).await?;
        let callbacks =
            tables::create_queue_pair(&sqs, &format!("{prefix}-callbacks"), 30, 5).await?;
        let event_bus = format!("{prefix}-events");
        tables::create_event_bus(&aws_sdk_eventbridge::Client::new(&sdk), &event_bus).await?;
        let secret = format!("{prefix}/config");
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&secret)
            .secret_string(config_toml)
            .send()
            .await
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            table,
            secret,
            eligibility,
            dispatch,
            callbacks,
            event_bus,
        })
    }

    /// The variables in `names` (those the template gives a function),
    /// with this stack's values, and the emulator endpoint. A name this
    /// stack has no value for is an error: the template sets something
    /// no test can supply.
    pub fn env_named<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<Vec<(String, String)>, String> {
        let all = self.env();
        let mut out = Vec::new();
        for name in names {
            let value = all
                .iter()
                .find(|(k, _)| k == name)
                .ok_or_else(|| format!("no test value for the template's variable {name}"))?;
            out.push(value.clone());
        }
        out.push((AWS_ENDPOINT.to_owned(), self.endpoint.clone()));
        Ok(out)
    }

    /// Runs `binary` as the template's `function` on one `event` and
    /// returns its response; anything else (an error, no answer) panics.
    pub async fn respond(&self, binary: &str, function: &str, event: Value) -> Value {
        let (outcome, _) = runtime_api::run_deployed(
            binary,
            function,
            event,
            |names| self.env_named(names).unwrap(),
            &self.endpoint,
        )
        .await;
        let Some(Outcome::Response(response)) = outcome else {
            panic!("no response from {function}: {outcome:?}");
        };
        response
    }

    /// Every variable a deployment sets, pointing here.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            (TABLE, self.table.clone()),
            (CONFIG_SECRET, self.secret.clone()),
            (ELIGIBILITY_QUEUE_URL, self.eligibility.url.clone()),
            (DISPATCH_QUEUE_URL, self.dispatch.url.clone()),
            (ELIGIBILITY_DLQ_URL, self.eligibility.dlq_url.clone()),
            (DISPATCH_DLQ_URL, self.dispatch.dlq_url.clone()),
            (CALLBACK_QUEUE_URL, self.callbacks.url.clone()),
            (CALLBACK_DLQ_URL, self.callbacks.dlq_url.clone()),
            (
                SCHEDULE_PREFIX,
                self.table.trim_end_matches("-ledger").to_owned(),
            ),
            (
                DISPATCH_FUNCTION_ARN,
                "arn:aws:lambda:us-east-1:123456789012:function:pointsflow-dispatch".to_owned(),
            ),
            (
                SCHEDULER_ROLE_ARN,
                "arn:aws:iam::123456789012:role/pointsflow-scheduler".to_owned(),
            ),
            (SCHEDULE_DEAD_LETTER_ARN, self.dispatch.dlq_arn.clone()),
            (STACK, self.table.trim_end_matches("-ledger").to_owned()),
            (EVENT_BUS, self.event_bus.clone()),
            (AWS_ENDPOINT, self.endpoint.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
