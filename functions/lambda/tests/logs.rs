//! Whatever the level a function is given, only pointsflow's own lines go
//! below `INFO`: the Lambda runtime logs whole events (with their
//! `Authorization` headers) at `TRACE`, and the HTTP and AWS clients log
//! requests, which no masking can be trusted to know.

use pointsflow_lambda::log_filter;
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;

#[test]
fn other_crates_never_log_below_info() {
    let trace = log_filter(LevelFilter::TRACE);
    assert!(trace.would_enable("pointsflow_intake", &Level::TRACE));
    assert!(trace.would_enable("pointsflow_runtime::masking", &Level::DEBUG));
    for target in [
        "lambda_runtime",
        "lambda_runtime::layers::api_client",
        "lambda_http",
        "hyper_util::client",
        "reqwest::connect",
        "aws_smithy_runtime",
    ] {
        assert!(!trace.would_enable(target, &Level::DEBUG), "{target}");
        assert!(trace.would_enable(target, &Level::INFO), "{target}");
    }
    let warn = log_filter(LevelFilter::WARN);
    assert!(!warn.would_enable("pointsflow_intake", &Level::INFO));
    assert!(!warn.would_enable("lambda_runtime", &Level::INFO));
}
