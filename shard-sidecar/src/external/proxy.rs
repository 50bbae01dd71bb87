//! The scrape proxy: the backend scrapes `/proxy/<id>` on the sidecar; the
//! proxy sends the request on to the target's real URL (scheme, address,
//! path and params from its final labels, TLS and proxy settings of its
//! job) and streams the answer back while counting its sample lines.
//!
//! Request headers forwarded: `Accept`, `Accept-Encoding`,
//! `X-Prometheus-Scrape-Timeout-Seconds`, `Authorization`, `User-Agent`.
//! The response's status and headers are forwarded unchanged, except that
//! a gzip body arrives decompressed (the job's HTTP client decodes gzip as
//! the collector's does, and then drops `Content-Encoding` and
//! `Content-Length`): counting lines needs the decompressed bytes anyway,
//! and on loopback the backend loses nothing by reading them plain. The
//! body is never held whole: each chunk is counted and passed on.
//!
//! What the proxy counts per target (the load the sidecar reports):
//! non-empty lines that are not comments, of the last complete 2xx body,
//! as both series and samples per scrape (one line is one sample of one
//! series in both exposition formats); the time from sending the request
//! to the end of the body; up/down with the reason.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use promshard_proto::v1;

/// The request headers passed on to the target.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "x-prometheus-scrape-timeout-seconds",
    "authorization",
    "user-agent",
];

/// Response headers that belong to one connection, not to the answer.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Bounds on the timeout the backend asks for.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the proxy saw of one target's scrapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeStats {
    /// Sample lines of the last complete body.
    pub series: u64,
    pub samples_per_scrape: u64,
    pub duration: Duration,
    pub health: v1::TargetHealth,
    pub last_error: String,
    pub last_scrape_unix_ms: i64,
}

/// Per-target statistics, by target id.
pub type StatsMap = Arc<Mutex<HashMap<u64, ScrapeStats>>>;

/// Where one target's scrapes go.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub id: u64,
    /// The real URL (may hold credentials in params: never logged whole).
    pub url: String,
    /// The job's client (TLS, proxy, redirects; gzip decoded).
    pub client: reqwest::Client,
    /// Used when the backend sends no timeout header.
    pub timeout: Duration,
}

/// Counts non-empty, non-comment lines of a stream of chunks.
#[derive(Clone, Debug, Default)]
pub struct LineCounter {
    lines: u64,
    /// Inside a line (its first byte was seen).
    in_line: bool,
    /// The current line counts.
    sample: bool,
}

impl LineCounter {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(&first) = chunk.first() {
            if !self.in_line {
                if first == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
                self.in_line = true;
                self.sample = !matches!(first, b'#' | b' ' | b'\t' | b'\r');
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.sample {
                        self.lines += 1;
                    }
                    self.in_line = false;
                    chunk = &chunk[i + 1..];
                }
                None => break,
            }
        }
    }

    /// The count, the last line included even without a newline.
    pub fn finish(&mut self) -> u64 {
        if self.in_line && self.sample {
            self.lines += 1;
        }
        self.in_line = false;
        self.lines
    }
}

fn record(stats: &StatsMap, id: u64, s: ScrapeStats) {
    if let Ok(mut m) = stats.lock() {
        match m.get_mut(&id) {
            // A failed scrape keeps the last known load: the target still
            // has its series when it comes back.
            Some(old) if s.health != v1::TargetHealth::Up => {
                old.health = s.health;
                old.last_error = s.last_error;
                old.duration = s.duration;
                old.last_scrape_unix_ms = s.last_scrape_unix_ms;
            }
            _ => {
                m.insert(id, s);
            }
        }
    }
}

fn down(stats: &StatsMap, id: u64, started: Instant, error: String) {
    record(
        stats,
        id,
        ScrapeStats {
            series: 0,
            samples_per_scrape: 0,
            duration: started.elapsed(),
            health: v1::TargetHealth::Down,
            last_error: error,
            last_scrape_unix_ms: crate::native::now_ms(),
        },
    );
}

fn timeout_from(headers: &HeaderMap, fallback: Duration) -> Duration {
    headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_TIMEOUT.as_secs_f64())))
        .unwrap_or(fallback)
        .max(MIN_TIMEOUT)
}

/// Scrapes `up` for the backend, whose request carried `headers`.
pub async fn forward(up: Upstream, headers: &HeaderMap, stats: StatsMap) -> Response {
    let started = Instant::now();
    let timeout = timeout_from(headers, up.timeout);
    let mut req = up.client.get(&up.url).timeout(timeout);
    for name in FORWARDED_REQUEST_HEADERS {
        for v in headers.get_all(*name) {
            req = req.header(*name, v.clone());
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let error = promshard_promlib::scrape::error_chain(&e.without_url());
            tracing::debug!(target_id = %format!("{:016x}", up.id), error = %error, "proxied scrape failed");
            down(&stats, up.id, started, error.clone());
            return (
                StatusCode::BAD_GATEWAY,
                format!("promshard sidecar: scraping the target failed: {error}\n"),
            )
                .into_response();
        }
    };
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    let counting = status.is_success();
    if !counting {
        down(
            &stats,
            up.id,
            started,
            format!("server returned HTTP status {status}"),
        );
    }
    let expected_len = resp.content_length();
    let body = Counting {
        expected_len,
        received: 0,
        inner: Box::pin(resp.bytes_stream()),
        counter: LineCounter::default(),
        counting,
        started,
        id: up.id,
        stats,
        done: !counting,
    };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            HeaderName::from_static("content-type"),
            header::HeaderValue::from_static("text/plain"),
        );
    }
    response
}

type ChunkStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The target's body on its way to the backend, counted chunk by chunk.
struct Counting {
    /// With a `Content-Length`, hyper stops polling once that many bytes
    /// went out: the scrape is complete then, not at the stream's end.
    expected_len: Option<u64>,
    received: u64,
    inner: ChunkStream,
    counter: LineCounter,
    counting: bool,
    started: Instant,
    id: u64,
    stats: StatsMap,
    /// Statistics recorded (end, error or not counted at all).
    done: bool,
}

impl Stream for Counting {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.counting {
                    this.counter.feed(&chunk);
                    this.received += chunk.len() as u64;
                    if this.expected_len == Some(this.received) {
                        this.complete();
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let error = promshard_promlib::scrape::error_chain(&e.without_url());
                if !this.done {
                    this.done = true;
                    down(&this.stats, this.id, this.started, error.clone());
                }
                Poll::Ready(Some(Err(std::io::Error::other(error))))
            }
            Poll::Ready(None) => {
                this.complete();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Counting {
    /// Records a complete body (once).
    fn complete(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let lines = self.counter.finish();
        record(
            &self.stats,
            self.id,
            ScrapeStats {
                series: lines,
                samples_per_scrape: lines,
                duration: self.started.elapsed(),
                health: v1::TargetHealth::Up,
                last_error: String::new(),
                last_scrape_unix_ms: crate::native::now_ms(),
            },
        );
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        if !self.done {
            down(
                &self.stats,
                self.id,
                self.started,
                "the backend stopped reading before the body ended (its scrape timeout?)"
                    .to_string(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> u64 {
        let mut c = LineCounter::default();
        for ch in chunks {
            c.feed(ch);
        }
        c.finish()
    }

    #[test]
    fn counts_sample_lines_across_chunk_boundaries() {
        let body = b"# HELP a x\n# TYPE a gauge\na 1\n\nb{k=\"1\"} 2\nc 3";
        assert_eq!(count(&[body]), 3);
        // Every split point gives the same count.
        for i in 0..body.len() {
            assert_eq!(count(&[&body[..i], &body[i..]]), 3, "split at {i}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(count(&bytes), 3);
        assert_eq!(count(&[b"# EOF\n"]), 0);
        assert_eq!(count(&[b"\n\n\n"]), 0);
        assert_eq!(count(&[]), 0);
    }

    #[test]
    fn timeout_header_is_used_within_bounds() {
        let mut h = HeaderMap::new();
        let fb = Duration::from_secs(3);
        assert_eq!(timeout_from(&h, fb), fb);
        h.insert(
            "x-prometheus-scrape-timeout-seconds",
            "0.5".parse().unwrap(),
        );
        assert_eq!(timeout_from(&h, fb), Duration::from_millis(500));
        h.insert("x-prometheus-scrape-timeout-seconds", "-1".parse().unwrap());
        assert_eq!(timeout_from(&h, fb), fb);
        h.insert(
            "x-prometheus-scrape-timeout-seconds",
            "1e9".parse().unwrap(),
        );
        assert_eq!(timeout_from(&h, fb), MAX_TIMEOUT);
    }
}
