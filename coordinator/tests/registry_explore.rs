//! The explorer against a loopback metrics server: series counting, retries,
//! timeouts, the concurrency bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use promshard_coordinator::registry::{
    ExploreConfig, ExploreError, Explorer, LoadDefaults, LoadModel, LoadSource, RegisteredTarget,
    Registry, ReportLimits,
};
use promshard_promlib::config::{ScrapeConfig, load_str};

/// 5 samples (a histogram's 3 series count as 3, comments do not count).
const BODY: &str = "# HELP up_things Things.\n# TYPE up_things gauge\nup_things{a=\"1\"} 1\nup_things{a=\"2\"} 2\n\
# TYPE go_lat histogram\ngo_lat_bucket{le=\"+Inf\"} 3\ngo_lat_sum 1.5\ngo_lat_count 3\n";

const OPENMETRICS: &str =
    "# TYPE x counter\nx_total 1\nx_created 1.0\n# TYPE y gauge\ny 2\n# EOF\n";

#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

type Shared = Arc<Counts>;

struct InFlight(Shared);

impl InFlight {
    fn enter(c: &Shared) -> Self {
        c.requests.fetch_add(1, Ordering::SeqCst);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(c))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn metrics(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], BODY)
}

async fn openmetrics(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0",
        )],
        OPENMETRICS,
    )
}

async fn fail(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
}

async fn missing(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    (StatusCode::NOT_FOUND, "no")
}

async fn garbage(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    "ok 1\nthis is { not exposition\n"
}

async fn hang(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "never"
}

async fn huge(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    "big_metric_with_a_long_name{label=\"value\"} 1\n".repeat(10_000)
}

async fn slow(State(c): State<Shared>) -> impl IntoResponse {
    let _g = InFlight::enter(&c);
    tokio::time::sleep(Duration::from_millis(150)).await;
    BODY
}

/// A loopback server; returns its address, its counters and its task.
async fn server() -> (String, Shared, tokio::task::JoinHandle<()>) {
    let counts: Shared = Arc::default();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/om", get(openmetrics))
        .route("/fail", get(fail))
        .route("/missing", get(missing))
        .route("/garbage", get(garbage))
        .route("/hang", get(hang))
        .route("/slow", get(slow))
        .route("/huge", get(huge))
        .with_state(Arc::clone(&counts));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, counts, task)
}

/// The one target of a job scraping `path` on `addr` (every 10 s).
fn target(addr: &str, job: &str, path: &str, extra: &str) -> (RegisteredTarget, Arc<ScrapeConfig>) {
    let yaml = format!(
        "scrape_configs:\n- job_name: {job}\n  scrape_interval: 10s\n  scrape_timeout: 5s\n  metrics_path: {path}\n  static_configs: [{{targets: ['{addr}']}}]\n{extra}"
    );
    let reg = Registry::new(&load_str(&yaml, "p.yml").unwrap());
    let t = reg.job_targets(job)[0].clone();
    let cfg = Arc::clone(reg.job_config(job).unwrap());
    (t, cfg)
}

fn settings() -> ExploreConfig {
    ExploreConfig {
        max_concurrency: 4,
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..ExploreConfig::default()
    }
}

#[tokio::test]
async fn counts_the_series_of_a_text_body() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/metrics", "");
    let ex = Explorer::new(settings(), ".").unwrap();
    let out = ex.explore(&t, &cfg).await;
    let load = out.result.clone().expect("explore succeeds");
    assert_eq!(load.series, 5);
    assert!((load.samples_per_second - 0.5).abs() < 1e-9, "{load:?}");
    assert_eq!(out.attempts, 1);
    assert_eq!(out.id, t.id);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
    assert_eq!(ex.stats().succeeded, 1);

    // The model takes it as the target's (and its job mates') estimate.
    let mut model = LoadModel::default();
    model.track(t.id, &t.job);
    model.track(t.id + 1, &t.job);
    assert!(model.needs_explore(t.id));
    model.record_explore_outcome(&out, SystemTime::now());
    assert_eq!(model.load_of(t.id), (load, LoadSource::Explored));
    assert_eq!(model.load_of(t.id + 1), (load, LoadSource::Explored));
    task.abort();
}

#[tokio::test]
async fn counts_the_series_of_an_openmetrics_body() {
    let (addr, _counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/om", "");
    let ex = Explorer::new(settings(), ".").unwrap();
    let load = ex.explore(&t, &cfg).await.result.unwrap();
    assert_eq!(load.series, 3);
    task.abort();
}

#[tokio::test]
async fn metric_relabel_configs_are_honored() {
    let (addr, _counts, task) = server().await;
    // Drops go_* (3 samples) and keeps only samples carrying the target's
    // job label (all of them: target labels are attached first).
    let extra = "  metric_relabel_configs:\n  - {source_labels: [__name__], regex: 'go_.*', action: drop}\n  - {source_labels: [job], regex: 'j', action: keep}\n";
    let (t, cfg) = target(&addr, "j", "/metrics", extra);
    let ex = Explorer::new(settings(), ".").unwrap();
    assert_eq!(ex.explore(&t, &cfg).await.result.unwrap().series, 2);
    task.abort();
}

#[tokio::test]
async fn a_500_is_retried_then_recorded_as_a_failure() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/fail", "");
    let ex = Explorer::new(settings(), ".").unwrap();
    let out = ex.explore(&t, &cfg).await;
    assert_eq!(out.attempts, 3);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 3);
    let err = out.result.clone().unwrap_err();
    match &err {
        ExploreError::Scrape {
            reason, attempts, ..
        } => {
            assert!(reason.contains("500"), "{reason}");
            assert_eq!(*attempts, 3);
        }
        other => panic!("not a scrape failure: {other}"),
    }
    assert_eq!(ex.stats().failed, 1);
    assert_eq!(ex.stats().attempts, 3);

    // Recorded as a failure: the target keeps the default, not zero.
    let mut model = LoadModel::new(LoadDefaults::default(), ReportLimits::default());
    model.track(t.id, &t.job);
    model.record_explore_outcome(&out, SystemTime::now());
    let (load, source) = model.load_of(t.id);
    assert_eq!(source, LoadSource::Default);
    assert_eq!(load, LoadDefaults::default().global);
    assert_eq!(model.explore_failures(), 1);
    task.abort();
}

#[tokio::test]
async fn a_404_is_not_retried_and_a_bad_body_fails() {
    let (addr, counts, task) = server().await;
    let ex = Explorer::new(settings(), ".").unwrap();
    let (t, cfg) = target(&addr, "j", "/missing", "");
    let out = ex.explore(&t, &cfg).await;
    assert_eq!(out.attempts, 1);
    assert!(out.result.is_err());
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);

    let (t, cfg) = target(&addr, "j", "/garbage", "");
    let out = ex.explore(&t, &cfg).await;
    match out.result {
        Err(ExploreError::Parse { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a parse failure: {other:?}"),
    }
    task.abort();
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/hang", "");
    let ex = Explorer::new(
        ExploreConfig {
            timeout: Duration::from_millis(300),
            max_attempts: 2,
            ..settings()
        },
        ".",
    )
    .unwrap();
    let start = Instant::now();
    let out = ex.explore(&t, &cfg).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    match out.result {
        Err(ExploreError::Scrape { reason, .. }) => {
            assert!(reason.contains("deadline exceeded"), "{reason}")
        }
        other => panic!("expected a timeout: {other:?}"),
    }
    assert_eq!(ex.stats().timeouts, 2);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 2);
    task.abort();
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/slow", "");
    let ex = Explorer::new(
        ExploreConfig {
            max_concurrency: 2,
            ..settings()
        },
        ".",
    )
    .unwrap();
    let start = Instant::now();
    let outcomes = ex
        .explore_many((0..8).map(|_| (t.clone(), Arc::clone(&cfg))))
        .await;
    assert_eq!(outcomes.len(), 8);
    for out in outcomes {
        assert_eq!(out.result.unwrap().series, 5);
    }
    // 8 requests of 150 ms, 2 at a time: at least 4 rounds.
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert_eq!(counts.requests.load(Ordering::SeqCst), 8);
    assert_eq!(
        counts.max_in_flight.load(Ordering::SeqCst),
        2,
        "never more than 2 at once, and 2 did run at once"
    );
    task.abort();
}

#[tokio::test]
async fn a_disabled_job_is_not_scraped() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "off", "/metrics", "");
    let ex = Explorer::new(
        ExploreConfig {
            per_job: HashMap::from([("off".to_string(), false)]),
            ..settings()
        },
        ".",
    )
    .unwrap();
    assert!(!ex.enabled_for("off"));
    assert!(ex.enabled_for("other"));
    let out = ex.explore(&t, &cfg).await;
    assert!(matches!(out.result, Err(ExploreError::Disabled { .. })));
    assert_eq!(out.attempts, 0);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 0);
    assert_eq!(ex.stats().failed, 0, "disabled is not a failure");
    let mut model = LoadModel::default();
    model.track(t.id, &t.job);
    model.record_explore_outcome(&out, SystemTime::now());
    assert_eq!(model.explore_failures(), 0);
    assert!(model.last_explore(t.id).is_none());
    task.abort();
}

#[tokio::test]
async fn a_body_over_the_cap_fails_without_retry() {
    let (addr, counts, task) = server().await;
    let (t, cfg) = target(&addr, "j", "/huge", "");
    let ex = Explorer::new(
        ExploreConfig {
            max_body_bytes: 64 * 1024,
            ..settings()
        },
        ".",
    )
    .unwrap();
    let out = ex.explore(&t, &cfg).await;
    match out.result {
        Err(ExploreError::Scrape { reason, .. }) => {
            assert!(reason.contains("body size limit"), "{reason}")
        }
        other => panic!("expected the body cap: {other:?}"),
    }
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);

    // Without the cap, the same body is counted.
    let ex = Explorer::new(
        ExploreConfig {
            max_body_bytes: 0,
            ..settings()
        },
        ".",
    )
    .unwrap();
    assert_eq!(ex.explore(&t, &cfg).await.result.unwrap().series, 10_000);
    task.abort();
}
