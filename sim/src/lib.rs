//! The pointsflow simulator: proof, seed after seed, that no point is lost
//! or credited twice.
//!
//! Each seed builds a world: the real intake, eligibility, dispatch and
//! operations handlers over the embedded adapters, a simulated clock,
//! SQS-like queues and partner. From the seed alone come the workload
//! (requests, duplicates, reused keys, malformed bodies, Salesforce
//! Outbound Messages and their retries, deals lost after they were won,
//! sources that give up on a failed send),
//! the order in which concurrent invocations take their steps, and the
//! faults: a crash at any step boundary, throttled and conflicting writes,
//! failed sends, duplicate and reordered deliveries, partner 5xx, 429,
//! timeouts after crediting, pending credits, slow answers and outages,
//! windows fired late or twice, operators racing the pipeline, the events
//! function failing or crashing between the store's record of a write and
//! the event bus. The
//! invariants are checked after every step and once the run has settled
//! with the faults off. A failing seed prints itself and its last steps,
//! and replays exactly.

pub mod bus;
pub mod exec;
pub mod faults;
pub mod partner;
pub mod queue;
pub mod workload;
pub mod world;

pub use world::{Failure, Outcome, run};
