//! The pointsflow domain. No AWS, no HTTP, no async runtime: typed values,
//! programs and their rules, the request state machine, the delivery of a
//! credit at a partner, the ledger rules, and the ports (`ports`) the
//! handlers use.

pub mod access;
pub mod approval;
pub mod audit;
pub mod callback;
pub mod delivery;
pub mod enrollment;
pub mod events;
pub mod governance;
pub mod ledger;
pub mod money;
pub mod partner;
pub mod ports;
pub mod program;
pub mod proposal;
pub mod reason;
pub mod reconcile;
pub mod request;
pub mod reversal;
pub mod schedule;
pub mod search;
pub mod sightings;
pub mod signing;
pub mod time;
pub mod unsettled;
pub mod values;
pub mod window;
