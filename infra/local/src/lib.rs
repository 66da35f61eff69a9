//! The local stack (`pointsflow dev`) and the pieces the `pointsflow` command uses.

pub mod aws_stack;
pub mod client;
pub mod config;
pub mod embedded;
pub mod ops;
pub mod outbox;
pub mod rig;
pub mod sandbox;
pub mod stack;
pub mod stream;

pub use aws_stack::{AwsOptions, AwsStack};
pub use config::LocalConfig;
pub use stack::{Stack, StackOptions};
