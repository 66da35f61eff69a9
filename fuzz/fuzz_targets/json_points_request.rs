//! The canonical JSON points-request reader on arbitrary bytes: it may
//! refuse them, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsflow_core::values::{IdempotencyKey, SourceId};
use pointsflow_intake::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = wire::parse_body(data) {
        let source = SourceId::parse("fuzz").expect("a valid source id");
        let key = IdempotencyKey::parse("fuzz-key").expect("a valid key");
        let _ = body.into_new_request(source, key);
    }
});
