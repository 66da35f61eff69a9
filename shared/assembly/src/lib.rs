//! The one place every handler is built: from a stack's adapters (a
//! [`Platform`]) and the configuration. The deployed functions, the local
//! stacks and the simulator all build their handlers here, so they cannot
//! drift apart; a new function is wired here once.
//!
//! What every stack shares is applied here too: partners' connectors behind
//! their rate limits and circuit breakers ([`governed`]), the live program
//! catalog, the configuration's member links under the stored ones, and the
//! store update that queues a status callback.
//!
//! A handler asks its platform only for the ports it uses, when it is built:
//! a deployed function's cold start fails, naming what is missing, if its
//! environment lacks one of them.

mod connectors;
pub mod governed;
mod platform;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pointsflow_admin::{Admin, Authentication};
use pointsflow_callbacks::{Callbacks, CallbacksPorts, Retries};
use pointsflow_config::Config;
use pointsflow_core::ledger::Entry;
use pointsflow_core::ports::{
    DeadLetters, Enrollments, LedgerWrite, PartnerConnector, ProgramCatalog, Publish,
    PublishCallback, QueueName, RequestUpdate,
};
use pointsflow_core::values::{PartnerId, SourceId};
use pointsflow_dispatch::resolve::Resolution;
use pointsflow_dispatch::{Dispatch, DispatchPorts};
use pointsflow_eligibility::{Eligibility, EligibilityPorts};
use pointsflow_events::{Events, EventsPorts, StatusCallbacks};
use pointsflow_intake::{DEFAULT_MAX_BODY_BYTES, Intake, IntakeConfig, IntakePorts};
use pointsflow_operations::{Operations, OperationsConfig, OperationsPorts};
use pointsflow_runtime::Backoff;
use pointsflow_usecases::catalog::LiveCatalog;
use pointsflow_usecases::link::LayeredEnrollments;
use tokio::sync::OnceCell;

pub use connectors::{configured as configured_connectors, govern};
pub use platform::{Adapters, AssemblyError, Platform, SandboxAccess};
pub use pointsflow_outbound::Reach;

/// Every handler of a stack.
pub struct Handlers {
    pub intake: Intake,
    /// The admin API, authenticating operators by their keys.
    pub admin: Admin,
    pub eligibility: Eligibility,
    pub dispatch: Dispatch,
    pub operations: Operations,
    pub callbacks: Callbacks,
}

/// Builds handlers from one platform and one configuration. Generic over
/// the platform, so a deployed function links the adapters its handler
/// uses and no others.
pub struct Assembly<P: Platform> {
    config: Config,
    platform: P,
    catalog: OnceCell<Arc<LiveCatalog>>,
    partners: OnceLock<HashMap<PartnerId, Arc<dyn PartnerConnector>>>,
    enrollments: OnceLock<Arc<dyn Enrollments>>,
}

impl<P: Platform> std::fmt::Debug for Assembly<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembly").finish_non_exhaustive()
    }
}

impl<P: Platform> Assembly<P> {
    pub fn new(config: Config, platform: P) -> Self {
        Self {
            config,
            platform,
            catalog: OnceCell::new(),
            partners: OnceLock::new(),
            enrollments: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The programs: the configuration's, under those operators applied,
    /// reloaded every `program_refresh_ms`. Loaded once, at the first ask.
    pub async fn catalog(&self) -> Result<Arc<LiveCatalog>, AssemblyError> {
        self.catalog
            .get_or_try_init(|| async {
                LiveCatalog::load(
                    self.config.programs.clone(),
                    self.platform.program_store(),
                    Duration::from_millis(self.config.program_refresh_ms),
                )
                .await
                .map(Arc::new)
                .map_err(AssemblyError::Programs)
            })
            .await
            .cloned()
    }

    /// The partners' connectors, governed (one set for every handler).
    pub fn partners(&self) -> Result<HashMap<PartnerId, Arc<dyn PartnerConnector>>, AssemblyError> {
        if let Some(partners) = self.partners.get() {
            return Ok(partners.clone());
        }
        let raw = match self.platform.connectors() {
            Some(connectors) => connectors,
            None => connectors::configured(
                &self.config,
                self.platform.sandbox().as_ref(),
                self.platform.reach(),
            )?,
        };
        let governed = govern(
            &self.config,
            raw,
            self.platform.rate_limiter(),
            self.platform.circuits(),
            self.platform.clock(),
        );
        Ok(self.partners.get_or_init(|| governed).clone())
    }

    /// The configuration's member links, under those linked since.
    pub fn enrollments(&self) -> Arc<dyn Enrollments> {
        self.enrollments
            .get_or_init(|| {
                Arc::new(LayeredEnrollments::new(
                    self.config.member_links(),
                    self.platform.links(),
                ))
            })
            .clone()
    }

    fn queue(
        &self,
        queue: QueueName,
    ) -> Result<Arc<dyn pointsflow_core::ports::Queue>, AssemblyError> {
        self.platform.queue(queue)
    }

    fn callback_sources(&self) -> Vec<SourceId> {
        self.config
            .sources
            .iter()
            .filter(|s| s.callback.is_some())
            .map(|s| s.id.clone())
            .collect()
    }

    /// The request store's update (a status callback is queued by the
    /// events function, from the store's record of the write).
    fn update(&self) -> Result<Arc<dyn RequestUpdate>, AssemblyError> {
        Ok(self.platform.requests())
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.config.queues.retry_base(),
            cap: self.config.queues.retry_cap(),
        }
    }

    /// The intake function: the public API, which only ingests.
    pub async fn intake(&self) -> Result<Intake, AssemblyError> {
        let store = self.platform.requests();
        let eligibility: Arc<dyn Publish> = self.queue(QueueName::Eligibility)?;
        Ok(Intake::new(
            IntakeConfig {
                sources: self.config.sources.clone(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
            IntakePorts {
                create: store.clone(),
                get: store.clone(),
                ledger: self.platform.ledger(),
                eligibility_queue: eligibility,
                programs: self.catalog().await?,
                enrollments: self.enrollments(),
                waiting: store,
                clock: self.platform.clock(),
            },
        ))
    }

    /// The eligibility function: rules, enrollment, reservations.
    pub async fn eligibility(&self) -> Result<Eligibility, AssemblyError> {
        let store = self.platform.requests();
        let ledger = self.platform.ledger();
        let dispatch: Arc<dyn Publish> = self.queue(QueueName::Dispatch)?;
        Ok(Eligibility::new(EligibilityPorts {
            get: store.clone(),
            waiting: store,
            partners: self.partners()?,
            update: self.update()?,
            ledger: ledger.clone(),
            ledger_read: ledger,
            programs: self.catalog().await?,
            enrollments: self.enrollments(),
            dispatch_queue: dispatch,
            schedules: self.platform.schedules()?,
            clock: self.platform.clock(),
            ids: self.platform.ids(),
        })
        .with_sweep_every(Duration::from_millis(self.config.waiting_sweep_ms)))
    }

    /// The dispatch function: credits at the partner, windows, the resolver.
    pub async fn dispatch(&self) -> Result<Dispatch, AssemblyError> {
        let store = self.platform.requests();
        let ledger = self.platform.ledger();
        let queue = self.queue(QueueName::Dispatch)?;
        Ok(Dispatch::new(DispatchPorts {
            get: store.clone(),
            update: self.update()?,
            ledger_read: ledger.clone(),
            ledger_write: ledger,
            programs: self.catalog().await?,
            partners: self.partners()?,
            ids: self.platform.ids(),
            clock: self.platform.clock(),
            scheduled: store.clone(),
            windows: self.platform.windows(),
            work: queue.clone(),
            redelivery: queue.clone(),
            unsettled_requests: store.clone(),
            lines: store.clone(),
            sweep: store,
            requeue: queue,
            eligibility: self.queue(QueueName::Eligibility)?,
            circuits: self.platform.circuits(),
        })
        .with_backoff(self.backoff())
        .with_resolution(Resolution {
            after: Duration::from_millis(self.config.resolve_after_ms),
            stalled_after: Duration::from_millis(self.config.stalled_after_ms),
            metric_stack: self.platform.metric_stack(),
        }))
    }

    /// The operations function: operators' commands.
    pub async fn operations(&self) -> Result<Operations, AssemblyError> {
        let store = self.platform.requests();
        let ledger = self.platform.ledger();
        let dead_letters = QueueName::ALL
            .into_iter()
            .map(|q| Ok((q, self.platform.dead_letters(q)?)))
            .collect::<Result<HashMap<QueueName, Arc<dyn DeadLetters>>, AssemblyError>>()?;
        let callbacks: Arc<dyn PublishCallback> = self.queue(QueueName::Callbacks)?;
        let config = OperationsConfig {
            programs: self.config.programs.clone(),
            known: self.config.known(),
        };
        Ok(Operations::new(
            config,
            OperationsPorts {
                get: store.clone(),
                update: self.update()?,
                search: store.clone(),
                ledger_read: ledger.clone(),
                ledger_write: ledger,
                programs: self.catalog().await?,
                partners: self.partners()?,
                clock: self.platform.clock(),
                eligibility: self.queue(QueueName::Eligibility)?,
                dispatch: self.queue(QueueName::Dispatch)?,
                audit: self.platform.audit(),
                dead_letters,
                lines: store.clone(),
                reports: self.platform.reports(),
                callbacks: Some(callbacks),
                // A stack without a bus answers `resend_events` so.
                events: self.platform.event_bus().ok(),
                program_store: self.platform.program_store(),
                waiting: store,
                schedules: self.platform.schedules()?,
                windows: self.platform.windows(),
                enrollments: self.enrollments(),
                link_history: self.platform.link_history(),
                proposals: self.platform.proposals(),
            },
        ))
    }

    /// The admin function: the operator commands over HTTP, for callers
    /// authenticated as `authentication` says.
    pub async fn admin(&self, authentication: Authentication) -> Result<Admin, AssemblyError> {
        Ok(Admin::new(
            authentication,
            &self.config.operators,
            self.operations().await?,
        ))
    }

    /// The callbacks function: final statuses posted to the sources.
    pub fn callbacks(&self) -> Result<Callbacks, AssemblyError> {
        let retries = &self.config.callbacks;
        Callbacks::new(
            self.platform.reach(),
            CallbacksPorts {
                get: self.platform.requests(),
                redelivery: self.queue(QueueName::Callbacks)?,
                clock: self.platform.clock(),
            },
            self.config
                .sources
                .iter()
                .filter_map(|s| s.callback.clone().map(|c| (s.id.clone(), c)))
                .collect(),
            Retries {
                backoff: Backoff {
                    base: retries.retry_base(),
                    cap: retries.retry_cap(),
                },
                give_up_after: retries.give_up_after(),
            },
        )
        .map_err(|e| AssemblyError::HttpClient(e.to_string()))
    }

    /// The events function: each stored change of a request, as events on
    /// the stack's bus.
    pub async fn events(&self) -> Result<Events, AssemblyError> {
        let sources: HashSet<SourceId> = self.callback_sources().into_iter().collect();
        let callbacks = if sources.is_empty() {
            None
        } else {
            Some(StatusCallbacks {
                queue: self.queue(QueueName::Callbacks)?,
                sources,
            })
        };
        Ok(Events::new(EventsPorts {
            bus: self.platform.event_bus()?,
            programs: self.catalog().await?,
            callbacks,
        }))
    }

    /// Every handler (the local stack and the simulator run them all).
    pub async fn handlers(&self) -> Result<Handlers, AssemblyError> {
        Ok(Handlers {
            intake: self.intake().await?,
            admin: self.admin(Authentication::Keys).await?,
            eligibility: self.eligibility().await?,
            dispatch: self.dispatch().await?,
            operations: self.operations().await?,
            callbacks: self.callbacks()?,
        })
    }

    /// Funds every program's budget from the configuration (a no-op when
    /// funded already): what a stack does once, before its first request.
    pub async fn fund(&self) -> Result<(), AssemblyError> {
        fund(
            &self.config,
            self.platform.ledger().as_ref(),
            self.platform.clock().now(),
        )
        .await
    }

    /// The programs in force now (the catalog's snapshot).
    pub async fn programs(
        &self,
    ) -> Result<Vec<Arc<pointsflow_core::program::Program>>, AssemblyError> {
        Ok(self.catalog().await?.programs())
    }
}

/// Funds every program of `config` in `ledger` (a no-op when funded already).
pub async fn fund(
    config: &Config,
    ledger: &dyn LedgerWrite,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), AssemblyError> {
    for program in &config.programs {
        ledger
            .apply(&[Entry::fund(&program.id, "initial", program.budget, now)])
            .await
            .map_err(|source| AssemblyError::Funding {
                program: program.id.to_string(),
                source,
            })?;
    }
    Ok(())
}
