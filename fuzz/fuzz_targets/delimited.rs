//! Fuzz target: see `patronload::harness::delimited`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| patronload::harness::delimited(data));
