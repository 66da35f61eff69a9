//! Partner connectors: the REST/JSON connector and the sandbox frequent-flyer
//! partner, a real HTTP server that speaks the same contract.

pub mod loyalty;
pub mod rest;
pub mod sandbox;
pub mod wire;

pub use loyalty::LoyaltyConnector;
pub use rest::{RestConnector, RestConnectorConfig};
pub use sandbox::{
    SandboxBehaviour, SandboxConfig, SandboxMember, SandboxPartner, SandboxStats, Shutdown, Tamper,
};
