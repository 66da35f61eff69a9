//! The Salesforce Outbound Message reader on arbitrary bytes: it may refuse
//! them, never panic; what it accepts it can write and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pointsflow_intake::soap;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = soap::parse(data) {
        let again = soap::parse(message.to_xml().as_bytes()).expect("a written message reads back");
        assert_eq!(again, message);
    }
});
