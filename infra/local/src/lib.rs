//! The local stack (`pointsflow dev`) and the pieces the `pointsflow` command uses.

pub mod config;
pub mod stack;

pub use config::LocalConfig;
pub use stack::{Stack, StackOptions};
