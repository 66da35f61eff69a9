//! The configured partners' connectors, each behind the partner's rate
//! limit and circuit breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pointsflow_config::{Config, PartnerKind, PartnerProtocol};
use pointsflow_core::ports::{CircuitStore, Clock, PartnerConnector, RateLimiter};
use pointsflow_core::values::PartnerId;
use pointsflow_partners::{LoyaltyConnector, Reach, RestConnector, RestConnectorConfig};

use crate::governed::Governed;
use crate::platform::{AssemblyError, SandboxAccess};

/// Connectors for the configured partners; partners of kind `sandbox` reach
/// `sandbox`, and are left out without one (a deployed stack has none).
pub fn configured(
    config: &Config,
    sandbox: Option<&SandboxAccess>,
    reach: Reach,
) -> Result<HashMap<PartnerId, Arc<dyn PartnerConnector>>, AssemblyError> {
    let mut partners: HashMap<PartnerId, Arc<dyn PartnerConnector>> = HashMap::new();
    for p in &config.partners {
        let (base_url, api_key) = match (p.kind, sandbox) {
            (PartnerKind::Sandbox, Some(s)) => (s.base_url.clone(), s.api_key.clone()),
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
            reach,
        };
        let failed = |e: pointsflow_partners::rest::BuildError| AssemblyError::Partner {
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
