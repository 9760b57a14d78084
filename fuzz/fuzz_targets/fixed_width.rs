//! Fuzz target: see `patronload::harness::fixed_width`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| patronload::harness::fixed_width(data));
