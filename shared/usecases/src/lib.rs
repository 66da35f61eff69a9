//! The use cases: what an operator, a source or a handler does to a request
//! beyond the pipeline's own stages, each in one module that owns the
//! ports it uses and a typed error, turned into a stable code only at the
//! edge (the HTTP API's problem+json, the operations function's answer).
//!
//! - [`approval`]: approve or decline a request waiting for approval;
//! - [`reversal`]: take back points a credit gave (operators, clawbacks);
//! - [`retry`]: send a failed or rejected request through again;
//! - [`resolve`]: look an unsettled credit's outcome up now;
//! - [`notify`]: queue a final status for its source's callback;
//! - [`link`]: link a recipient to a member account;
//! - [`programs`]: apply a program revision; [`catalog`]: the programs in
//!   force, as every handler reads them;
//! - [`reconcile`]: compare requests, ledger and the partner's statement.

pub mod approval;
pub mod catalog;
pub mod link;
pub mod notify;
pub mod programs;
pub mod reconcile;
pub mod resolve;
pub mod retry;
pub mod reversal;
