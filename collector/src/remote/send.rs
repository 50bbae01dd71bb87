//! One POST to the receiver and the retry policy around it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use promshard_promlib::config::RemoteWriteConfig;
use promshard_promlib::scrape::{HttpClient, PlainPoster, error_chain, redact_url, user_agent};
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
    USER_AGENT,
};
use tokio::sync::watch;

use super::error::RemoteError;
use super::stats::RemoteStats;

/// The remote write protocol version header.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// The version promshard speaks.
pub const VERSION: &str = "0.1.0";

/// A Retry-After longer than this is capped (a bad receiver must not park
/// a shard for hours).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The result of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// 2xx.
    Delivered,
    /// Network error, timeout, 5xx or 429: send the same body again,
    /// after `after` when the receiver said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Any other status: the body is never accepted; drop it.
    Rejected { status: u16, reason: String },
}

/// The receiver of one `remote_write` entry.
#[derive(Debug)]
pub(crate) struct Endpoint {
    client: HttpClient,
    url: reqwest::Url,
    /// The URL as logs and errors show it (password redacted).
    pub shown: String,
    headers: HeaderMap,
    timeout: Duration,
    /// The fast path for a plain `http://` URL without a proxy.
    plain: Option<PlainPoster>,
    follow_redirects: bool,
}

impl Endpoint {
    pub(crate) fn new(
        cfg: &RemoteWriteConfig,
        remote: &str,
        base_dir: &Path,
    ) -> Result<Endpoint, RemoteError> {
        let shown = redact_url(&cfg.url);
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| RemoteError::Url {
            remote: remote.to_string(),
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let client =
            HttpClient::new(&cfg.http, base_dir).map_err(|source| RemoteError::Client {
                remote: remote.to_string(),
                source,
            })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let bad = |reason: String| RemoteError::Header {
                remote: remote.to_string(),
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
            headers.insert(n, v);
        }
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
        let ua = HeaderValue::from_str(&user_agent()).map_err(|e| RemoteError::Header {
            remote: remote.to_string(),
            name: "User-Agent".to_string(),
            reason: e.to_string(),
        })?;
        headers.insert(USER_AGENT, ua);
        let plain = PlainPoster::new(&cfg.url, &shown, &cfg.http);
        Ok(Endpoint {
            client,
            url,
            shown,
            headers,
            timeout: Duration::from_millis(cfg.remote_timeout.as_millis()),
            plain,
            follow_redirects: cfg.http.follow_redirects,
        })
    }

    /// One POST of `body`, bounded by `remote_timeout`: on the fast path
    /// when the URL allows it, through reqwest otherwise and to follow a
    /// redirect.
    pub(crate) async fn post(&self, body: bytes::Bytes) -> Attempt {
        let auth = match self.client.authorization(&self.shown).await {
            Ok(auth) => auth,
            // An unreadable credentials file may be fixed: retry.
            Err(e) => return retry(e.to_string()),
        };
        if let Some(plain) = &self.plain {
            let post = plain.post(&self.headers, auth.as_ref(), body.clone());
            let resp = match tokio::time::timeout(self.timeout, post).await {
                Err(_) => return self.timed_out(),
                Ok(Err(e)) => return retry(e.to_string()),
                Ok(Ok(r)) => r,
            };
            let redirect = self.follow_redirects
                && resp.status.is_redirection()
                && resp.headers.contains_key(reqwest::header::LOCATION);
            if !redirect {
                let text = String::from_utf8_lossy(&resp.body);
                return answer(resp.status, resp.headers.get(RETRY_AFTER), &text);
            }
        }
        self.post_reqwest(body, auth).await
    }

    async fn post_reqwest(&self, body: bytes::Bytes, auth: Option<HeaderValue>) -> Attempt {
        let mut req = self
            .client
            .client()
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body);
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        let resp = match tokio::time::timeout(self.timeout, req.send()).await {
            Err(_) => return self.timed_out(),
            Ok(Err(e)) => return retry(error_chain(&e.without_url())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let retry_after = resp.headers().get(RETRY_AFTER).cloned();
        // Read a little of the body for the log line; bounded in time.
        let text = tokio::time::timeout(self.timeout, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        answer(status, retry_after.as_ref(), &text)
    }

    fn timed_out(&self) -> Attempt {
        retry(format!("timeout after {:?}", self.timeout))
    }
}

/// Try again after the backoff.
fn retry(reason: String) -> Attempt {
    Attempt::Retry {
        after: None,
        reason,
    }
}

/// The attempt a response makes: its status, `Retry-After`, and the start
/// of its body for the log line.
fn answer(status: StatusCode, retry_after: Option<&HeaderValue>, text: &str) -> Attempt {
    let retry_after = retry_after
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut reason = format!("HTTP {}", status.as_u16());
    let snippet: String = text.trim().chars().take(256).collect();
    if !snippet.is_empty() {
        reason = format!("{reason}: {snippet}");
    }
    classify(status, retry_after, reason)
}

fn classify(status: StatusCode, retry_after: Option<Duration>, reason: String) -> Attempt {
    if status.is_success() {
        return Attempt::Delivered;
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let after = if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE
        {
            retry_after
        } else {
            None
        };
        return Attempt::Retry { after, reason };
    }
    Attempt::Rejected {
        status: status.as_u16(),
        reason,
    }
}

/// `Retry-After`: delay seconds or an HTTP date (RFC 9110), relative to
/// `now`; a date in the past means "now". Capped at [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Resolves once `cancel` is true (or its sender is gone). Holds no
/// borrow of the value across awaits, so futures using it stay `Send`.
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// Backoff bounds of the retry loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

/// How a body ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Rejected,
    /// Shutdown cancelled the retries.
    Cancelled,
}

/// Sends `body` until the receiver takes it, rejects it, or `cancel`
/// turns true. Retries back off exponentially from `min` to `max`, or
/// wait the receiver's `Retry-After`. `samples` is the count for the
/// retried counter (0 for metadata).
pub(crate) async fn send_with_retry(
    ep: &Endpoint,
    body: bytes::Bytes,
    backoff: Backoff,
    samples: u64,
    stats: &RemoteStats,
    cancel: &mut watch::Receiver<bool>,
) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let mut delay = backoff.min;
    let mut retrying = false;
    let outcome = loop {
        if *cancel.borrow() {
            break Outcome::Cancelled;
        }
        stats.bytes_sent.fetch_add(body.len() as u64, Relaxed);
        let attempt = tokio::select! {
            a = ep.post(body.clone()) => a,
            _ = cancelled(cancel) => break Outcome::Cancelled,
        };
        match attempt {
            Attempt::Delivered => break Outcome::Delivered,
            Attempt::Rejected { status, reason } => {
                stats.failed_requests.fetch_add(1, Relaxed);
                tracing::error!(url = %ep.shown, status, %reason, "remote write rejected; batch dropped");
                break Outcome::Rejected;
            }
            Attempt::Retry { after, reason } => {
                stats.failed_requests.fetch_add(1, Relaxed);
                stats.samples_retried.fetch_add(samples, Relaxed);
                if !retrying {
                    retrying = true;
                    stats.retrying_shards.fetch_add(1, Relaxed);
                }
                let wait = after.unwrap_or(delay);
                tracing::warn!(url = %ep.shown, %reason, ?wait, "remote write failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancelled(cancel) => break Outcome::Cancelled,
                }
                delay = (delay * 2).min(backoff.max).max(backoff.min);
            }
        }
    };
    if retrying {
        stats.retrying_shards.fetch_sub(1, Relaxed);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn statuses_are_classified_like_prometheus() {
        let r = |s: u16, ra: Option<Duration>| {
            classify(StatusCode::from_u16(s).unwrap(), ra, String::new())
        };
        assert_eq!(r(204, None), Attempt::Delivered);
        assert!(matches!(r(500, None), Attempt::Retry { .. }));
        assert!(matches!(
            r(429, Some(Duration::from_secs(2))),
            Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        // Retry-After only counts on 429 and 503.
        assert!(matches!(
            r(502, Some(Duration::from_secs(2))),
            Attempt::Retry { after: None, .. }
        ));
        assert!(matches!(
            r(400, None),
            Attempt::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            r(404, None),
            Attempt::Rejected { status: 404, .. }
        ));
    }
}
