//! Fuzzes `scopegate::fuzz_api::jwe` (its doc says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scopegate::fuzz_api::jwe(data));
