//! The coordinator's admin HTTP API.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/targets` | Prometheus' shape plus `shard`, `series`, `samplesPerSecond`, `state`; filters `state` (Prometheus' `active`/`dropped`/`any`, or assigned/unassigned/migrating/oversized), `job`, `shard` |
//! | `GET /api/v1/shards` | id, address, backend, capacity, utilization, series, samples/s, targets, health, last report |
//! | `GET /api/v1/plan` | what the planner would do now, without doing it |
//! | `POST /api/v1/rebalance` | run a planning round now |
//! | `GET /api/v1/scale` | current and desired shard count |
//! | `GET /api/v1/status/config` | the loaded config, secrets as `<secret>` |
//! | `POST /-/reload` | reload the config; an invalid one is rejected and the old one kept |
//! | `/-/healthy`, `/-/ready`, `/metrics` | as Prometheus |
//!
//! POST endpoints require `Authorization: Bearer <token>` when a token is
//! configured. What the API shows comes from an [`AdminControl`], which
//! the coordinator's control loop implements.

mod views;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use promshard_promlib::api::ApiResponse;
use serde::Serialize;

pub use views::{
    CoordinatorTarget, CoordinatorTargets, MoveView, PlanView, ScaleView, ShardView, TargetState,
};

/// A boxed future (the reload callback is async and the trait must be
/// object-safe).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the admin API reads and triggers. Implemented by the control loop;
/// every method is cheap or runs on a blocking thread.
pub trait AdminControl: Send + Sync + 'static {
    /// Active targets (every discovered, relabeled target) and dropped
    /// ones.
    fn targets(&self) -> CoordinatorTargets;
    fn shards(&self) -> Vec<ShardView>;
    /// The planner's answer for the current state, not applied.
    fn plan(&self) -> PlanView;
    /// Runs a planning round now; returns what it decided.
    fn rebalance(&self) -> PlanView;
    fn scale(&self) -> ScaleView;
    /// The loaded config as YAML with secrets shown as `<secret>`.
    fn config_yaml(&self) -> String;
    /// Reloads the config file; `Err` names why it was rejected (the old
    /// config stays).
    fn reload(&self) -> BoxFuture<Result<(), String>>;
    fn ready(&self) -> bool;
    /// `/metrics` in the OpenMetrics text format.
    fn metrics_text(&self) -> Result<String, std::fmt::Error>;
}

/// The admin API's configuration.
#[derive(Clone)]
pub struct AdminState {
    pub control: Arc<dyn AdminControl>,
    /// Bearer token required on POST endpoints.
    pub token: Option<Arc<str>>,
}

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/shards", get(shards))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/rebalance", post(rebalance))
        .route("/api/v1/scale", get(scale))
        .route("/api/v1/status/config", get(config))
        .route(
            "/-/reload",
            get(reload_wrong_method).post(reload).put(reload),
        )
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Runs `f` on a blocking thread (the control's methods take locks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("admin API task failed: {e}\n"),
        )
            .into_response()
    })
}

fn json<T: Serialize>(data: T) -> Response {
    axum::Json(ApiResponse::success(data)).into_response()
}

/// `None` when the request may proceed, else the 401.
fn unauthorized(s: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let want = s.token.as_deref()?;
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(got.as_bytes(), want.as_bytes()) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response(),
        )
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which targets `GET /api/v1/targets` lists.
#[derive(Debug, Default, PartialEq)]
struct TargetFilter {
    active: bool,
    dropped: bool,
    state: Option<TargetState>,
    job: Option<String>,
    shard: Option<String>,
}

impl TargetFilter {
    fn from_query(q: &HashMap<String, String>) -> Result<Self, String> {
        let mut f = TargetFilter {
            active: true,
            dropped: true,
            job: q.get("job").filter(|j| !j.is_empty()).cloned(),
            shard: q.get("shard").filter(|s| !s.is_empty()).cloned(),
            state: None,
        };
        match q.get("state").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("any") => {}
            Some("active") => f.dropped = false,
            Some("dropped") => f.active = false,
            Some(other) => {
                let st = [
                    TargetState::Assigned,
                    TargetState::Unassigned,
                    TargetState::Migrating,
                    TargetState::Oversized,
                ]
                .into_iter()
                .find(|s| s.as_str() == other)
                .ok_or_else(|| {
                    format!(
                        "unknown state {other:?}: use any, active, dropped, assigned, unassigned, migrating or oversized"
                    )
                })?;
                f.state = Some(st);
                f.dropped = false;
            }
        }
        // A shard filter only makes sense for active targets.
        if f.shard.is_some() {
            f.dropped = false;
        }
        Ok(f)
    }

    fn apply(&self, mut all: CoordinatorTargets) -> CoordinatorTargets {
        if !self.active {
            all.active_targets.clear();
        }
        if !self.dropped {
            all.dropped_targets.clear();
        }
        all.active_targets.retain(|t| {
            self.state.is_none_or(|s| t.state == s)
                && self
                    .job
                    .as_deref()
                    .is_none_or(|j| t.target.scrape_pool == j)
                && self
                    .shard
                    .as_deref()
                    .is_none_or(|s| t.shard.as_deref() == Some(s))
        });
        if let Some(job) = &self.job {
            all.dropped_targets.retain(|d| {
                d.discovered_labels.get(promshard_promlib::labels::JOB) == Some(job.as_str())
            });
        }
        all
    }
}

fn bad_request(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "status": "error",
            "errorType": "bad_data",
            "error": msg,
        })),
    )
        .into_response()
}

async fn targets(
    State(s): State<AdminState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match TargetFilter::from_query(&q) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    match blocking(move || filter.apply(s.control.targets())).await {
        Ok(t) => json(t),
        Err(r) => r,
    }
}

async fn shards(State(s): State<AdminState>) -> Response {
    match blocking(move || s.control.shards()).await {
        Ok(v) => json(v),
        Err(r) => r,
    }
}

async fn plan(State(s): State<AdminState>) -> Response {
    match blocking(move || s.control.plan()).await {
        Ok(v) => json(v),
        Err(r) => r,
    }
}

async fn rebalance(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    match blocking(move || s.control.rebalance()).await {
        Ok(v) => json(v),
        Err(r) => r,
    }
}

async fn scale(State(s): State<AdminState>) -> Response {
    match blocking(move || s.control.scale()).await {
        Ok(v) => json(v),
        Err(r) => r,
    }
}

async fn config(State(s): State<AdminState>) -> Response {
    match blocking(move || s.control.config_yaml()).await {
        Ok(yaml) => json(serde_json::json!({ "yaml": yaml })),
        Err(r) => r,
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

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    match s.control.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(reason) => {
            tracing::error!(error = %reason, "config reload via HTTP failed; the old config stays");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {reason}\n"),
            )
                .into_response()
        }
    }
}

async fn healthy() -> &'static str {
    "Promshard coordinator is Healthy.\n"
}

async fn ready(State(s): State<AdminState>) -> Response {
    if s.control.ready() {
        (StatusCode::OK, "Promshard coordinator is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match blocking(move || s.control.metrics_text()).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests;
