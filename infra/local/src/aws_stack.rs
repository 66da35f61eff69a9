//! The local stack on the AWS adapters: the same handlers, from the same
//! assembly and the same AWS platform as the deployed functions, with
//! requests and the ledger in DynamoDB and the pipeline on SQS, polled the
//! way Lambda's event-source mapping polls. Against the AWS API emulator it
//! needs no account; it creates the table and queues it uses, as the
//! template declares them, if they are missing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pointsflow_assembly::{Assembly, Handlers};
use pointsflow_aws::tables::{self, QueuePair};
use pointsflow_aws::{DynamoLedger, DynamoRequestStore, DynamoWindowStore};
use pointsflow_core::ports::QueueName;
use pointsflow_dispatch::Dispatch;
use pointsflow_eligibility::Eligibility;
use pointsflow_harness::mapping::{SqsMappingConfig, spawn_sqs};
use pointsflow_harness::meter::Meter;
use pointsflow_lambda::{AwsPlatform, QueueUrls};
use pointsflow_memory::MemorySchedules;
use pointsflow_operations::Operations;
use pointsflow_sandbox::SandboxPartner;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LocalConfig;
use crate::embedded::CALLBACK_MAX_RECEIVES;
use crate::stack::{Outbox, StackError, StackOptions, serve, spawn_schedules, split, stop};

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
    events: Outbox,
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

impl AwsStack {
    pub async fn start(
        config: LocalConfig,
        options: StackOptions,
        aws: AwsOptions,
    ) -> Result<AwsStack, StackError> {
        let sdk = match &aws.endpoint {
            Some(url) => pointsflow_harness::emulator::config_at(url).await,
            None => pointsflow_aws::sdk_config(None).await,
        };
        // The events function reads the stream for free (a Lambda
        // trigger): its reads are not metered.
        let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
        let unmetered = aws_sdk_dynamodb::Client::new(&sdk);
        let sdk = match &aws.meter {
            Some(meter) => pointsflow_harness::meter::metered(sdk, meter),
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
        let queue = |name: &str, receives: u32| {
            let sqs = sqs.clone();
            let name = format!("{}-{name}", aws.prefix);
            async move { tables::create_queue_pair(&sqs, &name, visibility, receives).await }
        };
        let eligibility_queue = queue("eligibility", receives)
            .await
            .map_err(StackError::Aws)?;
        let dispatch_queue = queue("dispatch", receives).await.map_err(StackError::Aws)?;
        let callback_queue = queue("callbacks", CALLBACK_MAX_RECEIVES)
            .await
            .map_err(StackError::Aws)?;

        let shutdown = CancellationToken::new();
        let sandbox = crate::sandbox::start(&config, options.sandbox_listen)
            .await
            .map_err(|source| StackError::Listen {
                addr: options.sandbox_listen,
                source,
            })?;
        let event_bus = format!("{}-events", aws.prefix);
        tables::create_event_bus(&aws_sdk_eventbridge::Client::new(&sdk), &event_bus)
            .await
            .map_err(StackError::Aws)?;
        let mut platform = AwsPlatform::new(&sdk, &table);
        platform.reach = pointsflow_assembly::Reach::Local;
        platform.event_bus = Some(event_bus);
        for (name, pair) in [
            (QueueName::Eligibility, &eligibility_queue),
            (QueueName::Dispatch, &dispatch_queue),
            (QueueName::Callbacks, &callback_queue),
        ] {
            platform.queues.insert(
                name,
                QueueUrls {
                    url: Some(pair.url.clone()),
                    dead_letter_url: Some(pair.dlq_url.clone()),
                },
            );
        }
        // Windows fire in process: EventBridge Scheduler cannot invoke these handlers.
        let schedules = Arc::new(MemorySchedules::new());
        platform.schedules = Some(schedules.clone());
        platform.sandbox = sandbox.as_ref().map(|s| s.access(&config));
        let store = Arc::new(DynamoRequestStore::new(dynamodb.clone(), &table));
        let ledger = Arc::new(DynamoLedger::new(dynamodb.clone(), &table));
        let windows = Arc::new(DynamoWindowStore::new(dynamodb.clone(), &table));
        let resolve_every = Duration::from_millis(config.resolve_every_ms);
        let assembly = Assembly::new(config.clone(), platform);
        assembly.fund().await?;
        let Handlers {
            intake,
            admin,
            eligibility,
            dispatch,
            operations,
            callbacks,
        } = assembly.handlers().await?;
        let events_shutdown = CancellationToken::new();
        let events = (
            events_shutdown.clone(),
            crate::stream::spawn_stream(
                unmetered,
                streams,
                &table,
                assembly.events().await?,
                events_shutdown,
            )
            .await
            .map_err(StackError::Aws)?,
        );

        let mapping = |name: &str, queue: &QueuePair| SqsMappingConfig {
            queue_url: queue.url.clone(),
            queue_arn: queue.arn.clone(),
            batch_size: i32::try_from(config.queues.batch_size).unwrap_or(10),
            concurrency: config.queues.concurrency,
            function_timeout: config.queues.function_timeout(),
            function_name: name.to_owned(),
        };
        let mut tasks = vec![
            spawn_sqs(
                sqs.clone(),
                mapping("eligibility", &eligibility_queue),
                eligibility.clone(),
                shutdown.clone(),
            ),
            spawn_sqs(
                sqs.clone(),
                mapping("callbacks", &callback_queue),
                callbacks,
                shutdown.clone(),
            ),
        ];
        let dispatch_config = mapping("dispatch", &dispatch_queue);
        let dispatch_mapping = spawn_sqs(
            sqs.clone(),
            dispatch_config.clone(),
            dispatch.clone(),
            shutdown.clone(),
        );
        tasks.extend(spawn_schedules(
            schedules,
            &assembly.programs().await?,
            &dispatch,
            resolve_every,
            &shutdown,
        ));
        let (intake_addr, server) =
            serve(options.listen, intake, admin, None, shutdown.clone()).await?;
        tasks.push(server);
        tracing::info!(%table, eligibility = %eligibility_queue.url, dispatch = %dispatch_queue.url, "running on the AWS adapters");
        let (sandbox, sandbox_shutdown) = split(sandbox);

        Ok(AwsStack {
            operations,
            intake_addr,
            sandbox,
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
            sandbox_shutdown,
            tasks,
            events,
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
            self.dispatch_mapping = Some(spawn_sqs(
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
        stop(
            self.shutdown,
            tasks,
            self.events,
            self.sandbox_shutdown,
            self.sandbox,
        )
        .await;
    }
}
