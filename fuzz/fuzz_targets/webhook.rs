//! Fuzzes `scopegate::fuzz_api::webhook` (its doc says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scopegate::fuzz_api::webhook(data));
