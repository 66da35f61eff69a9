//! The operations function's invocation reader on arbitrary bytes (as a
//! console test event or the CLI sends them): it may refuse them with a
//! code, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsflow_operations::Invocation;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = Invocation::parse(event);
    }
});
