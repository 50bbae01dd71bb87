//! A remote write 1.0 receiver that keeps every sample it accepts.
//!
//! Requests are checked with loadtest's sink decoder (headers, snappy
//! block format, protobuf, sorted / unique / non-empty labels, `__name__`);
//! a request that breaks a rule is answered 400 and counted in
//! [`Capture::rejected`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use promshard_loadtest::sink::decode;

use super::runtime;

/// A series: its labels, sorted by name as received.
pub type Labels = Vec<(String, String)>;

/// Every sample received: series -> `(timestamp ms, value bits)` in
/// arrival order.
pub type Samples = BTreeMap<Labels, Vec<(i64, u64)>>;

/// The values of `samples` in order, staleness markers left out.
pub fn values(samples: &[(i64, u64)]) -> Vec<f64> {
    samples
        .iter()
        .filter(|(_, b)| *b != super::STALE_NAN_BITS)
        .map(|(_, b)| f64::from_bits(*b))
        .collect()
}

#[derive(Debug, Default)]
struct Inner {
    samples: Samples,
    /// Answer this status (without recording) instead of accepting.
    fail_with: Option<u16>,
    /// `Retry-After` seconds sent with a `fail_with` status.
    retry_after: Option<u64>,
    /// When each write request arrived, with the status answered.
    log: Vec<(std::time::Instant, u16)>,
    requests: u64,
    accepted: u64,
    refused: u64,
    rejected: Vec<String>,
}

/// A running receiver; stops when dropped.
pub struct Capture {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Binds 127.0.0.1:0 and accepts writes.
    pub fn start() -> Capture {
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind capture receiver");
        Self::serve(listener)
    }

    /// Binds exactly `addr` (to come back on a known port).
    pub fn start_on(addr: SocketAddr) -> Capture {
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind capture receiver on its old port");
        Self::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Capture {
        let addr = listener.local_addr().expect("capture addr");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(write))
            .with_state(inner.clone());
        let task = runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Capture { addr, inner, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api/v1/write`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Answer `status` to every write from now on (`None`: accept again).
    pub fn fail_with(&self, status: Option<u16>) {
        let mut g = self.inner.lock().unwrap();
        g.fail_with = status;
        g.retry_after = None;
    }

    /// Answer `status` with `Retry-After: secs` from now on.
    pub fn fail_with_retry_after(&self, status: u16, secs: u64) {
        let mut g = self.inner.lock().unwrap();
        g.fail_with = Some(status);
        g.retry_after = Some(secs);
    }

    /// Arrival time and answered status of every write request.
    pub fn request_log(&self) -> Vec<(std::time::Instant, u16)> {
        self.inner.lock().unwrap().log.clone()
    }

    /// A copy of everything accepted so far.
    pub fn snapshot(&self) -> Samples {
        self.inner.lock().unwrap().samples.clone()
    }

    /// Requests answered 400 by the rule checks, with the reason.
    pub fn rejected(&self) -> Vec<String> {
        self.inner.lock().unwrap().rejected.clone()
    }

    /// Write requests seen (accepted, refused by `fail_with`, rejected).
    pub fn requests(&self) -> u64 {
        self.inner.lock().unwrap().requests
    }

    /// Requests refused by `fail_with`.
    pub fn refused(&self) -> u64 {
        self.inner.lock().unwrap().refused
    }

    /// Samples of series whose labels include all `matchers` (name, value).
    pub fn select(&self, matchers: &[(&str, &str)]) -> Samples {
        select(&self.inner.lock().unwrap().samples, matchers)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The series of `samples` whose labels include every `(name, value)`.
pub fn select(samples: &Samples, matchers: &[(&str, &str)]) -> Samples {
    samples
        .iter()
        .filter(|(labels, _)| {
            matchers
                .iter()
                .all(|(n, v)| labels.iter().any(|(ln, lv)| ln == n && lv == v))
        })
        .map(|(l, s)| (l.clone(), s.clone()))
        .collect()
}

/// The value of label `name` in `labels`.
pub fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn write(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mut g = inner.lock().unwrap();
        g.requests += 1;
        if let Some(code) = g.fail_with {
            g.refused += 1;
            g.log.push((std::time::Instant::now(), code));
            let mut resp = StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
            if let Some(secs) = g.retry_after {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs),
                );
            }
            return resp;
        }
        g.log.push((std::time::Instant::now(), 204));
    }
    let checked = decode::check_headers(&headers)
        .and_then(|()| decode::decode_body(&body))
        .and_then(|req| decode::check_labels(&req).map(|()| req));
    let req = match checked {
        Ok(r) => r,
        Err(e) => {
            inner.lock().unwrap().rejected.push(e.to_string());
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let mut g = inner.lock().unwrap();
    g.accepted += 1;
    for ts in req.timeseries {
        let labels: Labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let entry = g.samples.entry(labels).or_default();
        entry.extend(ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())));
    }
    StatusCode::NO_CONTENT.into_response()
}
