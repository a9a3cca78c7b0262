//! Fuzzes the image path: bytes in, `Preprocessor::prepare` → a prepared
//! image that keeps its plan's promises, or a typed error. See `src/check.rs`.
#![no_main]

#[path = "../src/check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
