//! Partner connectors: the REST/JSON connector and the loyalty-commerce
//! connector, and the wire formats of their contracts (which the sandbox
//! partner, `pointsflow-sandbox`, speaks too).

pub mod loyalty;
pub mod rest;
pub mod wire;

pub use loyalty::LoyaltyConnector;
pub use pointsflow_outbound::Reach;
pub use rest::{RestConnector, RestConnectorConfig};
