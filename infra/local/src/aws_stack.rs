//! The local stack on the AWS adapters: the same handlers, with requests and
//! the ledger in DynamoDB and the pipeline on SQS, polled the way Lambda's
//! event-source mapping polls. Against the AWS API emulator it needs no
//! account; it creates the table and queues it uses, as the template declares
//! them, if they are missing.

use std::net::SocketAddr;
use std::sync::Arc;

use pointsflow_aws::mapping::SqsMappingConfig;
use pointsflow_aws::meter::Meter;
use pointsflow_aws::tables::{self, QueuePair};
use pointsflow_aws::{
    DynamoAuditLog, DynamoEnrollments, DynamoLedger, DynamoPartnerState, DynamoProgramStore,
    DynamoReportStore, DynamoRequestStore, DynamoWindowStore, SqsDeadLetters, SqsPublisher,
    SqsRedelivery,
};
use pointsflow_core::operations::DeadLetters;
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_dispatch::Dispatch;
use pointsflow_eligibility::Eligibility;
use pointsflow_memory::{LayeredEnrollments, MemorySchedules};
use pointsflow_operations::{Operations, QueueName};
use pointsflow_partners::SandboxPartner;
use pointsflow_runtime::SqsHandler;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LocalConfig;
use crate::stack::{Adapters, Common, Handlers, StackError, StackOptions, fund, serve, stop};

/// Where the AWS resources are.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// An emulator's URL; `None` uses AWS itself, from the environment's credentials.
    pub endpoint: Option<String>,
    /// Prefix of the table and queue names: `{prefix}-ledger`, `{prefix}-eligibility`, ...
    pub prefix: String,
    /// Counts every AWS request the stack makes (the cost benchmark).
    pub meter: Option<Meter>,
}

/// A running local stack on the AWS adapters.
pub struct AwsStack {
    pub intake_addr: SocketAddr,
    pub sandbox: Option<SandboxPartner>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub eligibility_queue: QueuePair,
    pub dispatch_queue: QueuePair,
    pub store: Arc<DynamoRequestStore>,
    pub ledger: Arc<DynamoLedger>,
    pub windows: Arc<DynamoWindowStore>,
    pub eligibility: Eligibility,
    pub dispatch: Dispatch,
    pub operations: Operations,
    shutdown: CancellationToken,
    sandbox_shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    dispatch_mapping: Option<JoinHandle<()>>,
    dispatch_config: SqsMappingConfig,
}

impl std::fmt::Debug for AwsStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsStack")
            .field("intake_addr", &self.intake_addr)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn spawn_sqs_mapping<H: SqsHandler>(
    client: aws_sdk_sqs::Client,
    config: SqsMappingConfig,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(pointsflow_aws::mapping::run(
        client,
        config,
        move |event| {
            let handler = handler.clone();
            async move { handler.handle_batch(event).await }
        },
        shutdown,
    ))
}

impl AwsStack {
    pub async fn start(
        config: LocalConfig,
        options: StackOptions,
        aws: AwsOptions,
    ) -> Result<AwsStack, StackError> {
        let sdk = match &aws.endpoint {
            Some(url) => pointsflow_aws::emulator::config_at(url).await,
            None => pointsflow_aws::sdk_config(None).await,
        };
        let sdk = match &aws.meter {
            Some(meter) => pointsflow_aws::metered(sdk, meter),
            None => sdk,
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let table = format!("{}-ledger", aws.prefix);
        tables::create_ledger_table(&dynamodb, &table)
            .await
            .map_err(StackError::Aws)?;
        // SQS counts visibility in whole seconds.
        let visibility =
            u32::try_from(config.queues.visibility_timeout_ms.div_ceil(1_000)).unwrap_or(u32::MAX);
        let receives = config.queues.max_receive_count;
        let eligibility_queue = tables::create_queue_pair(
            &sqs,
            &format!("{}-eligibility", aws.prefix),
            visibility,
            receives,
        )
        .await
        .map_err(StackError::Aws)?;
        let dispatch_queue = tables::create_queue_pair(
            &sqs,
            &format!("{}-dispatch", aws.prefix),
            visibility,
            receives,
        )
        .await
        .map_err(StackError::Aws)?;

        let callback_queue = tables::create_queue_pair(
            &sqs,
            &format!("{}-callbacks", aws.prefix),
            visibility,
            crate::stack::CALLBACK_MAX_RECEIVES,
        )
        .await
        .map_err(StackError::Aws)?;

        let shutdown = CancellationToken::new();
        let program_store = Arc::new(DynamoProgramStore::new(dynamodb.clone(), &table));
        let enrollments = Arc::new(LayeredEnrollments::new(
            config.member_links(),
            Arc::new(DynamoEnrollments::new(dynamodb.clone(), &table)),
        ));
        let partner_state = Arc::new(DynamoPartnerState::new(dynamodb.clone(), &table));
        let common = Common::start(
            &config,
            &options,
            program_store,
            enrollments,
            (partner_state.clone(), partner_state),
        )
        .await?;
        let clock = Arc::new(SystemClock);
        let store = Arc::new(DynamoRequestStore::new(dynamodb.clone(), &table));
        let ledger = Arc::new(DynamoLedger::new(dynamodb.clone(), &table));
        let windows = Arc::new(DynamoWindowStore::new(dynamodb.clone(), &table));
        // Windows fire in process: EventBridge Scheduler cannot invoke these handlers.
        let schedules = Arc::new(MemorySchedules::new());
        fund(&config, ledger.as_ref(), clock.as_ref()).await?;
        let to_eligibility = Arc::new(SqsPublisher::new(sqs.clone(), &eligibility_queue.url));
        let to_dispatch = Arc::new(SqsPublisher::new(sqs.clone(), &dispatch_queue.url));
        let to_dispatch_again = to_dispatch.clone();

        let dead_letters = |queue: &QueuePair| -> Arc<dyn DeadLetters> {
            Arc::new(SqsDeadLetters::new(sqs.clone(), &queue.dlq_url, &queue.url))
        };
        let dead_letters = std::collections::HashMap::from([
            (QueueName::Eligibility, dead_letters(&eligibility_queue)),
            (QueueName::Dispatch, dead_letters(&dispatch_queue)),
            (QueueName::Callbacks, dead_letters(&callback_queue)),
        ]);
        let Handlers {
            intake,
            eligibility,
            dispatch,
            operations,
            callbacks,
        } = common.handlers(Adapters {
            store: store.clone(),
            ledger: ledger.clone(),
            to_eligibility,
            to_dispatch: to_dispatch.clone(),
            work: to_dispatch,
            windows: windows.clone(),
            schedules: schedules.clone(),
            redelivery: Arc::new(SqsRedelivery::new(sqs.clone(), &dispatch_queue.url)),
            unsettled_requests: store.clone(),
            requeue: to_dispatch_again.clone(),
            clock,
            ids: Arc::new(RandomIds),
            audit: Arc::new(DynamoAuditLog::new(dynamodb.clone(), &table)),
            dead_letters,
            reports: Arc::new(DynamoReportStore::new(dynamodb.clone(), &table)),
            callbacks: Arc::new(SqsPublisher::new(sqs.clone(), &callback_queue.url)),
            callback_redelivery: Arc::new(SqsRedelivery::new(sqs.clone(), &callback_queue.url)),
        });

        let mapping = |name: &str, queue: &QueuePair| SqsMappingConfig {
            queue_url: queue.url.clone(),
            queue_arn: queue.arn.clone(),
            batch_size: i32::try_from(config.queues.batch_size).unwrap_or(10),
            concurrency: config.queues.concurrency,
            function_timeout: config.queues.function_timeout(),
            function_name: name.to_owned(),
        };
        let mut tasks = vec![spawn_sqs_mapping(
            sqs.clone(),
            mapping("eligibility", &eligibility_queue),
            eligibility.clone(),
            shutdown.clone(),
        )];
        tasks.push(spawn_sqs_mapping(
            sqs.clone(),
            mapping("callbacks", &callback_queue),
            callbacks,
            shutdown.clone(),
        ));
        let dispatch_config = mapping("dispatch", &dispatch_queue);
        let dispatch_mapping = spawn_sqs_mapping(
            sqs.clone(),
            dispatch_config.clone(),
            dispatch.clone(),
            shutdown.clone(),
        );
        tasks.extend(common.spawn_schedules(schedules.clone(), &dispatch, &shutdown));
        let (intake_addr, server) = serve(
            options.listen,
            intake,
            operations.clone(),
            config.operators.clone(),
            shutdown.clone(),
        )
        .await?;
        tasks.push(server);
        tracing::info!(%table, eligibility = %eligibility_queue.url, dispatch = %dispatch_queue.url, "running on the AWS adapters");

        Ok(AwsStack {
            operations,
            intake_addr,
            sandbox: common.sandbox,
            dynamodb,
            sqs,
            table,
            eligibility_queue,
            dispatch_queue,
            store,
            ledger,
            windows,
            eligibility,
            dispatch,
            shutdown,
            sandbox_shutdown: common.sandbox_shutdown,
            tasks,
            dispatch_mapping: Some(dispatch_mapping),
            dispatch_config,
        })
    }

    /// Kills the dispatch function mid-flight, as a crash would (see
    /// [`crate::Stack::crash_dispatch`]).
    pub fn crash_dispatch(&mut self) {
        if let Some(task) = self.dispatch_mapping.take() {
            task.abort();
        }
    }

    /// Starts the dispatch function again after [`Self::crash_dispatch`].
    pub fn restart_dispatch(&mut self) {
        if self.dispatch_mapping.is_none() {
            self.dispatch_mapping = Some(spawn_sqs_mapping(
                self.sqs.clone(),
                self.dispatch_config.clone(),
                self.dispatch.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.intake_addr)
    }

    pub async fn shutdown(self) {
        let mut tasks = self.tasks;
        tasks.extend(self.dispatch_mapping);
        stop(self.shutdown, tasks, self.sandbox_shutdown, self.sandbox).await;
    }
}
