//! runtime.json / runtime.yml parsing, and the other parsers of untrusted bundle input
//! (the checks: `lkinit::fuzz_checks::runtime_config`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lkinit::fuzz_checks::runtime_config(data));
