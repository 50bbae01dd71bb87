//! `sink`: a remote write 1.0 receiver that checks every series.
//!
//! Routes: `POST /api/v1/write`, `GET /summary`, `GET /series?match=...&limit=N`,
//! `POST /control` (fault injection, JSON [`Fault`] or `{"clear": true}`).

pub mod decode;
pub mod matcher;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use decode::{RejectReason, Rejected, encode_request};
pub use matcher::Matcher;
pub use state::{Counts, SeriesReport, SeriesTimeline, SinkState, Summary, Timeline};

/// What to answer instead of accepting writes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    /// 400, 429, 500 or 503.
    pub status: u16,
    /// Answer this many requests so; with neither this nor a duration,
    /// until cleared.
    #[serde(default)]
    pub count: Option<u64>,
    /// Answer so for this many seconds.
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// `Retry-After` seconds (sent with 429 and 503).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

/// A fault in force.
#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    remaining: Option<u64>,
    until: Option<Instant>,
}

/// Why a sink could not start or a control request is refused.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The listener could not bind.
    #[error("sink: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fault with a status the sink does not inject.
    #[error("sink: fault status {0} is not one of 400, 429, 500, 503")]
    FaultStatus(u16),
    /// A fault with a negative or non-finite duration.
    #[error("sink: fault duration {0} s is not a finite non-negative number")]
    FaultDuration(f64),
}

/// How to run a sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Expected interval between samples of a series; `None` learns it per
    /// series (the smallest step seen).
    pub interval: Option<Duration>,
    /// Keep labels for `GET /series` (costs memory per series).
    pub record_labels: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            interval: None,
            record_labels: true,
        }
    }
}

/// Shared by the handlers.
#[derive(Debug)]
struct Shared {
    state: SinkState,
    fault: Mutex<Option<ActiveFault>>,
}

impl Shared {
    /// The status to inject for this request, if a fault is in force.
    fn take_fault(&self) -> Option<Fault> {
        let mut guard = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let active = guard.as_mut()?;
        if active.until.is_some_and(|u| Instant::now() >= u) {
            *guard = None;
            return None;
        }
        let fault = active.fault.clone();
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *guard = None;
            }
        }
        Some(fault)
    }

    fn set_fault(&self, fault: Option<Fault>) -> Result<(), SinkError> {
        let active = match fault {
            None => None,
            Some(f) => {
                if ![400, 429, 500, 503].contains(&f.status) {
                    return Err(SinkError::FaultStatus(f.status));
                }
                let until = match f.duration_secs {
                    None => None,
                    Some(d) if d.is_finite() && d >= 0.0 => {
                        Some(Instant::now() + Duration::from_secs_f64(d))
                    }
                    Some(d) => return Err(SinkError::FaultDuration(d)),
                };
                if f.count == Some(0) {
                    None
                } else {
                    Some(ActiveFault {
                        remaining: f.count,
                        until,
                        fault: f,
                    })
                }
            }
        };
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = active;
        Ok(())
    }
}

/// A running sink; dropping it stops the server.
#[derive(Debug)]
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Sink {
    /// Binds and starts serving.
    pub async fn start(config: SinkConfig) -> Result<Sink, SinkError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SinkError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| SinkError::Bind {
            addr: config.listen,
            source,
        })?;
        let interval_ms = config
            .interval
            .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        let shared = Arc::new(Shared {
            state: SinkState::new(interval_ms, config.record_labels),
            fault: Mutex::new(None),
        });
        let router = Router::new()
            .route("/api/v1/write", post(write))
            .route("/summary", get(summary))
            .route("/series", get(series))
            .route("/control", post(control))
            .with_state(shared.clone());
        let (shutdown, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "sink stopped");
            }
        });
        Ok(Sink {
            addr,
            shared,
            task: Some(task),
            shutdown,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/api/v1/write`.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// What was received so far.
    pub fn summary(&self) -> Summary {
        self.shared.state.summary()
    }

    /// Counts, from now on, the samples whose timestamp lies in
    /// `[from_ms, to_ms)` (ms since the epoch), leaving out staleness
    /// markers and the scraper's own `up` and `scrape_*` series; see
    /// [`Sink::window_samples`].
    pub fn set_window(&self, from_ms: i64, to_ms: i64) {
        self.shared.state.set_window(from_ms, to_ms);
    }

    /// Samples counted in the window of [`Sink::set_window`].
    pub fn window_samples(&self) -> u64 {
        self.shared.state.window_samples()
    }

    /// Series matching a selector (at most `limit`).
    pub fn series(&self, matcher: &Matcher, limit: usize) -> Vec<SeriesReport> {
        self.shared.state.series(matcher, limit)
    }

    /// From now on keeps every sample timestamp per series (`on`), or
    /// stops and forgets them; see [`Sink::timelines`].
    pub fn record_timelines(&self, on: bool) {
        self.shared.state.record_timelines(on);
    }

    /// The timelines recorded since [`Sink::record_timelines`] of the
    /// series matching `matcher`.
    pub fn timelines(&self, matcher: &Matcher) -> Vec<SeriesTimeline> {
        self.shared.state.timelines(matcher)
    }

    /// Starts answering with a fault (replacing any in force).
    pub fn inject(&self, fault: Fault) -> Result<(), SinkError> {
        self.shared.set_fault(Some(fault))
    }

    /// Stops injecting.
    pub fn clear_fault(&self) {
        // Clearing cannot fail validation.
        let _ = self.shared.set_fault(None);
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn write(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared
        .state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(fault) = shared.take_fault() {
        shared.state.count_injected();
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = (status, "sink: injected fault\n").into_response();
        if let Some(secs) = fault.retry_after_secs
            && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    // Decoding a large request takes a while; keep it off the reactor.
    let checked = tokio::task::spawn_blocking(move || {
        let result = decode::check_headers(&headers)
            .and_then(|()| decode::decode_body(&body))
            .and_then(|req| decode::check_labels(&req).map(|()| req));
        match result {
            Ok(req) => {
                shared.state.record(&req);
                Ok(())
            }
            Err(rejected) => {
                shared.state.count_rejected(rejected.reason);
                Err(rejected)
            }
        }
    })
    .await;
    match checked {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(rejected)) => {
            tracing::debug!(%rejected, "write rejected");
            (StatusCode::BAD_REQUEST, format!("{rejected}\n")).into_response()
        }
        Err(join) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("sink: decoding task failed: {join}\n"),
        )
            .into_response(),
    }
}

async fn summary(State(shared): State<Arc<Shared>>) -> Response {
    let s = tokio::task::spawn_blocking(move || shared.state.summary()).await;
    match s {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn series(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let selector = q.get("match").map_or("", String::as_str);
    let matcher = match Matcher::parse(selector) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10_000usize);
    axum::Json(shared.state.series(&matcher, limit)).into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Control {
    Clear { clear: bool },
    Fault(Fault),
}

async fn control(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed: Result<Control, _> = serde_json::from_slice(&body);
    let result = match parsed {
        Ok(Control::Clear { clear: true }) => shared.set_fault(None),
        Ok(Control::Clear { clear: false }) => Ok(()),
        Ok(Control::Fault(f)) => shared.set_fault(Some(f)),
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("sink control: {e}\n")).into_response();
        }
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}
