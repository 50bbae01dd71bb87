//! The HTTP front of a standalone collector (placeholder until the API
//! module lands): health and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::run::Inner;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .with_state(inner)
}

async fn ready(State(inner): State<Arc<Inner>>) -> (StatusCode, &'static str) {
    if inner.is_ready() {
        (StatusCode::OK, "Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready.\n")
    }
}

async fn reload(State(inner): State<Arc<Inner>>) -> (StatusCode, String) {
    match inner.reload().await {
        Ok(()) => (StatusCode::OK, String::new()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
    }
}
