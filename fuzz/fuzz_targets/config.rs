#![no_main]
//! Fuzzes the config loader: any text gives a config or an error, no panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = promshard_promlib::config::load_str(text, "fuzz.yml");
    }
});
