#![no_main]
//! Fuzzes the exposition parsers (filled in by the parser work).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
