#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recur_fuzz::checkpoint(data));
