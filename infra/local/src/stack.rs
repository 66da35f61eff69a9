//! The local stack: the intake API on a TCP port, eligibility and dispatch
//! on embedded queues behind Lambda-like event-source mappings, and the
//! sandbox partner, all in one process on the embedded adapters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use pointsflow_callbacks::{Callbacks, CallbacksPorts};
use pointsflow_core::callback::PublishCallback;
use pointsflow_core::governance::{CircuitStore, RateLimiter};
use pointsflow_core::ledger::{Entry, LedgerError};
use pointsflow_core::operations::{AuditLog, DeadLetters, RequestSearch};
use pointsflow_core::ports::{
    Clock, Enrollments, IdSource, LedgerRead, LedgerWrite, PartnerConnector, ProgramCatalog,
    ProgramStore, Publish, Redelivery, RequestCreate, RequestGet, RequestUpdate, WaitingRequests,
};
use pointsflow_core::reconcile::{ReportStore, RequestLines};
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_core::unsettled::UnsettledIndex;
use pointsflow_core::values::PartnerId;
use pointsflow_core::window::{
    PublishWork, ScheduledRequests, WindowId, WindowSchedules, WindowStore,
};
use pointsflow_dispatch::window::WindowClosed;
use pointsflow_dispatch::{Dispatch, DispatchPorts};
use pointsflow_eligibility::{Eligibility, EligibilityPorts};
use pointsflow_intake::{DEFAULT_MAX_BODY_BYTES, Intake, IntakeConfig, IntakePorts};
use pointsflow_memory::{
    EventSourceMapping, MappingConfig, MemoryAuditLog, MemoryDeadLetters, MemoryEnrollments,
    MemoryLedger, MemoryPartnerState, MemoryProgramStore, MemoryQueue, MemoryReportStore,
    MemoryRequestStore, MemorySchedules, MemoryWindowStore, QueueConfig,
};
use pointsflow_operations::{Operations, OperationsPorts, QueueName};
use pointsflow_partners::{SandboxBehaviour, SandboxConfig, SandboxMember, SandboxPartner};
use pointsflow_runtime::callbacks::Notifying;
use pointsflow_runtime::catalog::LiveCatalog;
use pointsflow_runtime::{Backoff, SqsHandler};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{LocalConfig, PartnerKind};

/// Lambda's request payload limit; intake itself refuses far smaller bodies.
const MAX_HTTP_BODY: usize = 6 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("AWS: {0}")]
    Aws(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("partner {partner}: {problem}")]
    Partner { partner: PartnerId, problem: String },
    #[error("funding the budget of {program}: {source}")]
    Funding {
        program: String,
        source: LedgerError,
    },
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub listen: SocketAddr,
    pub sandbox_listen: SocketAddr,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            sandbox_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The queues of a deployed stack, embedded.
#[derive(Debug, Clone)]
pub struct Queues {
    pub eligibility: Arc<MemoryQueue>,
    pub eligibility_dlq: Arc<MemoryQueue>,
    pub dispatch: Arc<MemoryQueue>,
    pub dispatch_dlq: Arc<MemoryQueue>,
    pub callbacks: Arc<MemoryQueue>,
    pub callbacks_dlq: Arc<MemoryQueue>,
}

/// A running local stack.
pub struct Stack {
    pub intake_addr: SocketAddr,
    pub sandbox: Option<SandboxPartner>,
    pub store: Arc<MemoryRequestStore>,
    pub ledger: Arc<MemoryLedger>,
    pub windows: Arc<MemoryWindowStore>,
    pub schedules: Arc<MemorySchedules>,
    /// The partners' rate limits and circuits.
    pub partner_state: Arc<MemoryPartnerState>,
    pub queues: Queues,
    pub dispatch: Dispatch,
    pub eligibility: Eligibility,
    pub operations: Operations,
    /// The operators' audit log and reconciliation reports.
    pub audit: Arc<MemoryAuditLog>,
    pub reports: Arc<MemoryReportStore>,
    shutdown: CancellationToken,
    sandbox_shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    dispatch_mapping: Option<JoinHandle<()>>,
    mapping_config: MappingConfig,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("intake_addr", &self.intake_addr)
            .finish_non_exhaustive()
    }
}

/// The callbacks queue's receive limit: a status is retried until it is
/// 72 hours old (then given up on), not a number of times.
pub const CALLBACK_MAX_RECEIVES: u32 = 1_000;

fn queue_pair(name: &str, config: &LocalConfig) -> (Arc<MemoryQueue>, Arc<MemoryQueue>) {
    queue_pair_receiving(name, config, config.queues.max_receive_count)
}

fn queue_pair_receiving(
    name: &str,
    config: &LocalConfig,
    max_receive_count: u32,
) -> (Arc<MemoryQueue>, Arc<MemoryQueue>) {
    let dlq = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: format!("{name}-dlq"),
            visibility_timeout: config.queues.visibility_timeout(),
            max_receive_count: 0,
        },
        None,
    ));
    let queue = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: name.to_owned(),
            visibility_timeout: config.queues.visibility_timeout(),
            max_receive_count,
        },
        Some(dlq.clone()),
    ));
    (queue, dlq)
}

async fn serve_intake(
    State(intake): State<Intake>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_HTTP_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return lambda_to_axum(
                pointsflow_intake::Problem::payload_too_large(MAX_HTTP_BODY).into_response(),
            );
        }
    };
    // API Gateway hands Lambda text bodies as text and anything else as binary.
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    };
    let response = intake.handle(http::Request::from_parts(parts, body)).await;
    lambda_to_axum(response)
}

/// Where the local stack serves the operations function.
pub const LOCAL_OPERATIONS_PATH: &str = "/local/operations";

#[derive(Clone)]
struct LocalOperations {
    operations: Operations,
    operators: Arc<Vec<pointsflow_intake::auth::Operator>>,
}

/// `POST /local/operations`: the invocation's JSON, run as the operator
/// whose key is the bearer token.
async fn serve_operations(
    State(local): State<LocalOperations>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let refuse = |status: http::StatusCode, code: &str, message: &str| {
        (
            status,
            axum::Json(serde_json::json!({
                "ok": false,
                "error": {"code": code, "message": message, "retryable": false}
            })),
        )
            .into_response()
    };
    let Ok(operator) = pointsflow_intake::auth::operator(&local.operators, &headers) else {
        return refuse(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an operator's key is needed (Authorization: Bearer ...)",
        );
    };
    let mut event: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                "invalid_command",
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    if let Some(fields) = event.as_object_mut() {
        fields.insert("operator".into(), operator.id.as_str().into());
    }
    axum::Json(local.operations.invoke(event).await).into_response()
}

fn lambda_to_axum(response: http::Response<lambda_http::Body>) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    let body = match body {
        lambda_http::Body::Empty => axum::body::Body::empty(),
        lambda_http::Body::Text(t) => axum::body::Body::from(t),
        lambda_http::Body::Binary(b) => axum::body::Body::from(b),
        _ => axum::body::Body::empty(),
    };
    http::Response::from_parts(parts, body).into_response()
}

/// Runs a queue's event-source mapping over `handler`.
pub(crate) fn spawn_mapping<H: SqsHandler>(
    mapping: EventSourceMapping,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        mapping
            .run(
                move |event| {
                    let handler = handler.clone();
                    async move { handler.handle_batch(event).await }
                },
                shutdown,
            )
            .await;
    })
}

/// The embedded scheduler: fires each armed window at dispatch, as
/// EventBridge Scheduler invokes the dispatch function. The next window of
/// every scheduled program is armed at start (a stack stopped over a
/// window's closing time sends that window's requests in the next one).
fn spawn_scheduler(
    schedules: Arc<MemorySchedules>,
    catalog: &LiveCatalog,
    dispatch: Dispatch,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let now = chrono::Utc::now();
    let next: Vec<WindowId> = catalog
        .programs()
        .iter()
        .filter_map(|p| {
            let window = p.window_after(now).ok().flatten()?;
            Some(WindowId::new(&p.id, window.closes_at))
        })
        .collect();
    tokio::spawn(async move {
        for window in &next {
            let _ = schedules.arm(window).await;
        }
        schedules
            .run(
                |window| {
                    let dispatch = dispatch.clone();
                    async move {
                        let event = WindowClosed {
                            program: window.program().clone(),
                            scheduled_time: window.closes_at(),
                        };
                        match dispatch.window_closed(&event).await {
                            Ok(run) => tracing::info!(%window, state = ?run.state, "window fired"),
                            Err(e) => {
                                tracing::error!(%window, error = %e, "window could not start")
                            }
                        }
                    }
                },
                shutdown,
            )
            .await;
    })
}

impl Common {
    /// What EventBridge Scheduler invokes when deployed: the windows (fired
    /// from `schedules`) and the resolver of unsettled credits.
    pub(crate) fn spawn_schedules(
        &self,
        schedules: Arc<MemorySchedules>,
        dispatch: &Dispatch,
        shutdown: &CancellationToken,
    ) -> [JoinHandle<()>; 2] {
        [
            spawn_scheduler(schedules, &self.catalog, dispatch.clone(), shutdown.clone()),
            spawn_resolver(dispatch.clone(), self.resolve_every, shutdown.clone()),
        ]
    }
}

/// Runs dispatch's resolver of unsettled credits every `every`, as the
/// deployed stack's `ResolveUnsettledSchedule` does.
fn spawn_resolver(
    dispatch: Dispatch,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = dispatch.resolve_unsettled().await {
                tracing::error!(error = %e, "the resolver of unsettled credits failed");
            }
        }
    })
}

/// What every stack builds the same way, whatever its adapters: the
/// sandbox partner, the partner connectors, programs, enrollments and the
/// intake's source credentials. The simulator builds one over its own
/// partner with [`Common::assemble`].
pub struct Common {
    pub sandbox: Option<SandboxPartner>,
    pub partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub catalog: Arc<LiveCatalog>,
    pub program_store: Arc<dyn ProgramStore>,
    pub enrollments: Arc<dyn Enrollments>,
    pub sweep_every: Duration,
    pub backoff: Backoff,
    pub resolve_after: Duration,
    pub resolve_every: Duration,
    pub intake: IntakeConfig,
    pub sandbox_shutdown: CancellationToken,
}

impl Common {
    pub(crate) async fn start(
        config: &LocalConfig,
        options: &StackOptions,
        program_store: Arc<dyn ProgramStore>,
        enrollments: Arc<dyn Enrollments>,
        limits: (Arc<dyn RateLimiter>, Arc<dyn CircuitStore>),
    ) -> Result<Self, StackError> {
        let sandbox_shutdown = CancellationToken::new();
        let links = config.member_links();
        let sandbox = if config.uses_sandbox() {
            let partner_of = |program: &pointsflow_core::values::ProgramId| {
                config
                    .programs
                    .iter()
                    .find(|p| &p.id == program)
                    .and_then(|p| {
                        config
                            .partners
                            .iter()
                            .find(|x| x.id == p.destination.partner)
                    })
                    .is_some_and(|x| x.kind == PartnerKind::Sandbox)
            };
            let members = links
                .iter()
                .filter(|l| partner_of(&l.program))
                .map(|l| SandboxMember {
                    member_number: l.member.to_string(),
                    first_name: l.first_name.clone(),
                    last_name: l.last_name.clone(),
                })
                .chain(config.sandbox.members.iter().map(|m| SandboxMember {
                    member_number: m.member_number.clone(),
                    first_name: m.first_name.clone(),
                    last_name: m.last_name.clone(),
                }))
                .collect();
            let stop = sandbox_shutdown.clone();
            let sandbox = SandboxPartner::start(
                SandboxConfig {
                    api_key: config.sandbox.api_key.clone(),
                    members,
                    slow_response: Duration::from_millis(config.sandbox.slow_response_ms),
                    behaviour: SandboxBehaviour {
                        latency: Duration::from_millis(config.sandbox.latency_ms),
                        failure_rate: config.sandbox.failure_rate,
                        rate_limit_per_second: config.sandbox.rate_limit_per_second,
                    },
                },
                options.sandbox_listen,
                Box::pin(async move { stop.cancelled().await }),
            )
            .await
            .map_err(|source| StackError::Listen {
                addr: options.sandbox_listen,
                source,
            })?;
            Some(sandbox)
        } else {
            None
        };

        let sandbox_access = sandbox
            .as_ref()
            .map(|s| (s.base_url(), config.sandbox.api_key.clone()));
        let partners = pointsflow_lambda::rest_connectors(
            config,
            sandbox_access
                .as_ref()
                .map(|(url, key)| (url.as_str(), key.as_str())),
        )
        .map_err(|e| match e {
            pointsflow_lambda::WiringError::Partner { partner, problem } => {
                StackError::Partner { partner, problem }
            }
            other => StackError::Aws(other.to_string()),
        })?;
        let mut common = Self::assemble(
            config,
            partners,
            program_store,
            enrollments,
            limits,
            Arc::new(SystemClock),
        )
        .await?;
        common.sandbox = sandbox;
        common.sandbox_shutdown = sandbox_shutdown;
        Ok(common)
    }

    /// Everything but the sandbox: `partners` (governed here by the
    /// configured limits, on `clock`), the live catalog, and the handlers'
    /// settings from `config`.
    pub async fn assemble(
        config: &LocalConfig,
        partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
        program_store: Arc<dyn ProgramStore>,
        enrollments: Arc<dyn Enrollments>,
        limits: (Arc<dyn RateLimiter>, Arc<dyn CircuitStore>),
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StackError> {
        let partners = pointsflow_lambda::govern(config, partners, limits.0, limits.1, clock);

        let catalog = LiveCatalog::load(
            config.programs.clone(),
            program_store.clone(),
            Duration::from_millis(config.program_refresh_ms),
        )
        .await
        .map_err(|e| StackError::Aws(format!("cannot read the applied programs: {e}")))?;
        Ok(Self {
            sandbox: None,
            partners,
            catalog: Arc::new(catalog),
            program_store,
            enrollments,
            sweep_every: Duration::from_millis(config.waiting_sweep_ms),
            backoff: Backoff {
                base: config.queues.retry_base(),
                cap: config.queues.retry_cap(),
            },
            resolve_after: Duration::from_millis(config.resolve_after_ms),
            resolve_every: Duration::from_millis(config.resolve_every_ms),
            intake: IntakeConfig {
                sources: config.sources.clone(),
                operators: config.operators.clone(),
                programs: config.programs.clone(),
                known: config.known(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
            sandbox_shutdown: CancellationToken::new(),
        })
    }
}

/// The four handlers, wired to one set of adapters.
pub struct Handlers {
    pub intake: Intake,
    pub eligibility: Eligibility,
    pub dispatch: Dispatch,
    pub operations: Operations,
    pub callbacks: Callbacks,
}

/// The adapters of one stack, embedded or AWS.
pub struct Adapters<S, L> {
    pub store: Arc<S>,
    pub ledger: Arc<L>,
    pub to_eligibility: Arc<dyn Publish>,
    pub to_dispatch: Arc<dyn Publish>,
    /// The dispatch queue again, for window work.
    pub work: Arc<dyn PublishWork>,
    pub windows: Arc<dyn WindowStore>,
    pub schedules: Arc<dyn WindowSchedules>,
    /// The dispatch queue's retries.
    pub redelivery: Arc<dyn Redelivery>,
    /// The unsettled requests, and the dispatch queue again.
    pub unsettled_requests: Arc<dyn UnsettledIndex>,
    pub requeue: Arc<dyn Publish>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    /// The operators' audit log, and the dead-letter queues they redrive.
    pub audit: Arc<dyn AuditLog>,
    pub dead_letters: HashMap<QueueName, Arc<dyn DeadLetters>>,
    /// Where reconciliation reports are kept.
    pub reports: Arc<dyn ReportStore>,
    /// The callbacks queue: status callbacks are queued there, and
    /// retried on it.
    pub callbacks: Arc<dyn PublishCallback>,
    pub callback_redelivery: Arc<dyn Redelivery>,
}

impl Common {
    /// Builds the handlers over one stack's adapters.
    pub fn handlers<S, L>(&self, adapters: Adapters<S, L>) -> Handlers
    where
        S: RequestCreate
            + RequestGet
            + RequestUpdate
            + WaitingRequests
            + ScheduledRequests
            + RequestSearch
            + RequestLines
            + 'static,
        L: LedgerRead + LedgerWrite + 'static,
    {
        let Adapters {
            store,
            ledger,
            to_eligibility,
            to_dispatch,
            work,
            windows,
            schedules,
            redelivery,
            unsettled_requests,
            requeue,
            clock,
            ids,
            audit,
            dead_letters,
            reports,
            callbacks,
            callback_redelivery,
        } = adapters;
        // Every handler's update queues the status callback of a request
        // reaching a final status.
        let update: Arc<dyn RequestUpdate> = Arc::new(Notifying::new(
            store.clone(),
            callbacks.clone(),
            self.intake
                .sources
                .iter()
                .filter(|s| s.callback.is_some())
                .map(|s| s.id.clone()),
        ));
        let callback_handler = Callbacks::new(
            CallbacksPorts {
                get: store.clone(),
                redelivery: callback_redelivery,
                clock: clock.clone(),
            },
            self.intake
                .sources
                .iter()
                .filter_map(|s| s.callback.clone().map(|c| (s.id.clone(), c)))
                .collect(),
        )
        .with_retries(self.backoff, pointsflow_callbacks::GIVE_UP_AFTER);
        let intake = Intake::new(
            self.intake.clone(),
            IntakePorts {
                create: store.clone(),
                get: store.clone(),
                update: update.clone(),
                ledger: ledger.clone(),
                eligibility_queue: to_eligibility.clone(),
                programs: self.catalog.clone(),
                program_store: self.program_store.clone(),
                enrollments: self.enrollments.clone(),
                waiting: store.clone(),
                windows: windows.clone(),
                schedules: schedules.clone(),
                clock: clock.clone(),
            },
        );
        let eligibility = Eligibility::new(EligibilityPorts {
            get: store.clone(),
            waiting: store.clone(),
            partners: self.partners.clone(),
            update: update.clone(),
            ledger: ledger.clone(),
            ledger_read: ledger.clone(),
            programs: self.catalog.clone(),
            enrollments: self.enrollments.clone(),
            dispatch_queue: to_dispatch.clone(),
            schedules: schedules.clone(),
            clock: clock.clone(),
        })
        .with_sweep_every(self.sweep_every);
        let operations = Operations::new(OperationsPorts {
            get: store.clone(),
            update: update.clone(),
            search: store.clone(),
            ledger_read: ledger.clone(),
            ledger_write: ledger.clone(),
            programs: self.catalog.clone(),
            partners: self.partners.clone(),
            clock: clock.clone(),
            eligibility: to_eligibility,
            dispatch: to_dispatch,
            audit,
            dead_letters,
            lines: store.clone(),
            reports,
            callbacks: Some(callbacks),
        });
        let dispatch = Dispatch::new(DispatchPorts {
            get: store.clone(),
            update: update.clone(),
            ledger_read: ledger.clone(),
            ledger_write: ledger,
            programs: self.catalog.clone(),
            partners: self.partners.clone(),
            ids,
            clock,
            scheduled: store,
            windows,
            work,
            redelivery,
            unsettled_requests,
            requeue,
        })
        .with_backoff(self.backoff)
        .with_resolution(pointsflow_dispatch::resolve::Resolution {
            after: self.resolve_after,
            metric_stack: None,
        });
        Handlers {
            intake,
            eligibility,
            dispatch,
            operations,
            callbacks: callback_handler,
        }
    }
}

/// Funds every program's budget (a no-op when already funded).
pub async fn fund(
    config: &LocalConfig,
    ledger: &dyn LedgerWrite,
    clock: &dyn Clock,
) -> Result<(), StackError> {
    for program in &config.programs {
        ledger
            .apply(&[Entry::fund(
                &program.id,
                "initial",
                program.budget,
                clock.now(),
            )])
            .await
            .map_err(|source| StackError::Funding {
                program: program.id.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Serves intake on `listen` until `shutdown`, and the operations
/// function at `POST /local/operations` (as invoking the deployed function
/// would; an operator's key says who runs the command).
pub(crate) async fn serve(
    listen: SocketAddr,
    intake: Intake,
    operations: Operations,
    operators: Vec<pointsflow_config::OperatorEntry>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), StackError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StackError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StackError::Listen {
        addr: listen,
        source,
    })?;
    let local_ops = LocalOperations {
        operations,
        operators: Arc::new(
            operators
                .iter()
                .map(pointsflow_intake::auth::Operator::new)
                .collect(),
        ),
    };
    let app = Router::new()
        .route(
            LOCAL_OPERATIONS_PATH,
            axum::routing::post(serve_operations).with_state(local_ops),
        )
        .fallback(serve_intake)
        .with_state(intake);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "intake server stopped");
        }
    });
    tracing::info!(%addr, "intake API listening");
    Ok((addr, task))
}

impl Stack {
    pub async fn start(config: LocalConfig, options: StackOptions) -> Result<Stack, StackError> {
        Self::start_with(config, options, Arc::new(SystemClock), Arc::new(RandomIds)).await
    }

    /// Starts the stack with an injected clock and id source (for replayable runs).
    pub async fn start_with(
        config: LocalConfig,
        options: StackOptions,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
    ) -> Result<Stack, StackError> {
        let shutdown = CancellationToken::new();
        let partner_state = Arc::new(MemoryPartnerState::new());
        let common = Common::start(
            &config,
            &options,
            Arc::new(MemoryProgramStore::new()),
            Arc::new(MemoryEnrollments::new(config.member_links())),
            (partner_state.clone(), partner_state.clone()),
        )
        .await?;
        let store = Arc::new(MemoryRequestStore::new());
        let ledger = Arc::new(MemoryLedger::new());
        let windows = Arc::new(MemoryWindowStore::new());
        let schedules = Arc::new(MemorySchedules::new());
        fund(&config, ledger.as_ref(), clock.as_ref()).await?;

        let (eligibility_queue, eligibility_dlq) = queue_pair("eligibility", &config);
        let (dispatch_queue, dispatch_dlq) = queue_pair("dispatch", &config);
        let (callback_queue, callback_dlq) =
            queue_pair_receiving("callbacks", &config, CALLBACK_MAX_RECEIVES);
        let queues = Queues {
            eligibility: eligibility_queue.clone(),
            eligibility_dlq,
            dispatch: dispatch_queue.clone(),
            dispatch_dlq,
            callbacks: callback_queue.clone(),
            callbacks_dlq: callback_dlq,
        };

        let audit = Arc::new(MemoryAuditLog::new());
        let reports = Arc::new(MemoryReportStore::new());
        let dead_letters: HashMap<QueueName, Arc<dyn DeadLetters>> = HashMap::from([
            (
                QueueName::Eligibility,
                Arc::new(MemoryDeadLetters {
                    dead_letter: queues.eligibility_dlq.clone(),
                    source: queues.eligibility.clone(),
                }) as Arc<dyn DeadLetters>,
            ),
            (
                QueueName::Dispatch,
                Arc::new(MemoryDeadLetters {
                    dead_letter: queues.dispatch_dlq.clone(),
                    source: queues.dispatch.clone(),
                }) as Arc<dyn DeadLetters>,
            ),
            (
                QueueName::Callbacks,
                Arc::new(MemoryDeadLetters {
                    dead_letter: queues.callbacks_dlq.clone(),
                    source: queues.callbacks.clone(),
                }) as Arc<dyn DeadLetters>,
            ),
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
            to_eligibility: eligibility_queue.clone(),
            to_dispatch: dispatch_queue.clone(),
            work: dispatch_queue.clone(),
            windows: windows.clone(),
            schedules: schedules.clone(),
            redelivery: dispatch_queue.clone(),
            unsettled_requests: store.clone(),
            requeue: dispatch_queue.clone(),
            clock,
            ids,
            audit: audit.clone(),
            dead_letters,
            reports: reports.clone(),
            callbacks: callback_queue.clone(),
            callback_redelivery: callback_queue.clone(),
        });

        let mapping = |name: &str| MappingConfig {
            batch_size: config.queues.batch_size,
            concurrency: config.queues.concurrency,
            function_timeout: config.queues.function_timeout(),
            function_name: name.to_owned(),
        };
        let mut tasks = vec![spawn_mapping(
            EventSourceMapping::new(eligibility_queue, mapping("eligibility")),
            eligibility.clone(),
            shutdown.clone(),
        )];
        tasks.push(spawn_mapping(
            EventSourceMapping::new(callback_queue, mapping("callbacks")),
            callbacks,
            shutdown.clone(),
        ));
        let dispatch_mapping = spawn_mapping(
            EventSourceMapping::new(dispatch_queue, mapping("dispatch")),
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

        Ok(Stack {
            intake_addr,
            sandbox: common.sandbox,
            store,
            ledger,
            windows,
            schedules,
            partner_state,
            queues,
            dispatch,
            eligibility,
            operations,
            audit,
            reports,
            shutdown,
            sandbox_shutdown: common.sandbox_shutdown,
            tasks,
            dispatch_mapping: Some(dispatch_mapping),
            mapping_config: mapping("dispatch"),
        })
    }

    /// Kills the dispatch function mid-flight, as a crash would: its
    /// invocations stop wherever they are, their messages stay on the
    /// queue and come back after the visibility timeout.
    pub fn crash_dispatch(&mut self) {
        if let Some(task) = self.dispatch_mapping.take() {
            task.abort();
        }
    }

    /// Starts the dispatch function again after [`Self::crash_dispatch`].
    pub fn restart_dispatch(&mut self) {
        if self.dispatch_mapping.is_none() {
            self.dispatch_mapping = Some(spawn_mapping(
                EventSourceMapping::new(self.queues.dispatch.clone(), self.mapping_config.clone()),
                self.dispatch.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.intake_addr)
    }

    /// Stops taking requests, lets in-flight invocations finish, then stops the sandbox.
    pub async fn shutdown(self) {
        let mut tasks = self.tasks;
        tasks.extend(self.dispatch_mapping);
        stop(self.shutdown, tasks, self.sandbox_shutdown, self.sandbox).await;
    }
}

/// Stops a stack: intake and mappings first, in-flight work finishing, then the sandbox.
pub(crate) async fn stop(
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    sandbox_shutdown: CancellationToken,
    sandbox: Option<SandboxPartner>,
) {
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    sandbox_shutdown.cancel();
    if let Some(sandbox) = sandbox {
        sandbox.stopped().await;
    }
}
