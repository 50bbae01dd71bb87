//! `http_sd_configs`: target groups from an HTTP endpoint, as Prometheus
//! 2.42's `discovery/http` fetches them.
//!
//! - `GET url` with `Accept: application/json`, `User-Agent` and
//!   `X-Prometheus-Refresh-Interval-Seconds`; the whole request is bounded
//!   by the refresh interval (Prometheus' client timeout) and the body by
//!   [`MAX_BODY_BYTES`].
//! - Only a 200 with `Content-Type: application/json` (optionally
//!   `; charset=utf-8`) and a JSON list of `{targets, labels}` is accepted;
//!   anything else is an error and the caller keeps the previous groups.
//! - Group `i` gets the source `URL:i` and the label `__meta_url=URL`; a
//!   list shorter than the previous good one yields empty groups for the
//!   vanished sources.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};

use super::TargetGroup;
use super::file_sd::{self, FileGroup};
use crate::config::HttpSdConfig;
use crate::scrape::{ClientError, HttpClient, error_chain, format_timeout_seconds, redact_url};

/// The label every http_sd target carries: the URL it came from.
pub const URL_LABEL: &str = "__meta_url";
/// The header telling the endpoint how often it is asked.
pub const REFRESH_HEADER: &str = "X-Prometheus-Refresh-Interval-Seconds";
/// The largest response body accepted.
pub const MAX_BODY_BYTES: usize = 10 << 20;

/// One failed refresh (or a client that cannot be built). The URL is
/// shown with any password replaced by `xxxxx`.
#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    #[error("http_sd {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: ClientError,
    },
    #[error("http_sd {url}: invalid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("http_sd {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("http_sd {url}: request timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("http_sd {url}: server returned HTTP status {status}")]
    Status { url: String, status: String },
    #[error("http_sd {url}: unsupported content type {content_type:?}")]
    ContentType { url: String, content_type: String },
    #[error("http_sd {url}: response body larger than {limit} bytes")]
    BodyTooLarge { url: String, limit: usize },
    #[error("http_sd {url}: invalid JSON target groups: {message}")]
    Json { url: String, message: String },
    #[error("http_sd {url}: nil target group item found (index {index})")]
    NilGroup { url: String, index: usize },
}

/// Whether a `Content-Type` is what Prometheus accepts:
/// `^(?i:application/json(;\s*charset=("utf-8"|utf-8))?)$` after trimming.
fn is_json_content_type(ct: &str) -> bool {
    let ct = ct.trim();
    let lower = ct.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("application/json") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix(';') else {
        return false;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    matches!(rest, "charset=utf-8" | "charset=\"utf-8\"")
}

/// The source of the `index`-th group of `url`.
pub fn source_name(url: &str, index: usize) -> String {
    file_sd::source_name(url, index)
}

/// Parses a response body of `url` into groups with sources and `__meta_url`.
pub fn parse_groups(url: &str, body: &[u8]) -> Result<Vec<TargetGroup>, HttpSdError> {
    let raw: Vec<Option<FileGroup>> =
        serde_json::from_slice(body).map_err(|e| HttpSdError::Json {
            url: redact_url(url),
            message: e.to_string(),
        })?;
    file_sd::groups_of(raw, url, URL_LABEL).map_err(|index| HttpSdError::NilGroup {
        url: redact_url(url),
        index,
    })
}

/// The state of one `http_sd_configs` entry between refreshes.
#[derive(Debug)]
pub struct HttpSd {
    url: String,
    shown: String,
    client: HttpClient,
    refresh_interval: Duration,
    /// How many groups the last good response had.
    last_len: usize,
}

impl HttpSd {
    /// Builds the client; relative `*_file` paths resolve against
    /// `base_dir` (already done by `config::load_file`: pass `""`).
    pub fn new(cfg: &HttpSdConfig, base_dir: &Path) -> Result<Self, HttpSdError> {
        let shown = redact_url(&cfg.url);
        reqwest::Url::parse(&cfg.url).map_err(|e| HttpSdError::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let client =
            HttpClient::new(&cfg.http, base_dir).map_err(|source| HttpSdError::Client {
                url: shown.clone(),
                source,
            })?;
        Ok(HttpSd {
            url: cfg.url.clone(),
            shown,
            client,
            refresh_interval: cfg.refresh_interval.to_std().max(Duration::from_millis(1)),
            last_len: 0,
        })
    }

    /// The URL as written in the config.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// Fetches the groups once. On success returns every group of the
    /// response plus empty groups for sources of the previous good
    /// response that are gone; on error nothing changes.
    pub async fn refresh(&mut self) -> Result<Vec<TargetGroup>, HttpSdError> {
        let timeout = self.refresh_interval;
        let body = match tokio::time::timeout(timeout, self.fetch()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(HttpSdError::Timeout {
                    url: self.shown.clone(),
                    timeout,
                });
            }
        };
        let mut groups = parse_groups(&self.url, &body)?;
        let now = groups.len();
        for i in now..self.last_len {
            groups.push(TargetGroup::empty(source_name(&self.url, i)));
        }
        self.last_len = now;
        Ok(groups)
    }

    async fn fetch(&self) -> Result<Vec<u8>, HttpSdError> {
        let request_err = |e: &dyn std::error::Error| HttpSdError::Request {
            url: self.shown.clone(),
            reason: error_chain(e),
        };
        let mut req = self
            .client
            .client()
            .get(&self.url)
            .header(USER_AGENT, crate::scrape::user_agent())
            .header(ACCEPT, "application/json")
            .header(
                REFRESH_HEADER,
                format_timeout_seconds(self.refresh_interval),
            );
        if let Some(auth) = self
            .client
            .authorization(&self.shown)
            .await
            .map_err(|e| request_err(&e))?
        {
            req = req.header(AUTHORIZATION, auth);
        }
        let mut resp = req.send().await.map_err(|e| request_err(&e))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            let text = match status.canonical_reason() {
                Some(reason) => format!("{} {reason}", status.as_str()),
                None => status.as_str().to_string(),
            };
            return Err(HttpSdError::Status {
                url: self.shown.clone(),
                status: text,
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_json_content_type(&content_type) {
            return Err(HttpSdError::ContentType {
                url: self.shown.clone(),
                content_type,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| request_err(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HttpSdError::BodyTooLarge {
                    url: self.shown.clone(),
                    limit: MAX_BODY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_like_prometheus() {
        for ok in [
            "application/json",
            " Application/JSON ",
            "application/json; charset=utf-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn groups_get_sources_and_url_label() {
        let g = parse_groups(
            "http://sd:1/t",
            br#"[{"targets":["a:1"],"labels":{"x":"1"}},{"targets":null}]"#,
        )
        .unwrap();
        assert_eq!(g[0].source, "http://sd:1/t:0");
        assert_eq!(g[1].source, "http://sd:1/t:1");
        assert_eq!(g[0].labels.get(URL_LABEL), Some("http://sd:1/t"));
        assert_eq!(g[1].labels.get(URL_LABEL), Some("http://sd:1/t"));
        assert!(g[1].targets.is_empty());
        let e = parse_groups("http://sd:1/t", b"[null]").unwrap_err();
        assert!(matches!(e, HttpSdError::NilGroup { index: 0, .. }), "{e}");
        let e = parse_groups("http://u:pw@sd:1/t", br#"[{"bogus":1}]"#).unwrap_err();
        assert!(
            e.to_string().contains("bogus") && !e.to_string().contains("pw"),
            "{e}"
        );
    }
}
