//! The deployed functions: one thin binary each (`src/bin`), every one the
//! same cold start: set up tracing (JSON when the function's log format is
//! JSON, levels from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, every line
//! masked), read its typed environment (a missing or invalid variable stops
//! the cold start, naming it), build the SDK clients (pointed at
//! `POINTSFLOW_AWS_ENDPOINT` when set, for an emulator), load the
//! configuration from Secrets Manager, and hand the AWS adapters
//! ([`AwsPlatform`]) to the assembly, which builds the function's handler.
//!
//! Environment: `POINTSFLOW_TABLE` (the DynamoDB table),
//! `POINTSFLOW_CONFIG_SECRET` (the name or ARN of the Secrets Manager secret
//! holding the TOML configuration, a secret since it holds source keys; up to
//! [`pointsflow_config::DEPLOYED_MAX_BYTES`]), the queues a
//! handler uses (`POINTSFLOW_ELIGIBILITY_QUEUE_URL`,
//! `POINTSFLOW_DISPATCH_QUEUE_URL`, `POINTSFLOW_CALLBACK_QUEUE_URL`, and for
//! operations, which redrives them, the `..._DLQ_URL` of each); for the
//! functions that arm window schedules `POINTSFLOW_SCHEDULE_PREFIX`,
//! `POINTSFLOW_DISPATCH_FUNCTION_ARN`, `POINTSFLOW_SCHEDULER_ROLE_ARN` and
//! `POINTSFLOW_SCHEDULE_DEAD_LETTER_ARN`; optional `POINTSFLOW_STACK` (the
//! metrics' `Stack` dimension) and `POINTSFLOW_AWS_ENDPOINT`. With an
//! emulator endpoint the function runs on one machine, so it may call a
//! partner or callback on loopback over `http` ([`Reach::Local`]); without
//! one (deployed), only HTTPS, and callbacks only to public addresses. A function is
//! given only the variables of the ports its handler uses; asking for
//! another fails its cold start, naming the variable.

use std::collections::HashMap;
use std::sync::Arc;

use pointsflow_assembly::{Assembly, AssemblyError, Platform, Reach, SandboxAccess};
use pointsflow_aws::{
    DynamoAuditLog, DynamoEnrollments, DynamoLedger, DynamoLinkHistory, DynamoPartnerState,
    DynamoProgramStore, DynamoProposals, DynamoReportStore, DynamoRequestStore, DynamoWindowStore,
    EventBridgeBus, EventBridgeSchedules, ScheduleTarget, SqsDeadLetters, SqsQueue,
};
use pointsflow_config::Config;
use pointsflow_core::ports::{
    AuditLog, CircuitStore, Clock, DeadLetters, Enrollments, EventBus, IdSource, Ledger,
    LinkHistory, ProgramStore, ProposalStore, Queue, QueueName, RateLimiter, ReportStore,
    RequestStore, WindowSchedules, WindowStore,
};
use pointsflow_core::time::{RandomIds, SystemClock};

pub const TABLE: &str = "POINTSFLOW_TABLE";
pub const CONFIG_SECRET: &str = "POINTSFLOW_CONFIG_SECRET";
pub const ELIGIBILITY_QUEUE_URL: &str = "POINTSFLOW_ELIGIBILITY_QUEUE_URL";
pub const DISPATCH_QUEUE_URL: &str = "POINTSFLOW_DISPATCH_QUEUE_URL";
pub const CALLBACK_QUEUE_URL: &str = "POINTSFLOW_CALLBACK_QUEUE_URL";
pub const ELIGIBILITY_DLQ_URL: &str = "POINTSFLOW_ELIGIBILITY_DLQ_URL";
pub const DISPATCH_DLQ_URL: &str = "POINTSFLOW_DISPATCH_DLQ_URL";
pub const CALLBACK_DLQ_URL: &str = "POINTSFLOW_CALLBACK_DLQ_URL";
pub const AWS_ENDPOINT: &str = "POINTSFLOW_AWS_ENDPOINT";
pub const SCHEDULE_PREFIX: &str = "POINTSFLOW_SCHEDULE_PREFIX";
/// The stack's name, for the metrics the functions report (optional).
pub const STACK: &str = "POINTSFLOW_STACK";
pub const DISPATCH_FUNCTION_ARN: &str = "POINTSFLOW_DISPATCH_FUNCTION_ARN";
pub const SCHEDULER_ROLE_ARN: &str = "POINTSFLOW_SCHEDULER_ROLE_ARN";
pub const SCHEDULE_DEAD_LETTER_ARN: &str = "POINTSFLOW_SCHEDULE_DEAD_LETTER_ARN";
/// The event bus the events function puts events on (its name or ARN).
pub const EVENT_BUS: &str = "POINTSFLOW_EVENT_BUS";

/// The variables naming a queue's URL and its dead-letter queue's.
fn queue_variables(queue: QueueName) -> (&'static str, &'static str) {
    match queue {
        QueueName::Eligibility => (ELIGIBILITY_QUEUE_URL, ELIGIBILITY_DLQ_URL),
        QueueName::Dispatch => (DISPATCH_QUEUE_URL, DISPATCH_DLQ_URL),
        QueueName::Callbacks => (CALLBACK_QUEUE_URL, CALLBACK_DLQ_URL),
    }
}

/// Why a function cannot start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("secret {secret} (from {CONFIG_SECRET}): {problem}")]
    Secret { secret: String, problem: String },
    #[error("configuration in secret {secret}: {source}")]
    Config {
        secret: String,
        source: pointsflow_config::ConfigError,
    },
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
}

/// A required environment variable, non-empty.
pub fn required(name: &'static str) -> Result<String, ColdStartError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(ColdStartError::Invalid {
            name,
            problem: "is empty".into(),
        }),
        Err(std::env::VarError::NotPresent) => Err(ColdStartError::Missing(name)),
        Err(std::env::VarError::NotUnicode(_)) => Err(ColdStartError::Invalid {
            name,
            problem: "is not UTF-8".into(),
        }),
    }
}

fn optional(name: &'static str) -> Result<Option<String>, ColdStartError> {
    match required(name) {
        Ok(v) => Ok(Some(v)),
        Err(ColdStartError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// pointsflow's own lines at `level`; every other crate's (the Lambda
/// runtime, which logs whole events and their headers at `TRACE`; the HTTP
/// and AWS clients, which log requests) at `INFO` at most, whatever the
/// level: their detail is never what an operator needs, and it may carry
/// credentials no masking knows.
pub fn log_filter(
    level: tracing_subscriber::filter::LevelFilter,
) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(level.min(LevelFilter::INFO))
        .with_target("pointsflow", level)
}

/// Sets up tracing the way Lambda expects it (JSON when the function's log
/// format is JSON, levels from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), every
/// line masked: no member number, email address or secret of `config`
/// reaches the logs.
pub fn init_tracing(config: &Config) {
    use pointsflow_runtime::masking::{Masker, MaskingWriter};
    use tracing_subscriber::filter::LevelFilter;
    // A level (`AWS_LAMBDA_LOG_LEVEL` as Lambda sets it, or `RUST_LOG`);
    // anything else is `info`.
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let masker = Masker::new(config.secrets()).with_members(config.member_numbers());
    let writer = MaskingWriter::new(std::io::stdout, masker);
    if let Ok(stack) = std::env::var(STACK) {
        pointsflow_runtime::metrics::to_stdout(stack);
    }
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .without_time();
    let layer = if json {
        layer
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        layer.boxed()
    };
    // A second initialisation (tests) is a no-op.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(log_filter(level))
        .try_init();
}

/// A function's cold start: tracing, its environment, the configuration
/// from Secrets Manager, and the assembly over the AWS adapters. A failure is printed
/// as a sentence (the function's log shows it) before it stops the start.
pub async fn cold_start() -> Result<Assembly<AwsPlatform>, ColdStartError> {
    start()
        .await
        .inspect_err(|e| eprintln!("pointsflow: cold start failed: {e}"))
}

async fn start() -> Result<Assembly<AwsPlatform>, ColdStartError> {
    let table = required(TABLE)?;
    let secret = required(CONFIG_SECRET)?;
    let endpoint = optional(AWS_ENDPOINT)?;
    let sdk = lambda_sdk_config(endpoint.as_deref())?;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let config = load_config(&secrets, &secret).await?;
    init_tracing(&config);
    let mut platform = AwsPlatform::new(&sdk, table);
    if endpoint.is_some() {
        platform.reach = Reach::Local;
    }
    for queue in QueueName::ALL {
        let (url, dlq) = queue_variables(queue);
        platform.queues.insert(
            queue,
            QueueUrls {
                url: optional(url)?,
                dead_letter_url: optional(dlq)?,
            },
        );
    }
    platform.schedule_target = match optional(SCHEDULE_PREFIX)? {
        Some(prefix) => Some(ScheduleTarget {
            prefix,
            group: "default".into(),
            function_arn: required(DISPATCH_FUNCTION_ARN)?,
            role_arn: required(SCHEDULER_ROLE_ARN)?,
            dead_letter_arn: Some(required(SCHEDULE_DEAD_LETTER_ARN)?),
        }),
        None => None,
    };
    platform.event_bus = optional(EVENT_BUS)?;
    platform.metric_stack = optional(STACK)?;
    Ok(Assembly::new(config, platform))
}

/// The SDK configuration inside Lambda: the region and the function role's
/// credentials from the environment Lambda sets, and nothing else (no
/// profile files, SSO, instance metadata or web identity: code a function
/// would carry and never run).
fn lambda_sdk_config(endpoint: Option<&str>) -> Result<aws_config::SdkConfig, ColdStartError> {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
    use aws_smithy_http_client::{Builder, tls};
    let region = required("AWS_REGION")?;
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    let mut sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(http)
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_millis(3_100))
                .build(),
        );
    if let Some(url) = endpoint {
        sdk = sdk.endpoint_url(url);
    }
    Ok(sdk.build())
}

/// The configuration: the secret's current version (`AWSCURRENT`), as text.
pub async fn load_config(
    secrets: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<Config, ColdStartError> {
    let failed = |problem: String| ColdStartError::Secret {
        secret: secret.to_owned(),
        problem,
    };
    let value = secrets
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| failed(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let text = value
        .secret_string()
        .ok_or_else(|| failed("has no text value (SecretString)".into()))?;
    Config::parse(text).map_err(|source| ColdStartError::Config {
        secret: secret.to_owned(),
        source,
    })
}

/// A queue's URL and its dead-letter queue's, as far as the function knows them.
#[derive(Debug, Clone, Default)]
pub struct QueueUrls {
    pub url: Option<String>,
    pub dead_letter_url: Option<String>,
}

/// The AWS adapters: the DynamoDB table, the SQS queues, EventBridge
/// Scheduler. The deployed functions build it from their environment
/// ([`cold_start`]); the local stack on AWS builds it over the table and
/// queues it creates.
pub struct AwsPlatform {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    scheduler: aws_sdk_scheduler::Client,
    /// For the clients only one function uses (EventBridge), made when asked.
    sdk: aws_config::SdkConfig,
    table: String,
    pub queues: HashMap<QueueName, QueueUrls>,
    /// The event bus (the events function's).
    pub event_bus: Option<String>,
    /// Where window schedules invoke dispatch (EventBridge Scheduler).
    pub schedule_target: Option<ScheduleTarget>,
    /// Window schedules kept elsewhere (the local stack fires them in
    /// process: EventBridge Scheduler cannot invoke it).
    pub schedules: Option<Arc<dyn WindowSchedules>>,
    pub sandbox: Option<SandboxAccess>,
    pub metric_stack: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    /// Deployed unless the local stack runs over the AWS adapters.
    pub reach: Reach,
}

impl AwsPlatform {
    /// The table `table`, and clients from `sdk`; no queue, no schedules yet.
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            scheduler: aws_sdk_scheduler::Client::new(sdk),
            sdk: sdk.clone(),
            table: table.into(),
            queues: HashMap::new(),
            event_bus: None,
            schedule_target: None,
            schedules: None,
            sandbox: None,
            metric_stack: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            reach: Reach::Deployed,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn queue_url(&self, queue: QueueName) -> Result<&str, AssemblyError> {
        self.queues
            .get(&queue)
            .and_then(|q| q.url.as_deref())
            .ok_or_else(|| {
                AssemblyError::NotProvided(format!(
                    "the {queue} queue's URL is not set ({})",
                    queue_variables(queue).0
                ))
            })
    }

    fn state(&self) -> Arc<DynamoPartnerState> {
        Arc::new(DynamoPartnerState::new(self.dynamodb.clone(), &self.table))
    }
}

impl Platform for AwsPlatform {
    fn requests(&self) -> Arc<dyn RequestStore> {
        Arc::new(DynamoRequestStore::new(self.dynamodb.clone(), &self.table))
    }

    fn ledger(&self) -> Arc<dyn Ledger> {
        Arc::new(DynamoLedger::new(self.dynamodb.clone(), &self.table))
    }

    fn windows(&self) -> Arc<dyn WindowStore> {
        Arc::new(DynamoWindowStore::new(self.dynamodb.clone(), &self.table))
    }

    fn program_store(&self) -> Arc<dyn ProgramStore> {
        Arc::new(DynamoProgramStore::new(self.dynamodb.clone(), &self.table))
    }

    fn links(&self) -> Arc<dyn Enrollments> {
        Arc::new(DynamoEnrollments::new(self.dynamodb.clone(), &self.table))
    }

    fn link_history(&self) -> Arc<dyn LinkHistory> {
        Arc::new(DynamoLinkHistory::new(self.dynamodb.clone(), &self.table))
    }

    fn proposals(&self) -> Arc<dyn ProposalStore> {
        Arc::new(DynamoProposals::new(self.dynamodb.clone(), &self.table))
    }

    fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        self.state()
    }

    fn circuits(&self) -> Arc<dyn CircuitStore> {
        self.state()
    }

    fn audit(&self) -> Arc<dyn AuditLog> {
        Arc::new(DynamoAuditLog::new(self.dynamodb.clone(), &self.table))
    }

    fn reports(&self) -> Arc<dyn ReportStore> {
        Arc::new(DynamoReportStore::new(self.dynamodb.clone(), &self.table))
    }

    fn queue(&self, queue: QueueName) -> Result<Arc<dyn Queue>, AssemblyError> {
        let dead_letter = self
            .queues
            .get(&queue)
            .and_then(|q| q.dead_letter_url.clone());
        Ok(Arc::new(
            SqsQueue::new(self.sqs.clone(), self.queue_url(queue)?).with_dead_letter(dead_letter),
        ))
    }

    fn dead_letters(&self, queue: QueueName) -> Result<Arc<dyn DeadLetters>, AssemblyError> {
        let dead_letter = self
            .queues
            .get(&queue)
            .and_then(|q| q.dead_letter_url.as_deref())
            .ok_or_else(|| {
                AssemblyError::NotProvided(format!(
                    "the {queue} dead-letter queue's URL is not set ({})",
                    queue_variables(queue).1
                ))
            })?;
        Ok(Arc::new(SqsDeadLetters::new(
            self.sqs.clone(),
            dead_letter,
            self.queue_url(queue)?,
        )))
    }

    fn schedules(&self) -> Result<Arc<dyn WindowSchedules>, AssemblyError> {
        if let Some(schedules) = &self.schedules {
            return Ok(schedules.clone());
        }
        let target = self.schedule_target.clone().ok_or_else(|| {
            AssemblyError::NotProvided(format!(
                "window schedules are not configured ({SCHEDULE_PREFIX}, {DISPATCH_FUNCTION_ARN}, {SCHEDULER_ROLE_ARN} and {SCHEDULE_DEAD_LETTER_ARN})"
            ))
        })?;
        Ok(Arc::new(EventBridgeSchedules::new(
            self.scheduler.clone(),
            target,
        )))
    }

    fn event_bus(&self) -> Result<Arc<dyn EventBus>, AssemblyError> {
        let bus = self.event_bus.as_deref().ok_or_else(|| {
            AssemblyError::NotProvided(format!("the event bus is not set ({EVENT_BUS})"))
        })?;
        Ok(Arc::new(EventBridgeBus::new(
            aws_sdk_eventbridge::Client::new(&self.sdk),
            bus,
        )))
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn ids(&self) -> Arc<dyn IdSource> {
        self.ids.clone()
    }

    fn sandbox(&self) -> Option<SandboxAccess> {
        self.sandbox.clone()
    }

    fn metric_stack(&self) -> Option<String> {
        self.metric_stack.clone()
    }

    fn reach(&self) -> Reach {
        self.reach
    }
}
