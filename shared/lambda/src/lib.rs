//! What every pointsflow Lambda does at cold start, once: set up tracing
//! (JSON when the function's log format is JSON, levels from
//! `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), read its typed environment (a
//! missing or invalid variable stops the cold start, naming it), build the
//! SDK clients (pointed at `POINTSFLOW_AWS_ENDPOINT` when set, for an
//! emulator), load the configuration from SSM Parameter Store, and build the
//! adapters the handlers take. Each function's `main.rs` only picks what it
//! needs from here.
//!
//! Environment: `POINTSFLOW_TABLE` (the DynamoDB table),
//! `POINTSFLOW_CONFIG_PARAMETER` (the SSM parameter holding the TOML
//! configuration, a SecureString since it holds source keys),
//! `POINTSFLOW_ELIGIBILITY_QUEUE_URL` (intake), `POINTSFLOW_DISPATCH_QUEUE_URL`
//! (eligibility, and dispatch for its window work); for the functions that
//! arm window schedules (intake, eligibility) `POINTSFLOW_SCHEDULE_PREFIX`,
//! `POINTSFLOW_DISPATCH_FUNCTION_ARN`, `POINTSFLOW_SCHEDULER_ROLE_ARN` and
//! `POINTSFLOW_SCHEDULE_DEAD_LETTER_ARN`; for operations, which redrives
//! them, `POINTSFLOW_ELIGIBILITY_DLQ_URL`, `POINTSFLOW_DISPATCH_DLQ_URL` and
//! `POINTSFLOW_CALLBACK_DLQ_URL`; for every function that settles requests,
//! `POINTSFLOW_CALLBACK_QUEUE_URL` (status callbacks); optional
//! `POINTSFLOW_AWS_ENDPOINT`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pointsflow_aws::{
    DynamoAuditLog, DynamoEnrollments, DynamoLedger, DynamoPartnerState, DynamoProgramStore,
    DynamoRequestStore, DynamoWindowStore, EventBridgeSchedules, ScheduleTarget, SqsDeadLetters,
    SqsPublisher, SqsRedelivery,
};
use pointsflow_config::{Config, PartnerKind, PartnerProtocol};
use pointsflow_core::governance::{CircuitStore, RateLimiter};
use pointsflow_core::ports::{Clock, PartnerConnector};
use pointsflow_core::values::PartnerId;
use pointsflow_memory::LayeredEnrollments;
use pointsflow_partners::{LoyaltyConnector, RestConnector, RestConnectorConfig};
use pointsflow_runtime::catalog::LiveCatalog;
use pointsflow_runtime::governed::Governed;

pub const TABLE: &str = "POINTSFLOW_TABLE";
pub const CONFIG_PARAMETER: &str = "POINTSFLOW_CONFIG_PARAMETER";
pub const ELIGIBILITY_QUEUE_URL: &str = "POINTSFLOW_ELIGIBILITY_QUEUE_URL";
pub const DISPATCH_QUEUE_URL: &str = "POINTSFLOW_DISPATCH_QUEUE_URL";
pub const ELIGIBILITY_DLQ_URL: &str = "POINTSFLOW_ELIGIBILITY_DLQ_URL";
pub const CALLBACK_QUEUE_URL: &str = "POINTSFLOW_CALLBACK_QUEUE_URL";
pub const CALLBACK_DLQ_URL: &str = "POINTSFLOW_CALLBACK_DLQ_URL";
pub const DISPATCH_DLQ_URL: &str = "POINTSFLOW_DISPATCH_DLQ_URL";
pub const AWS_ENDPOINT: &str = "POINTSFLOW_AWS_ENDPOINT";
pub const SCHEDULE_PREFIX: &str = "POINTSFLOW_SCHEDULE_PREFIX";
/// The stack's name, for the metrics dispatch reports (optional).
pub const STACK: &str = "POINTSFLOW_STACK";
pub const DISPATCH_FUNCTION_ARN: &str = "POINTSFLOW_DISPATCH_FUNCTION_ARN";
pub const SCHEDULER_ROLE_ARN: &str = "POINTSFLOW_SCHEDULER_ROLE_ARN";
pub const SCHEDULE_DEAD_LETTER_ARN: &str = "POINTSFLOW_SCHEDULE_DEAD_LETTER_ARN";

/// Why a function cannot start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("SSM parameter {parameter} (from {CONFIG_PARAMETER}): {problem}")]
    Parameter { parameter: String, problem: String },
    #[error("configuration in SSM parameter {parameter}: {source}")]
    Config {
        parameter: String,
        source: pointsflow_config::ConfigError,
    },
    #[error("partner {partner}: {problem}")]
    Partner { partner: PartnerId, problem: String },
    #[error("cannot read the applied programs: {0}")]
    Programs(pointsflow_core::ports::StoreError),
}

/// Sets up tracing the way Lambda expects it (JSON when the function's log
/// format is JSON, levels from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), every
/// line masked: no member number, email address or secret of `config`
/// reaches the logs.
pub fn init_tracing(config: &Config) {
    use pointsflow_runtime::masking::{Masker, MaskingWriter};
    use tracing_subscriber::EnvFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into())
        .to_lowercase();
    let writer = MaskingWriter::new(std::io::stdout, Masker::new(config.secrets()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(level))
        .with_writer(writer)
        .with_target(false);
    if let Ok(stack) = std::env::var(STACK) {
        pointsflow_runtime::metrics::to_stdout(stack);
    }
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A second initialisation (tests) is a no-op.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// A required environment variable, non-empty.
pub fn required(name: &'static str) -> Result<String, WiringError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(WiringError::Invalid {
            name,
            problem: "is empty".into(),
        }),
        Err(std::env::VarError::NotPresent) => Err(WiringError::Missing(name)),
        Err(std::env::VarError::NotUnicode(_)) => Err(WiringError::Invalid {
            name,
            problem: "is not UTF-8".into(),
        }),
    }
}

fn optional(name: &'static str) -> Result<Option<String>, WiringError> {
    match required(name) {
        Ok(v) => Ok(Some(v)),
        Err(WiringError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The clients, configuration and adapters of one cold start.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub config: Config,
    pub table: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub scheduler: aws_sdk_scheduler::Client,
}

impl Wiring {
    /// Reads the environment and the configuration; fails naming the variable
    /// or the configuration field that is wrong.
    pub async fn from_env() -> Result<Self, WiringError> {
        let table = required(TABLE)?;
        let parameter = required(CONFIG_PARAMETER)?;
        let endpoint = optional(AWS_ENDPOINT)?;
        let sdk = pointsflow_aws::sdk_config(endpoint.as_deref()).await;
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let text = ssm
            .get_parameter()
            .name(&parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| WiringError::Parameter {
                parameter: parameter.clone(),
                problem: aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
            })?
            .parameter()
            .and_then(|p| p.value())
            .map(str::to_owned)
            .ok_or_else(|| WiringError::Parameter {
                parameter: parameter.clone(),
                problem: "has no value".into(),
            })?;
        let config = Config::parse(&text).map_err(|source| WiringError::Config {
            parameter: parameter.clone(),
            source,
        })?;
        Ok(Self {
            config,
            table,
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            scheduler: aws_sdk_scheduler::Client::new(&sdk),
        })
    }

    pub fn store(&self) -> Arc<DynamoRequestStore> {
        Arc::new(DynamoRequestStore::new(self.dynamodb.clone(), &self.table))
    }

    pub fn ledger(&self) -> Arc<DynamoLedger> {
        Arc::new(DynamoLedger::new(self.dynamodb.clone(), &self.table))
    }

    /// A publisher to the queue whose URL is in `variable`.
    pub fn publisher(&self, variable: &'static str) -> Result<Arc<SqsPublisher>, WiringError> {
        Ok(Arc::new(SqsPublisher::new(
            self.sqs.clone(),
            required(variable)?,
        )))
    }

    /// Window schedules on EventBridge Scheduler, invoking the dispatch function.
    pub fn schedules(&self) -> Result<Arc<EventBridgeSchedules>, WiringError> {
        Ok(Arc::new(EventBridgeSchedules::new(
            self.scheduler.clone(),
            ScheduleTarget {
                prefix: required(SCHEDULE_PREFIX)?,
                group: "default".into(),
                function_arn: required(DISPATCH_FUNCTION_ARN)?,
                role_arn: required(SCHEDULER_ROLE_ARN)?,
                dead_letter_arn: Some(required(SCHEDULE_DEAD_LETTER_ARN)?),
            },
        )))
    }

    /// Reconciliation reports, in the table.
    pub fn report_store(&self) -> Arc<pointsflow_aws::DynamoReportStore> {
        Arc::new(pointsflow_aws::DynamoReportStore::new(
            self.dynamodb.clone(),
            &self.table,
        ))
    }

    /// `update`, queueing a status callback when a request of a source
    /// with a callback reaches a final status (the queue in
    /// `POINTSFLOW_CALLBACK_QUEUE_URL`).
    pub fn notifying(
        &self,
        update: Arc<dyn pointsflow_core::ports::RequestUpdate>,
    ) -> Result<Arc<dyn pointsflow_core::ports::RequestUpdate>, WiringError> {
        let sources: Vec<_> = self
            .config
            .sources
            .iter()
            .filter(|s| s.callback.is_some())
            .map(|s| s.id.clone())
            .collect();
        if sources.is_empty() {
            return Ok(update);
        }
        Ok(Arc::new(pointsflow_runtime::callbacks::Notifying::new(
            update,
            self.publisher(CALLBACK_QUEUE_URL)?,
            sources,
        )))
    }

    /// The audit log of operators' commands, in the table.
    pub fn audit_log(&self) -> Arc<DynamoAuditLog> {
        Arc::new(DynamoAuditLog::new(self.dynamodb.clone(), &self.table))
    }

    /// The dead-letter queue whose URL is in `dead_letter`, redriven into
    /// the queue whose URL is in `source`.
    pub fn dead_letters(
        &self,
        dead_letter: &'static str,
        source: &'static str,
    ) -> Result<Arc<SqsDeadLetters>, WiringError> {
        Ok(Arc::new(SqsDeadLetters::new(
            self.sqs.clone(),
            required(dead_letter)?,
            required(source)?,
        )))
    }

    pub fn window_store(&self) -> Arc<DynamoWindowStore> {
        Arc::new(DynamoWindowStore::new(self.dynamodb.clone(), &self.table))
    }

    /// Retries on the queue whose URL is in `variable` (the function's own).
    pub fn redelivery(&self, variable: &'static str) -> Result<Arc<SqsRedelivery>, WiringError> {
        Ok(Arc::new(SqsRedelivery::new(
            self.sqs.clone(),
            required(variable)?,
        )))
    }

    pub fn program_store(&self) -> Arc<DynamoProgramStore> {
        Arc::new(DynamoProgramStore::new(self.dynamodb.clone(), &self.table))
    }

    /// The programs: the configuration's, under those operators applied,
    /// reloaded every `program_refresh_ms`.
    pub async fn catalog(&self) -> Result<Arc<LiveCatalog>, WiringError> {
        let catalog = LiveCatalog::load(
            self.config.programs.clone(),
            self.program_store(),
            std::time::Duration::from_millis(self.config.program_refresh_ms),
        )
        .await
        .map_err(WiringError::Programs)?;
        Ok(Arc::new(catalog))
    }

    /// The configuration's member links, under those linked since.
    pub fn enrollments(&self) -> Arc<LayeredEnrollments> {
        Arc::new(LayeredEnrollments::new(
            self.config.member_links(),
            Arc::new(DynamoEnrollments::new(self.dynamodb.clone(), &self.table)),
        ))
    }

    /// The REST connectors of the configured partners, each behind its rate
    /// limit and circuit breaker (kept in the table). The sandbox partner
    /// runs only in the local stack; a deployed function has none.
    pub fn connectors(&self) -> Result<HashMap<PartnerId, Arc<dyn PartnerConnector>>, WiringError> {
        let state = Arc::new(DynamoPartnerState::new(self.dynamodb.clone(), &self.table));
        Ok(govern(
            &self.config,
            rest_connectors(&self.config, None)?,
            state.clone(),
            state,
            Arc::new(pointsflow_core::time::SystemClock),
        ))
    }
}

/// Puts each partner's connector behind the partner's rate limit and
/// circuit breaker (its configuration's `rate_limit_per_second`,
/// `circuit_failures`, `circuit_open_ms`), their state in `limiter` and
/// `circuits`, shared by every invocation.
pub fn govern(
    config: &Config,
    partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    limiter: Arc<dyn RateLimiter>,
    circuits: Arc<dyn CircuitStore>,
    clock: Arc<dyn Clock>,
) -> HashMap<PartnerId, Arc<dyn PartnerConnector>> {
    partners
        .into_iter()
        .map(|(id, connector)| {
            let limits = config
                .partners
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.limits())
                .unwrap_or_default();
            let governed: Arc<dyn PartnerConnector> = Arc::new(Governed::new(
                connector,
                id.clone(),
                limits,
                limiter.clone(),
                circuits.clone(),
                clock.clone(),
            ));
            (id, governed)
        })
        .collect()
}

/// Connectors for the configured partners; `sandbox` gives the base URL and
/// key to use for partners of kind `sandbox`, which are skipped without it.
pub fn rest_connectors(
    config: &Config,
    sandbox: Option<(&str, &str)>,
) -> Result<HashMap<PartnerId, Arc<dyn PartnerConnector>>, WiringError> {
    let mut partners: HashMap<PartnerId, Arc<dyn PartnerConnector>> = HashMap::new();
    for p in &config.partners {
        let (base_url, api_key) = match (p.kind, sandbox) {
            (PartnerKind::Sandbox, Some((url, key))) => (url.to_owned(), key.to_owned()),
            (PartnerKind::Sandbox, None) => continue,
            (PartnerKind::Rest, _) => (
                p.base_url.clone().unwrap_or_default(),
                p.api_key.clone().unwrap_or_default(),
            ),
        };
        let settings = RestConnectorConfig {
            base_url,
            api_key,
            connect_timeout: Duration::from_millis(p.timeout_ms.min(1_000)),
            request_timeout: Duration::from_millis(p.timeout_ms),
        };
        let failed = |e: pointsflow_partners::rest::BuildError| WiringError::Partner {
            partner: p.id.clone(),
            problem: e.to_string(),
        };
        let connector: Arc<dyn PartnerConnector> = match p.protocol {
            PartnerProtocol::Rest => Arc::new(RestConnector::new(settings).map_err(failed)?),
            PartnerProtocol::LoyaltyCommerce => {
                Arc::new(LoyaltyConnector::new(settings).map_err(failed)?)
            }
        };
        partners.insert(p.id.clone(), connector);
    }
    Ok(partners)
}

/// Provisioning a function's AWS resources on an emulator, for tests that run
/// the built binaries.
pub mod testing {
    use aws_sdk_ssm::types::ParameterType;
    use pointsflow_aws::tables::{self, QueuePair};

    use super::{
        AWS_ENDPOINT, CALLBACK_DLQ_URL, CALLBACK_QUEUE_URL, CONFIG_PARAMETER, DISPATCH_DLQ_URL,
        DISPATCH_FUNCTION_ARN, DISPATCH_QUEUE_URL, ELIGIBILITY_DLQ_URL, ELIGIBILITY_QUEUE_URL,
        SCHEDULE_DEAD_LETTER_ARN, SCHEDULE_PREFIX, SCHEDULER_ROLE_ARN, STACK, TABLE,
    };

    /// The table, queues and configuration parameter of one test stack.
    #[derive(Debug, Clone)]
    pub struct Provisioned {
        pub endpoint: String,
        pub table: String,
        pub parameter: String,
        pub eligibility: QueuePair,
        pub dispatch: QueuePair,
        pub callbacks: QueuePair,
    }

    impl Provisioned {
        /// Creates everything on the emulator at `endpoint`, the configuration
        /// (`config_toml`) in a SecureString parameter.
        pub async fn create(
            endpoint: &str,
            prefix: &str,
            config_toml: &str,
        ) -> Result<Self, String> {
            let sdk = pointsflow_aws::emulator::config_at(endpoint).await;
            let table = format!("{prefix}-ledger");
            tables::create_ledger_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await?;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let eligibility =
                tables::create_queue_pair(&sqs, &format!("{prefix}-eligibility"), 30, 5).await?;
            let dispatch =
                tables::create_queue_pair(&sqs, &format!("{prefix}-dispatch"), 30, 5).await?;
            let callbacks =
                tables::create_queue_pair(&sqs, &format!("{prefix}-callbacks"), 30, 5).await?;
            let parameter = format!("/{prefix}/config");
            aws_sdk_ssm::Client::new(&sdk)
                .put_parameter()
                .name(&parameter)
                .value(config_toml)
                .r#type(ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .map_err(|e| aws_sdk_ssm::error::DisplayErrorContext(e).to_string())?;
            Ok(Self {
                endpoint: endpoint.to_owned(),
                table,
                parameter,
                eligibility,
                dispatch,
                callbacks,
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

        /// Every variable a deployment sets, pointing here.
        pub fn env(&self) -> Vec<(String, String)> {
            [
                (TABLE, self.table.clone()),
                (CONFIG_PARAMETER, self.parameter.clone()),
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
                (AWS_ENDPOINT, self.endpoint.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        }
    }
}
