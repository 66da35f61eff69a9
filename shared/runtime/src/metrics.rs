//! Business and partner metrics in CloudWatch's embedded metric format: a
//! JSON log line per measurement, which CloudWatch turns into metrics in
//! the `pointsflow` namespace (no API call, no extra permission). The
//! deployed functions write them to stdout ([`init`], with the stack's
//! name as the `Stack` dimension); elsewhere they go nowhere unless a sink
//! is installed (the tests install one).

use std::sync::{Arc, OnceLock};

/// Where metric lines go.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

struct Emitter {
    stack: String,
    sink: Sink,
}

static EMITTER: OnceLock<Emitter> = OnceLock::new();

/// Sends metric lines for `stack` to `sink`; the first call wins.
pub fn init(stack: impl Into<String>, sink: Sink) {
    let _ = EMITTER.set(Emitter {
        stack: stack.into(),
        sink,
    });
}

/// Metric lines to stdout, for a Lambda function.
pub fn to_stdout(stack: impl Into<String>) {
    init(stack, Arc::new(|line: &str| println!("{line}")));
}

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// The line for `values` under `dimension` (`Program` or `Partner`, with
/// `Stack`); each value is also aggregated per stack alone, which the
/// stack's alarms watch.
pub fn line(
    stack: &str,
    dimension: (&str, &str),
    values: &[(&str, f64, Unit)],
    timestamp_ms: i64,
) -> String {
    let mut body = serde_json::Map::new();
    body.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "pointsflow",
                "Dimensions": [["Stack", dimension.0], ["Stack"]],
                "Metrics": values
                    .iter()
                    .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit.as_str()}))
                    .collect::<Vec<_>>(),
            }]
        }),
    );
    body.insert("Stack".into(), stack.into());
    body.insert(dimension.0.into(), dimension.1.into());
    for (name, value, _) in values {
        body.insert((*name).into(), serde_json::json!(value));
    }
    serde_json::Value::Object(body).to_string()
}

/// Records `values` for a program or a partner (`dimension`), if metrics are on.
pub fn put(dimension: (&str, &str), values: &[(&str, f64, Unit)]) {
    if let Some(e) = EMITTER.get() {
        (e.sink)(&line(
            &e.stack,
            dimension,
            values,
            chrono::Utc::now().timestamp_millis(),
        ));
    }
}

/// One more of `name` for `program`.
pub fn count(program: &str, name: &str) {
    put(("Program", program), &[(name, 1.0, Unit::Count)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_in_embedded_metric_format() {
        let l = line(
            "prod",
            ("Program", "sales-incentive"),
            &[
                ("RequestsCredited", 1.0, Unit::Count),
                ("PointsCredited", 251.0, Unit::None),
            ],
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "pointsflow");
        assert_eq!(
            spec["Dimensions"][0],
            serde_json::json!(["Stack", "Program"])
        );
        assert_eq!(spec["Metrics"][1]["Name"], "PointsCredited");
        assert_eq!(v["Program"], "sales-incentive");
        assert_eq!(v["Stack"], "prod");
        assert_eq!(v["PointsCredited"], 251.0);
    }
}
