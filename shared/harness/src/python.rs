//! Checking our wire formats against other implementations: runs a script
//! with the test virtualenv's Python (`POINTSFLOW_TEST_PYTHON`, set by
//! `scripts/test`, which installs the pinned packages of
//! `infra/requirements-test.txt`: botocore, standardwebhooks).

#![allow(clippy::panic, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

/// What `script` prints (trimmed) when run with `args` and `stdin`; panics
/// if Python is not set up or the script fails, with its error output.
pub fn run(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let python = std::env::var("POINTSFLOW_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "POINTSFLOW_TEST_PYTHON is not set: run the tests with scripts/test, which installs \
             the test packages into .venv"
        )
    });
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test Python starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("the script reads its input");
    let out = child.wait_with_output().expect("the script ends");
    assert!(
        out.status.success(),
        "the Python script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("the script prints UTF-8")
        .trim()
        .to_owned()
}
