//! The request headers of a Prometheus 2.42 scrape.

/// `Accept` as Prometheus 2.42 sends it (verified against the real binary).
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `Accept-Encoding` as Prometheus sends it.
pub const ACCEPT_ENCODING_HEADER: &str = "gzip";

/// The header that tells the target how long the scrape may take.
pub const TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// `User-Agent`: `promshard/<crate version>`.
pub fn user_agent() -> String {
    format!("promshard/{}", env!("CARGO_PKG_VERSION"))
}

/// Seconds as Go's `strconv.FormatFloat(s, 'f', -1, 64)`: the shortest
/// decimal that round-trips, never an exponent (`10`, `1.5`, `0.001`).
/// Rust's `Display` for `f64` has the same contract.
pub fn format_timeout_seconds(timeout: std::time::Duration) -> String {
    format!("{}", timeout.as_secs_f64())
}

/// The response's `Content-Type` ("" when absent or not text), for
/// `exposition::Format::from_content_type`.
pub(super) fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeout_seconds_like_go_format_float() {
        assert_eq!(format_timeout_seconds(Duration::from_secs(10)), "10");
        assert_eq!(format_timeout_seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(format_timeout_seconds(Duration::from_millis(1)), "0.001");
        assert_eq!(format_timeout_seconds(Duration::from_millis(0)), "0");
        assert_eq!(format_timeout_seconds(Duration::from_secs(120)), "120");
        assert_eq!(format_timeout_seconds(Duration::from_millis(100)), "0.1");
    }

    #[test]
    fn user_agent_names_promshard_and_version() {
        assert_eq!(
            user_agent(),
            format!("promshard/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
