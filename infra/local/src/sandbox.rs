//! The sandbox partner as the local stack runs it: started when a partner
//! of kind `sandbox` is configured, with the configuration's member links to
//! it and the `[sandbox]` section's accounts as its members.

use std::net::SocketAddr;
use std::time::Duration;

use pointsflow_assembly::SandboxAccess;
use pointsflow_core::values::ProgramId;
use pointsflow_sandbox::{SandboxBehaviour, SandboxConfig, SandboxMember, SandboxPartner};
use tokio_util::sync::CancellationToken;

use crate::config::{LocalConfig, PartnerKind};

/// A running sandbox and what stops it.
pub struct RunningSandbox {
    pub partner: SandboxPartner,
    pub shutdown: CancellationToken,
}

impl RunningSandbox {
    /// How connectors reach it.
    pub fn access(&self, config: &LocalConfig) -> SandboxAccess {
        SandboxAccess {
            base_url: self.partner.base_url(),
            api_key: config.sandbox.api_key.clone(),
        }
    }
}

/// Starts the sandbox on `listen` if the configuration uses it.
pub async fn start(
    config: &LocalConfig,
    listen: SocketAddr,
) -> Result<Option<RunningSandbox>, std::io::Error> {
    if !config.uses_sandbox() {
        return Ok(None);
    }
    let in_sandbox = |program: &ProgramId| {
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
    let members = config
        .member_links()
        .iter()
        .filter(|l| in_sandbox(&l.program))
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
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let partner = SandboxPartner::start(
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
        listen,
        Box::pin(async move { stop.cancelled().await }),
    )
    .await?;
    Ok(Some(RunningSandbox { partner, shutdown }))
}
