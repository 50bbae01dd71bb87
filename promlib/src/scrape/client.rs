//! [`ScrapeClient`]: one job's HTTP client and the scrape of one URL.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, HeaderValue, USER_AGENT};

use crate::config::{HttpClientConfig, ScrapeConfig};

use super::auth::AuthSource;
use super::error::{ClientError, ScrapeError, error_chain, redact_url};
use super::headers::{
    ACCEPT_ENCODING_HEADER, ACCEPT_HEADER, TIMEOUT_HEADER, content_type, format_timeout_seconds,
    user_agent,
};
use super::plain::{PlainOutcome, PlainPool, PlainTarget, ScrapeHeaders, ScrapeRules};
use super::tls;

/// Redirects Go's `http.Client` follows before giving up.
const MAX_REDIRECTS: usize = 10;

/// The most memory reserved up front from a `Content-Length` hint; the
/// buffer still grows past it as the body arrives (up to the limit).
pub(super) const MAX_PREALLOCATION: u64 = 16 << 20;

/// One job's scrape client: built once from the job's `HttpClientConfig`,
/// shared by all its targets (it is cheap to clone and `Send + Sync`).
#[derive(Clone, Debug)]
pub struct ScrapeClient {
    http: HttpClient,
    /// 0 = no limit.
    body_size_limit: u64,
    user_agent: String,
    /// `user_agent` as a header value (the fast path sends it as is).
    user_agent_header: HeaderValue,
    follow_redirects: bool,
    /// The fast path for plain `http://` URLs; `None` with a proxy, which
    /// only reqwest speaks to.
    plain: Option<Arc<PlainPool>>,
}

/// A successful scrape.
#[derive(Clone, Debug)]
pub struct ScrapeResponse {
    /// The decompressed body.
    pub body: Bytes,
    /// The `Content-Type` header ("" when absent), for
    /// `exposition::Format::from_content_type`.
    pub content_type: String,
    /// From sending the request to the end of the body.
    pub duration: Duration,
    /// Decompressed body size in bytes (`body.len()`).
    pub body_size: usize,
}

impl ScrapeClient {
    /// The client of a scrape job. Relative `*_file` paths are resolved
    /// against `base_dir` (the directory of the config file).
    pub fn new(cfg: &ScrapeConfig, base_dir: &Path) -> Result<Self, ClientError> {
        let limit = cfg.body_size_limit.map(|b| b.0).unwrap_or(0);
        Self::from_http_config(&cfg.http, base_dir, limit)
    }

    /// The client for explicit HTTP settings; `body_size_limit` 0 = none.
    pub fn from_http_config(
        http: &HttpClientConfig,
        base_dir: &Path,
        body_size_limit: u64,
    ) -> Result<Self, ClientError> {
        let ua = user_agent();
        let user_agent_header = HeaderValue::try_from(ua.as_str())
            .map_err(|e| ClientError::Build(format!("user agent {ua:?}: {e}")))?;
        Ok(ScrapeClient {
            http: HttpClient::new(http, base_dir)?,
            body_size_limit,
            user_agent: ua,
            user_agent_header,
            follow_redirects: http.follow_redirects,
            plain: (!has_proxy(http)).then(|| Arc::new(PlainPool::new())),
        })
    }

    /// The body size limit in bytes (0 = none).
    pub fn body_size_limit(&self) -> u64 {
        self.body_size_limit
    }
}

/// A target URL prepared once for many scrapes: its redacted form (for
/// errors) and, for a plain `http://` URL, the fast path's parsed target.
#[derive(Debug)]
pub struct ScrapeUrl {
    url: String,
    shown: String,
    plain: Option<PlainTarget>,
}

impl ScrapeUrl {
    pub fn new(url: &str) -> ScrapeUrl {
        ScrapeUrl {
            url: url.to_string(),
            shown: redact_url(url),
            plain: PlainTarget::parse(url),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// Whether `http` names a proxy (unset or "" = none): the plain-HTTP fast
/// paths do not apply then.
pub(super) fn has_proxy(http: &HttpClientConfig) -> bool {
    http.proxy_url.as_deref().is_some_and(|p| !p.is_empty())
}

/// Builds `builder` with `proxy_url` (unset or "" = none) as its only
/// proxy: Prometheus reads no proxy from the environment. Shared by the
/// scrape/remote write client and the oauth2 token client.
pub(super) fn build_with_proxy(
    builder: reqwest::ClientBuilder,
    proxy_url: Option<&str>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = builder.no_proxy();
    if let Some(proxy_url) = proxy_url.filter(|s| !s.is_empty()) {
        let proxy = reqwest::Proxy::all(proxy_url).map_err(|e| ClientError::Proxy {
            url: redact_url(proxy_url),
            reason: error_chain(&e),
        })?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| ClientError::Build(error_chain(&e)))
}

/// An HTTP client built from an `HttpClientConfig` as Prometheus' common
/// config builds one: TLS (rustls + aws-lc-rs), proxy, redirects, HTTP/2,
/// and the credentials (oauth2, basic, bearer, authorization; `*_file`
/// re-read per request). Scrapes and remote write both use it.
#[derive(Clone, Debug)]
pub struct HttpClient {
    http: reqwest::Client,
    auth: AuthSource,
}

impl HttpClient {
    /// Relative `*_file` paths are resolved against `base_dir`.
    pub fn new(http: &HttpClientConfig, base_dir: &Path) -> Result<Self, ClientError> {
        let tls = tls::client_config(&http.tls_config, base_dir, http.enable_http2)?;
        let redirect = if http.follow_redirects {
            reqwest::redirect::Policy::limited(MAX_REDIRECTS)
        } else {
            reqwest::redirect::Policy::none()
        };
        let mut builder = reqwest::Client::builder()
            .redirect(redirect)
            .tls_backend_preconfigured(tls)
            // Go writes canonical header names; some exporters compare
            // names case-sensitively.
            .http1_title_case_headers()
            .gzip(true);
        if !http.enable_http2 {
            builder = builder.http1_only();
        }
        Ok(HttpClient {
            http: build_with_proxy(builder, http.proxy_url.as_deref())?,
            auth: AuthSource::from_config(http, base_dir)?,
        })
    }

    /// The underlying client (TLS, proxy, redirects, HTTP/2 as configured).
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The `Authorization` header for one request to `url` (already
    /// redacted, for error messages), reading `*_file` credentials now so
    /// that rotated secrets take effect.
    pub async fn authorization(&self, url: &str) -> Result<Option<HeaderValue>, ScrapeError> {
        self.auth.header(url).await
    }
}

impl ScrapeClient {
    /// Scrapes `url` once; `timeout` bounds the whole request, body included.
    pub async fn scrape(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<ScrapeResponse, ScrapeError> {
        let mut buf = BytesMut::new();
        self.scrape_into(&ScrapeUrl::new(url), timeout, &mut buf)
            .await
    }

    /// As [`scrape`](Self::scrape), for a URL prepared once for many
    /// scrapes, reading into `buf`: once the returned body is dropped, the
    /// next scrape into the same `buf` reuses its allocation. `buf` is
    /// cleared first.
    pub async fn scrape_into(
        &self,
        url: &ScrapeUrl,
        timeout: Duration,
        buf: &mut BytesMut,
    ) -> Result<ScrapeResponse, ScrapeError> {
        let shown = url.shown.as_str();
        let start = Instant::now();
        buf.clear();
        let outcome = tokio::time::timeout(timeout, self.fetch(url, timeout, buf)).await;
        match outcome {
            Err(_elapsed) => {
                buf.clear();
                Err(ScrapeError::Timeout {
                    url: shown.to_string(),
                })
            }
            Ok(Err(e)) => {
                buf.clear();
                Err(e)
            }
            Ok(Ok(content_type)) => {
                let body = buf.split().freeze();
                Ok(ScrapeResponse {
                    body_size: body.len(),
                    body,
                    content_type,
                    duration: start.elapsed(),
                })
            }
        }
    }

    /// Sends the request and reads the body into `buf`; returns the
    /// Content-Type. Plain `http://` URLs take the fast path unless it
    /// meets a redirect to follow; everything else goes through reqwest.
    async fn fetch(
        &self,
        url: &ScrapeUrl,
        timeout: Duration,
        buf: &mut BytesMut,
    ) -> Result<String, ScrapeError> {
        let shown = url.shown.as_str();
        if let Some(pool) = &self.plain
            && let Some(target) = &url.plain
        {
            let timeout_seconds =
                HeaderValue::try_from(format_timeout_seconds(timeout)).map_err(|e| {
                    ScrapeError::InvalidUrl {
                        url: shown.to_string(),
                        reason: format!("scrape timeout header: {e}"),
                    }
                })?;
            let headers = ScrapeHeaders {
                user_agent: &self.user_agent_header,
                timeout_seconds,
                authorization: self.http.authorization(shown).await?,
            };
            let rules = ScrapeRules {
                shown,
                body_size_limit: self.body_size_limit,
                follow_redirects: self.follow_redirects,
            };
            match pool.fetch(target, &headers, &rules, buf).await? {
                PlainOutcome::Done(content_type) => return Ok(content_type),
                PlainOutcome::Redirect => buf.clear(),
            }
        }
        self.fetch_reqwest(&url.url, shown, timeout, buf).await
    }

    /// The reqwest path: https, proxies, redirects, userinfo.
    async fn fetch_reqwest(
        &self,
        url: &str,
        shown: &str,
        timeout: Duration,
        buf: &mut BytesMut,
    ) -> Result<String, ScrapeError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ScrapeError::InvalidUrl {
            url: shown.to_string(),
            reason: e.to_string(),
        })?;
        let mut req = self
            .http
            .client()
            .get(parsed)
            .header(USER_AGENT, &self.user_agent)
            .header(ACCEPT, ACCEPT_HEADER)
            .header(ACCEPT_ENCODING, ACCEPT_ENCODING_HEADER)
            .header(TIMEOUT_HEADER, format_timeout_seconds(timeout));
        if let Some(auth) = self.http.authorization(shown).await? {
            req = req.header(AUTHORIZATION, auth);
        }
        let mut resp = req.send().await.map_err(|e| request_error(shown, e))?;

        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(ScrapeError::status(shown, status));
        }
        let content_type = content_type(resp.headers());

        let limit = self.body_size_limit;
        // Content-Length is absent for gzip, which reqwest decodes.
        reserve_for_body(buf, resp.content_length(), limit);
        while let Some(chunk) = resp.chunk().await.map_err(|e| request_error(shown, e))? {
            if reaches_limit(limit, buf.len() as u64 + chunk.len() as u64) {
                return Err(ScrapeError::BodySizeLimit {
                    url: shown.to_string(),
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(content_type)
    }
}

/// Reserves room in `buf` for a body announced as `hint` bytes
/// (Content-Length), never trusted past the limit or MAX_PREALLOCATION.
pub(super) fn reserve_for_body(buf: &mut BytesMut, hint: Option<u64>, limit: u64) {
    if let Some(hint) = hint {
        let mut hint = hint.min(MAX_PREALLOCATION);
        if limit > 0 {
            hint = hint.min(limit);
        }
        buf.reserve(usize::try_from(hint).unwrap_or(0));
    }
}

/// Whether a body of `total` bytes fails `limit` (0: none). Prometheus
/// reads at most `limit` bytes and fails when it got them all, so a body
/// of exactly `limit` bytes fails too.
pub(super) fn reaches_limit(limit: u64, total: u64) -> bool {
    limit > 0 && total >= limit
}

fn request_error(shown: &str, e: reqwest::Error) -> ScrapeError {
    // reqwest puts the URL into its own message; drop it (it may carry a
    // password) and keep the causes.
    let e = e.without_url();
    ScrapeError::Request {
        url: shown.to_string(),
        reason: error_chain(&e),
    }
}
