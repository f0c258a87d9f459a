//! The supervisor's control protocol decoder and the CLI's answer decoder (the checks:
//! `lkinit::fuzz_checks::control_protocol`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lkinit::fuzz_checks::control_protocol(data));
