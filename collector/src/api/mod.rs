//! The collector's HTTP API (axum):
//!
//! - `GET /metrics`: the collector's own metrics ([`metrics::METRICS`]),
//!   OpenMetrics text.
//! - `GET /-/healthy`: 200 while the process serves.
//! - `GET /-/ready`: 200 once [`ApiState::ready`] is set, else 503.
//! - `POST` or `PUT /-/reload`: runs [`ApiState::reload`]; 200, or 500
//!   with the reason. Other methods: 405, as Prometheus.
//! - `GET /api/v1/targets[?state=active|dropped|any]`: Prometheus' JSON
//!   shape ([`promshard_promlib::api`]) with `series` and
//!   `samplesPerScrape` per active target ([`targets::CollectorTarget`]).
//!
//! The state is made of functions and shared handles, so the API does not
//! depend on how the scrape manager and the shippers are assembled.

pub mod metrics;
pub mod targets;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use promshard_promlib::api::ApiResponse;
use promshard_promlib::labels::Labels;

use crate::scrape::{ScrapeStats, TargetStatus};
use crate::ship::RemoteStatus;
use crate::wal::Wal;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Reloads the configuration; `Err` carries the reason shown to the caller.
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

/// What the API reads and calls.
#[derive(Clone)]
pub struct ApiState {
    /// The running targets (e.g. `ScrapeManager::statuses`).
    pub targets: Arc<dyn Fn() -> Vec<TargetStatus> + Send + Sync>,
    /// Discovered labels of targets relabeling dropped (Prometheus'
    /// `droppedTargets`); `Vec::new` when not tracked.
    pub dropped_targets: Arc<dyn Fn() -> Vec<Labels> + Send + Sync>,
    pub scrape_stats: Arc<ScrapeStats>,
    pub wal: Arc<Wal>,
    /// The remotes (e.g. `ship::StatusSource::statuses`).
    pub remotes: Arc<dyn Fn() -> Vec<RemoteStatus> + Send + Sync>,
    pub reload: ReloadFn,
    /// `/-/ready` answers 200 once this is true.
    pub ready: Arc<AtomicBool>,
}

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Shared {
    state: ApiState,
    registry: Registry,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics::StateCollector(state.clone())));
    let shared = Arc::new(Shared { state, registry });
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route(
            "/-/reload",
            get(reload_wrong_method).post(reload).put(reload),
        )
        .route("/api/v1/targets", get(targets_handler))
        .with_state(shared)
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> Response {
    // Reading the WAL's and the targets' state takes locks: off the
    // async threads.
    let out = tokio::task::spawn_blocking(move || metrics::render(&s.registry)).await;
    match out {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics task failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthy() -> &'static str {
    "Promshard collector is Healthy.\n"
}

async fn ready(State(s): State<Arc<Shared>>) -> Response {
    if s.state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "Promshard collector is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn reload_wrong_method() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, PUT")],
        "Only POST or PUT requests allowed\n",
    )
        .into_response()
}

async fn reload(State(s): State<Arc<Shared>>) -> Response {
    match (s.state.reload)().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(reason) => {
            tracing::error!(error = %reason, "reload via HTTP failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {reason}\n"),
            )
                .into_response()
        }
    }
}

async fn targets_handler(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = q.get("state").cloned();
    let st = s.state.clone();
    let data = tokio::task::spawn_blocking(move || {
        targets::targets_data(
            state.as_deref(),
            || (st.targets)(),
            || (st.dropped_targets)(),
        )
    })
    .await;
    match data {
        Ok(d) => axum::Json(ApiResponse::success(d)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("targets task failed: {e}\n"),
        )
            .into_response(),
    }
}
