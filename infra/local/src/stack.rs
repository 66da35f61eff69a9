//! The local stack: the intake API on a TCP port, eligibility, dispatch and
//! callbacks on embedded queues behind Lambda-like event-source mappings,
//! the windows' schedules and the resolver fired in process, and the
//! sandbox partner, all in one process on the embedded adapters. The
//! handlers come from the assembly, as the deployed functions' do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use pointsflow_admin::Admin;
use pointsflow_assembly::{Assembly, AssemblyError, Handlers};
use pointsflow_core::ports::{Clock, IdSource, QueueName, WindowSchedules};
use pointsflow_core::program::Program;
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_core::window::WindowId;
use pointsflow_dispatch::Dispatch;
use pointsflow_dispatch::window::WindowClosed;
use pointsflow_eligibility::Eligibility;
use pointsflow_harness::mapping::{EventSourceMapping, MappingConfig, spawn_embedded};
use pointsflow_intake::Intake;
use pointsflow_memory::{
    MemoryAuditLog, MemoryEnrollments, MemoryLedger, MemoryLinkHistory, MemoryPartnerState,
    MemoryProgramStore, MemoryProposals, MemoryQueue, MemoryReportStore, MemoryRequestStore,
    MemorySchedules, MemoryWindowStore,
};
use pointsflow_operations::Operations;
use pointsflow_sandbox::SandboxPartner;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::LocalConfig;
use crate::embedded::Embedded;
use crate::sandbox::RunningSandbox;

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
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
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
    /// Member links stored since the configuration's, their history,
    /// applied program revisions and proposals.
    pub links: Arc<MemoryEnrollments>,
    pub link_history: Arc<MemoryLinkHistory>,
    pub programs: Arc<MemoryProgramStore>,
    pub proposals: Arc<MemoryProposals>,
    /// The event bus: what the events function and `resend_events` put
    /// events on (the latest [`crate::outbox::KEPT`]).
    pub bus: Arc<pointsflow_memory::MemoryBus>,
    /// The store's record of its writes, which the events function reads.
    pub stream: Arc<pointsflow_memory::MemoryStream>,
    shutdown: CancellationToken,
    sandbox_shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The events function, stopped after everything else (it publishes
    /// the last writes first).
    events: Outbox,
    dispatch_mapping: Option<JoinHandle<()>>,
    mapping_config: MappingConfig,
}

/// A task that publishes what the others write, and what stops it: once
/// they have stopped, so it publishes their last writes.
pub(crate) type Outbox = (CancellationToken, JoinHandle<()>);

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("intake_addr", &self.intake_addr)
            .finish_non_exhaustive()
    }
}

/// A request as API Gateway hands it to a function: text bodies as text,
/// anything else as binary; too large a body is refused as API Gateway would.
async fn to_lambda(
    request: axum::extract::Request,
) -> Result<http::Request<lambda_http::Body>, axum::response::Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_HTTP_BODY)
        .await
        .map_err(|_| {
            lambda_to_axum(
                pointsflow_intake::Problem::payload_too_large(MAX_HTTP_BODY).into_response(),
            )
        })?;
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    };
    Ok(http::Request::from_parts(parts, body))
}

async fn serve_intake(
    State(intake): State<Intake>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match to_lambda(request).await {
        Ok(request) => lambda_to_axum(intake.handle(request).await),
        Err(refused) => refused,
    }
}

/// Where the local stack serves the admin API (operator keys).
pub const ADMIN_PATH: &str = "/v1/admin/{*rest}";

async fn serve_admin(
    State(admin): State<Admin>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match to_lambda(request).await {
        Ok(request) => lambda_to_axum(admin.handle(request).await),
        Err(refused) => refused,
    }
}

pub(crate) fn lambda_to_axum(
    response: http::Response<lambda_http::Body>,
) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    let body = match body {
        lambda_http::Body::Empty => axum::body::Body::empty(),
        lambda_http::Body::Text(t) => axum::body::Body::from(t),
        lambda_http::Body::Binary(b) => axum::body::Body::from(b),
        _ => axum::body::Body::empty(),
    };
    http::Response::from_parts(parts, body).into_response()
}

/// How each queue's event-source mapping invokes its function.
pub(crate) fn mapping_config(config: &LocalConfig, function: &str) -> MappingConfig {
    MappingConfig {
        batch_size: config.queues.batch_size,
        concurrency: config.queues.concurrency,
        function_timeout: config.queues.function_timeout(),
        function_name: function.to_owned(),
    }
}

/// What EventBridge Scheduler invokes when deployed: each armed window at
/// dispatch (the next window of every scheduled program armed at start: a
/// stack stopped over a window's closing time sends that window's requests
/// in the next one), and the resolver of unsettled credits every
/// `resolve_every`.
pub(crate) fn spawn_schedules(
    schedules: Arc<MemorySchedules>,
    programs: &[Arc<Program>],
    dispatch: &Dispatch,
    resolve_every: Duration,
    shutdown: &CancellationToken,
) -> [JoinHandle<()>; 2] {
    let now = chrono::Utc::now();
    let next: Vec<WindowId> = programs
        .iter()
        .filter_map(|p| {
            let window = p.window_after(now).ok().flatten()?;
            Some(WindowId::new(&p.id, window.closes_at))
        })
        .collect();
    let windows = {
        let dispatch = dispatch.clone();
        let shutdown = shutdown.clone();
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
                                Ok(run) => {
                                    tracing::info!(%window, state = ?run.state, "window fired")
                                }
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
    };
    let resolver = {
        let dispatch = dispatch.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(resolve_every) => {}
                }
                if let Err(e) = dispatch.resolve_unsettled().await {
                    tracing::error!(error = %e, "the resolver of unsettled credits failed");
                }
            }
        })
    };
    [windows, resolver]
}

/// Serves intake on `listen` until `shutdown`, and the admin handler at
/// `POST /v1/admin/commands/{command}` (an operator's key says who runs
/// the command, where API Gateway's IAM authorization does when deployed);
/// with a `bus`, its events at [`crate::outbox::TAIL_PATH`].
pub(crate) async fn serve(
    listen: SocketAddr,
    intake: Intake,
    admin: Admin,
    bus: Option<Arc<pointsflow_memory::MemoryBus>>,
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
    let mut app = Router::new().route(
        ADMIN_PATH,
        axum::routing::any(serve_admin).with_state(admin.clone()),
    );
    if let Some(bus) = bus {
        app = app.route(
            crate::outbox::TAIL_PATH,
            axum::routing::get(crate::outbox::tail).with_state((admin, bus)),
        );
    }
    let app = app.fallback(serve_intake).with_state(intake);
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
        let sandbox = crate::sandbox::start(&config, options.sandbox_listen)
            .await
            .map_err(|source| StackError::Listen {
                addr: options.sandbox_listen,
                source,
            })?;
        let platform = Embedded::new(&config, clock, ids);
        let pair = |q| platform.pair(q).cloned();
        let (eligibility_queue, dispatch_queue, callbacks_queue) = (
            pair(QueueName::Eligibility)?,
            pair(QueueName::Dispatch)?,
            pair(QueueName::Callbacks)?,
        );
        let queues = Queues {
            eligibility: eligibility_queue.queue.clone(),
            eligibility_dlq: eligibility_queue.dead_letters,
            dispatch: dispatch_queue.queue.clone(),
            dispatch_dlq: dispatch_queue.dead_letters,
            callbacks: callbacks_queue.queue.clone(),
            callbacks_dlq: callbacks_queue.dead_letters,
        };
        let (store, ledger, windows, schedules, partner_state, audit, reports) = (
            platform.store.clone(),
            platform.ledger.clone(),
            platform.windows.clone(),
            platform.schedules.clone(),
            platform.partner_state.clone(),
            platform.audit.clone(),
            platform.reports.clone(),
        );
        let (links, link_history, programs, proposals) = (
            platform.links.clone(),
            platform.link_history.clone(),
            platform.programs.clone(),
            platform.proposals.clone(),
        );
        let (bus, stream) = (platform.bus.clone(), platform.stream.clone());
        let resolve_every = Duration::from_millis(config.resolve_every_ms);
        let mut adapters = platform.adapters();
        adapters.sandbox = sandbox.as_ref().map(|s| s.access(&config));
        let assembly = Assembly::new(config.clone(), adapters);
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
            crate::outbox::spawn_events(stream.clone(), assembly.events().await?, events_shutdown),
        );

        let mut tasks = vec![
            spawn_embedded(
                EventSourceMapping::new(
                    queues.eligibility.clone(),
                    mapping_config(&config, "eligibility"),
                ),
                eligibility.clone(),
                shutdown.clone(),
            ),
            spawn_embedded(
                EventSourceMapping::new(
                    queues.callbacks.clone(),
                    mapping_config(&config, "callbacks"),
                ),
                callbacks,
                shutdown.clone(),
            ),
        ];
        let mapping = mapping_config(&config, "dispatch");
        let dispatch_mapping = spawn_embedded(
            EventSourceMapping::new(queues.dispatch.clone(), mapping.clone()),
            dispatch.clone(),
            shutdown.clone(),
        );
        tasks.extend(spawn_schedules(
            schedules.clone(),
            &assembly.programs().await?,
            &dispatch,
            resolve_every,
            &shutdown,
        ));
        let (intake_addr, server) = serve(
            options.listen,
            intake,
            admin,
            Some(bus.clone()),
            shutdown.clone(),
        )
        .await?;
        tasks.push(server);
        let (sandbox, sandbox_shutdown) = split(sandbox);

        Ok(Stack {
            intake_addr,
            sandbox,
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
            links,
            link_history,
            programs,
            proposals,
            bus,
            stream,
            shutdown,
            sandbox_shutdown,
            tasks,
            events,
            dispatch_mapping: Some(dispatch_mapping),
            mapping_config: mapping,
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
            self.dispatch_mapping = Some(spawn_embedded(
                EventSourceMapping::new(self.queues.dispatch.clone(), self.mapping_config.clone()),
                self.dispatch.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.intake_addr)
    }

    /// Stops taking requests, lets in-flight invocations finish, publishes
    /// their events, then stops the sandbox.
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

/// Stops a stack: intake and mappings first, in-flight work finishing,
/// then the events function (once it has published their writes), then
/// the sandbox.
pub(crate) async fn stop(
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    (events_shutdown, events): Outbox,
    sandbox_shutdown: CancellationToken,
    sandbox: Option<SandboxPartner>,
) {
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    events_shutdown.cancel();
    let _ = events.await;
    sandbox_shutdown.cancel();
    if let Some(sandbox) = sandbox {
        sandbox.stopped().await;
    }
}

/// The sandbox, and what stops it (a token nothing waits on when there is none).
pub(crate) fn split(
    sandbox: Option<RunningSandbox>,
) -> (Option<SandboxPartner>, CancellationToken) {
    match sandbox {
        Some(s) => (Some(s.partner), s.shutdown),
        None => (None, CancellationToken::new()),
    }
}
