//! The pointsflow domain. No AWS, no HTTP, no async runtime: typed values,
//! programs and their rules, the request state machine, the ledger rules and
//! the ports the handlers use.

pub mod approval;
pub mod callback;
pub mod governance;
pub mod ledger;
pub mod money;
pub mod operations;
pub mod partner;
pub mod ports;
pub mod program;
pub mod reconcile;
pub mod request;
pub mod reversal;
pub mod schedule;
pub mod time;
pub mod unsettled;
pub mod values;
pub mod window;
