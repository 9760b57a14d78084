//! Fuzz target: see `patronload::harness::decode_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| patronload::harness::decode_parse(data));
