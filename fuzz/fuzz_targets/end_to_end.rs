//! Fuzz target: see `patronload::harness::end_to_end`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    patronload::harness::end_to_end(data);
});
