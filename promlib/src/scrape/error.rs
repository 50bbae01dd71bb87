//! Errors of building a scrape client and of one scrape. Messages follow
//! Prometheus' wording where the targets page shows them; every variant
//! carries the URL (with any password replaced by `xxxxx`, as Go's
//! `url.Redacted` does), never a secret.

use std::path::PathBuf;

/// A job's HTTP client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unable to read {what} {path:?}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what} in {origin}: {reason}")]
    InvalidPem {
        what: &'static str,
        /// `ca`, `cert`, `key` (inline) or the file path.
        origin: String,
        reason: String,
    },
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("invalid proxy_url {url:?}: {reason}")]
    Proxy { url: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// One scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL cannot be requested at all.
    #[error("invalid scrape URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A `*_file` credential could not be read at scrape time.
    #[error("Get {url:?}: unable to read {what} file {path:?}: {reason}")]
    CredentialsFile {
        url: String,
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The oauth2 token could not be had.
    #[error("Get {url:?}: oauth2: {reason}")]
    OAuth2 { url: String, reason: String },
    /// Connecting, TLS, sending, or reading the response failed.
    #[error("Get {url:?}: {reason}")]
    Request { url: String, reason: String },
    /// The scrape timeout expired (whole request, body included).
    #[error("Get {url:?}: context deadline exceeded")]
    Timeout { url: String },
    /// A status other than 200 (Prometheus' exact wording).
    #[error("server returned HTTP status {status}")]
    Status {
        url: String,
        code: u16,
        /// `500 Internal Server Error`.
        status: String,
    },
    /// The decompressed body reached `body_size_limit` (Prometheus' wording).
    #[error("body size limit exceeded")]
    BodySizeLimit { url: String, limit: u64 },
}

impl ScrapeError {
    /// A response with `status` (not 200) from `url` (already redacted),
    /// worded as Prometheus does (`500 Internal Server Error`).
    pub fn status(url: &str, status: reqwest::StatusCode) -> ScrapeError {
        let text = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_str()),
            None => status.as_str().to_string(),
        };
        ScrapeError::Status {
            url: url.to_string(),
            code: status.as_u16(),
            status: text,
        }
    }

    /// The scraped URL, password redacted.
    pub fn url(&self) -> &str {
        match self {
            ScrapeError::InvalidUrl { url, .. }
            | ScrapeError::CredentialsFile { url, .. }
            | ScrapeError::Request { url, .. }
            | ScrapeError::OAuth2 { url, .. }
            | ScrapeError::Timeout { url }
            | ScrapeError::Status { url, .. }
            | ScrapeError::BodySizeLimit { url, .. } => url,
        }
    }
}

/// The URL as errors show it: a password in the userinfo becomes `xxxxx`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("xxxxx"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The chain of an error's causes, `a: b: c`, so a transport error says
/// what went wrong (reqwest's top-level message alone is vague).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("http://u:hunter2@h:9/metrics"),
            "http://u:xxxxx@h:9/metrics"
        );
        assert_eq!(redact_url("http://h:9/metrics"), "http://h:9/metrics");
    }

    #[test]
    fn status_wording_is_prometheus() {
        let e = ScrapeError::Status {
            url: "http://h/metrics".into(),
            code: 500,
            status: "500 Internal Server Error".into(),
        };
        assert_eq!(
            e.to_string(),
            "server returned HTTP status 500 Internal Server Error"
        );
        assert_eq!(e.url(), "http://h/metrics");
    }
}
