//! Reaching the AWS API emulator (moto server) the test script starts.
//!
//! Tests that need it call [`config`]; when the emulator is not there they
//! fail and say how to get it. They never skip.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// The variable `scripts/test` sets to the emulator's URL.
pub const ENDPOINT_VAR: &str = "POINTSFLOW_AWS_TEST_ENDPOINT";

const HOW: &str = "run the tests with scripts/test, which installs moto server \
(PyPI moto[server], pinned in infra/requirements-test.txt) into .venv and starts it; \
or start `moto_server -p PORT` yourself and set POINTSFLOW_AWS_TEST_ENDPOINT=http://127.0.0.1:PORT";

/// The emulator's URL, checked to accept connections.
///
/// # Panics
/// When the variable is unset or nothing listens there: a test that needs
/// the emulator must fail loudly rather than pass without it.
#[allow(clippy::panic)]
pub fn endpoint() -> String {
    let Ok(url) = std::env::var(ENDPOINT_VAR) else {
        panic!("{ENDPOINT_VAR} is not set, so the AWS API emulator cannot be reached: {HOW}");
    };
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let reachable = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !reachable {
        panic!("nothing answers at {ENDPOINT_VAR}={url}: {HOW}");
    }
    url
}

/// SDK configuration for the emulator the tests use (see [`endpoint`]).
pub async fn config() -> SdkConfig {
    config_at(&endpoint()).await
}

/// SDK configuration for an emulator at `url`: every service there, a fixed
/// region and dummy credentials (an emulator checks neither).
pub async fn config_at(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

/// A name no other test uses, for tables and queues.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}
