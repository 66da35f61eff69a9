//! What runs the handlers outside Lambda, for the local stack, the
//! benchmarks and the tests, and is never deployed: event-source mappings
//! over the embedded queue and over SQS ([`mapping`]), reaching the AWS API
//! emulator ([`emulator`]), counting the AWS requests a process makes
//! ([`meter`]), and checking wire formats with other implementations in
//! Python ([`python`]).

pub mod emulator;
pub mod mapping;
pub mod meter;
pub mod python;
