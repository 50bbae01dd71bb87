//! Service discoveries promshard does not handle yet. The parser accepts
//! every `*_sd_configs` key of Prometheus 2.42 (see
//! [`UNSUPPORTED_SD_CONFIGS`]); loading fails here, in one place, when a
//! job uses one. Supporting one means giving it a typed field in
//! `raw.rs`/`ScrapeConfig` and removing it from the macro list there.

pub use super::raw::UNSUPPORTED_SD_CONFIGS;

use super::PassThrough;

/// The message for a job that uses an unsupported discovery, or `None`
/// when the key's list is empty (nothing to discover, nothing lost).
pub fn unsupported_sd_message(job: &str, key: &str, value: &PassThrough) -> Option<String> {
    let empty = match &value.0 {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return None;
    }
    Some(format!(
        "scrape config with job name {job:?} uses {key}, which promshard does not support yet \
         (supported: static_configs, file_sd_configs)"
    ))
}
