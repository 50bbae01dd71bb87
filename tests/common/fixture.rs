//! Scrape targets on loopback: one HTTP server, one behaviour per path.
//!
//! ```ignore
//! let fx = Fixture::start();
//! fx.set("/a", Route::text("a 1\n"));
//! // scrape target: fx.addr(), metrics_path: /a
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::runtime;

/// Content-Type of the Prometheus text format 0.0.4.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content-Type of OpenMetrics 1.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a path answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with the body.
    Serve,
    /// Never answers (the connection stays open until the client gives up).
    Hang,
    /// Sends the headers and the body, then one more line every 200 ms,
    /// never ending the response.
    NeverClose,
    /// Answers this status with the body.
    Status(u16),
}

/// What one path serves.
#[derive(Debug, Clone)]
pub struct Route {
    pub body: Bytes,
    pub content_type: String,
    pub behaviour: Behaviour,
    /// Replace `{seq}` in the body with the 1-based number of this request
    /// to the path (a value that is different at every scrape).
    pub seq: bool,
}

impl Route {
    /// A text-format body.
    pub fn text(body: impl Into<Bytes>) -> Route {
        Route {
            body: body.into(),
            content_type: TEXT.to_string(),
            behaviour: Behaviour::Serve,
            seq: false,
        }
    }

    /// An OpenMetrics body.
    pub fn openmetrics(body: impl Into<Bytes>) -> Route {
        Route {
            content_type: OPENMETRICS.to_string(),
            ..Route::text(body)
        }
    }

    pub fn with_behaviour(mut self, b: Behaviour) -> Route {
        self.behaviour = b;
        self
    }

    pub fn with_seq(mut self) -> Route {
        self.seq = true;
        self
    }
}

#[derive(Debug, Default)]
struct Inner {
    routes: HashMap<String, Route>,
    hits: HashMap<String, u64>,
}

/// A running fixture server; stops when dropped.
pub struct Fixture {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fixture {
    /// Binds 127.0.0.1:0 and serves. Unknown paths answer 404.
    pub fn start() -> Fixture {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind fixture server");
        let addr = listener.local_addr().expect("fixture addr");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(inner.clone());
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fixture { addr, inner, task }
    }

    /// `127.0.0.1:PORT`, the scrape target address.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Sets (or replaces) what `path` serves from the next request on.
    pub fn set(&self, path: &str, route: Route) {
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), route);
    }

    /// Replaces the body of `path`, keeping its other settings.
    pub fn set_body(&self, path: &str, body: impl Into<Bytes>) {
        let mut g = self.inner.lock().unwrap();
        let r = g.routes.get_mut(path).expect("route exists");
        r.body = body.into();
    }

    /// Requests `path` got so far (answered or not).
    pub fn hits(&self, path: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri) -> Response {
    let path = uri.path().to_string();
    let (route, n) = {
        let mut g = inner.lock().unwrap();
        let n = {
            let h = g.hits.entry(path.clone()).or_insert(0);
            *h += 1;
            *h
        };
        match g.routes.get(&path) {
            Some(r) => (r.clone(), n),
            None => return (StatusCode::NOT_FOUND, "no such fixture\n").into_response(),
        }
    };
    let body = if route.seq {
        let text = String::from_utf8_lossy(&route.body).replace("{seq}", &n.to_string());
        Bytes::from(text)
    } else {
        route.body.clone()
    };
    match route.behaviour {
        Behaviour::Serve => ([(header::CONTENT_TYPE, route.content_type)], body).into_response(),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, route.content_type)],
            body,
        )
            .into_response(),
        Behaviour::Hang => {
            // Far longer than any scrape_timeout; the client hangs up first.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Behaviour::NeverClose => {
            let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
            let rest = futures_util::stream::unfold(0u64, |i| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let line = Bytes::from(format!("never_closes_line{{i=\"{i}\"}} 1\n"));
                Some((Ok::<_, std::io::Error>(line), i + 1))
            });
            use futures_util::StreamExt;
            let stream = first.chain(rest);
            (
                [(header::CONTENT_TYPE, route.content_type)],
                Body::from_stream(stream),
            )
                .into_response()
        }
    }
}
