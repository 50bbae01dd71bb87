//! The collector's HTTP API: every endpoint, status codes, JSON shape,
//! `/metrics` content.

mod wal_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use promshard_collector::api::metrics::METRICS;
use promshard_collector::api::{ApiState, BoxFuture, router};
use promshard_collector::remote::RemoteStats;
use promshard_collector::scrape::{Health, ScrapeStats, TargetStatus};
use promshard_collector::ship::RemoteStatus;
use promshard_collector::wal::{Wal, WalOptions};
use promshard_promlib::api::{ApiResponse, TargetDiscovery};
use promshard_promlib::exposition::{Entry, Format, Parser, validate_openmetrics};
use promshard_promlib::labels::Labels;
use promshard_promlib::targets::Target;
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    state: ApiState,
    ready: Arc<AtomicBool>,
    reload_result: Arc<Mutex<Result<(), String>>>,
    reloads: Arc<Mutex<u32>>,
    _dir: tempfile::TempDir,
}

fn target(job: &str, addr: &str) -> Target {
    Target {
        id: 42,
        job_name: job.to_string(),
        labels: Labels::from_pairs([
            ("__address__", addr),
            ("__scheme__", "http"),
            ("__metrics_path__", "/metrics"),
            ("__scrape_interval__", "15s"),
            ("__scrape_timeout__", "10s"),
            ("instance", addr),
            ("job", job),
        ]),
        discovered_labels: Labels::from_pairs([("__address__", addr), ("job", job)]),
    }
}

fn statuses() -> Vec<TargetStatus> {
    vec![
        TargetStatus {
            target: target("node", "a:9100"),
            scrape_url: "http://user:hunter2@a:9100/metrics".into(),
            scrape_pool: "node".into(),
            health: Health::Up,
            last_error: String::new(),
            last_scrape_ms: 1_700_000_000_250,
            last_scrape_duration: Duration::from_millis(1500),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            series: 120,
            samples_per_scrape: 125,
        },
        TargetStatus {
            target: target("node", "b:9100"),
            scrape_url: "http://b:9100/metrics".into(),
            scrape_pool: "node".into(),
            health: Health::Down,
            last_error: "connection refused".into(),
            last_scrape_ms: 1_700_000_001_000,
            last_scrape_duration: Duration::from_millis(3),
            interval: Duration::from_secs(90),
            timeout: Duration::from_secs(10),
            series: 0,
            samples_per_scrape: 5,
        },
        TargetStatus {
            target: target("other", "c:1"),
            scrape_url: "http://c:1/metrics".into(),
            scrape_pool: "other".into(),
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape_ms: 0,
            last_scrape_duration: Duration::ZERO,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            series: 0,
            samples_per_scrape: 0,
        },
    ]
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
    // A consumer so the backlog family has a member, with one batch it
    // has not read yet so its backlog is not zero.
    let _ = wal.reader("rw-test").unwrap();
    wal.append(&wal_common::numbered_batch(1)).unwrap();
    let scrape_stats = Arc::new(ScrapeStats::default());
    scrape_stats.scrapes.store(7, Ordering::Relaxed);
    scrape_stats.scrape_failures.store(2, Ordering::Relaxed);
    scrape_stats.samples_appended.store(1234, Ordering::Relaxed);
    let remote_stats = Arc::new(RemoteStats::new());
    remote_stats.samples_sent.store(1000, Ordering::Relaxed);
    remote_stats.samples_retried.store(30, Ordering::Relaxed);
    remote_stats.dropped_relabel.store(4, Ordering::Relaxed);
    remote_stats.pending_samples.store(11, Ordering::Relaxed);
    remote_stats
        .highest_sent_timestamp_ms
        .store(1_700_000_000_500, Ordering::Relaxed);
    let remotes = vec![RemoteStatus {
        name: "vm".into(),
        url: "http://127.0.0.1:8428/api/v1/write".into(),
        consumer: "rw-test".into(),
        stats: remote_stats,
        backlog_bytes: 77,
        delivered_position: 1 << 40,
    }];
    let ready = Arc::new(AtomicBool::new(false));
    let reload_result = Arc::new(Mutex::new(Ok(())));
    let reloads = Arc::new(Mutex::new(0));
    let (rr, rc) = (reload_result.clone(), reloads.clone());
    let state = ApiState {
        targets: Arc::new(statuses),
        dropped_targets: Arc::new(|| {
            vec![Labels::from_pairs([
                ("__address__", "dropped:1"),
                ("job", "node"),
            ])]
        }),
        scrape_stats,
        wal,
        remotes: Arc::new(move || remotes.clone()),
        reload: Arc::new(move || -> BoxFuture<Result<(), String>> {
            let r = rr.lock().unwrap().clone();
            *rc.lock().unwrap() += 1;
            Box::pin(async move { r })
        }),
        ready: ready.clone(),
    };
    Fixture {
        state,
        ready,
        reload_result,
        reloads,
        _dir: dir,
    }
}

async fn call(f: &Fixture, method: Method, uri: &str) -> (StatusCode, String, String) {
    let resp = router(f.state.clone())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthy_is_200() {
    let f = fixture();
    let (s, _, _) = call(&f, Method::GET, "/-/healthy").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn ready_is_503_until_ready_then_200() {
    let f = fixture();
    assert_eq!(
        call(&f, Method::GET, "/-/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    f.ready.store(true, Ordering::Relaxed);
    assert_eq!(call(&f, Method::GET, "/-/ready").await.0, StatusCode::OK);
}

#[tokio::test]
async fn reload_runs_on_post_and_put_and_refuses_get() {
    let f = fixture();
    assert_eq!(call(&f, Method::POST, "/-/reload").await.0, StatusCode::OK);
    assert_eq!(call(&f, Method::PUT, "/-/reload").await.0, StatusCode::OK);
    assert_eq!(*f.reloads.lock().unwrap(), 2);
    let (s, _, _) = call(&f, Method::GET, "/-/reload").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(*f.reloads.lock().unwrap(), 2, "GET does not reload");
}

#[tokio::test]
async fn reload_failure_is_500_with_the_reason() {
    let f = fixture();
    *f.reload_result.lock().unwrap() = Err("config.yml: line 3: unknown field `foo`".into());
    let (s, _, body) = call(&f, Method::POST, "/-/reload").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("unknown field `foo`"), "{body}");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let f = fixture();
    assert_eq!(
        call(&f, Method::GET, "/nope").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn targets_have_prometheus_shape_and_collector_fields() {
    let f = fixture();
    let (s, ct, body) = call(&f, Method::GET, "/api/v1/targets").await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let active = v["data"]["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 3);
    let a = &active[0];
    for k in [
        "discoveredLabels",
        "labels",
        "scrapePool",
        "scrapeUrl",
        "globalUrl",
        "lastError",
        "lastScrape",
        "lastScrapeDuration",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
        "series",
        "samplesPerScrape",
    ] {
        assert!(a.get(k).is_some(), "activeTargets[0] lacks {k}: {a}");
    }
    assert_eq!(a["health"], "up");
    assert_eq!(a["lastScrape"], "2023-11-14T22:13:20.25Z");
    assert_eq!(a["lastScrapeDuration"], 1.5);
    assert_eq!(a["scrapeInterval"], "15s");
    assert_eq!(a["scrapeTimeout"], "10s");
    assert_eq!(a["series"], 120);
    assert_eq!(a["samplesPerScrape"], 125);
    assert_eq!(a["scrapePool"], "node");
    assert_eq!(a["labels"]["instance"], "a:9100");
    assert!(
        a["labels"].get("__address__").is_none(),
        "public labels only"
    );
    assert_eq!(a["discoveredLabels"]["__address__"], "a:9100");
    assert!(
        !body.contains("hunter2"),
        "no password in the answer: {body}"
    );
    assert_eq!(active[1]["health"], "down");
    assert_eq!(active[1]["lastError"], "connection refused");
    assert_eq!(active[1]["scrapeInterval"], "1m30s");
    assert_eq!(active[2]["health"], "unknown");
    assert_eq!(active[2]["lastScrape"], "0001-01-01T00:00:00Z");
    let dropped = v["data"]["droppedTargets"].as_array().unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "dropped:1");
    // promlib's Prometheus view reads it.
    let p: ApiResponse<TargetDiscovery> = serde_json::from_str(&body).unwrap();
    assert_eq!(p.data.active_targets.len(), 3);
    assert_eq!(p.data.active_targets[0].health, "up");
}

#[tokio::test]
async fn targets_state_parameter_selects_lists() {
    let f = fixture();
    let lens = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap();
        (
            v["data"]["activeTargets"].as_array().unwrap().len(),
            v["data"]["droppedTargets"].as_array().unwrap().len(),
        )
    };
    for (q, want) in [
        ("", (3, 1)),
        ("?state=any", (3, 1)),
        ("?state=active", (3, 0)),
        ("?state=dropped", (0, 1)),
        ("?state=bogus", (0, 0)),
    ] {
        let (s, _, body) = call(&f, Method::GET, &format!("/api/v1/targets{q}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(lens(&body), want, "{q}");
    }
}

#[tokio::test]
async fn metrics_parse_and_hold_every_named_family() {
    let f = fixture();
    let (s, ct, body) = call(&f, Method::GET, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let format = Format::from_content_type(&ct);
    assert_eq!(format, Format::OpenMetrics, "{ct}");
    validate_openmetrics(body.as_bytes()).unwrap_or_else(|p| panic!("{p:?}\n{body}"));
    let mut samples: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    let mut eof = false;
    for e in Parser::new(body.as_bytes(), format) {
        match e.unwrap_or_else(|e| panic!("{e}\n{body}")) {
            Entry::Series(s) => samples
                .entry(s.metric_name().to_string())
                .or_default()
                .push((s.to_labels(), s.value)),
            Entry::Eof => eof = true,
            _ => {}
        }
    }
    assert!(eof);
    for (name, _) in METRICS {
        assert!(samples.contains_key(*name), "{name} missing:\n{body}");
    }
    let only = |n: &str| samples[n][0].1;
    assert_eq!(only("promshard_collector_scrapes_total"), 7.0);
    assert_eq!(only("promshard_collector_scrape_failures_total"), 2.0);
    assert_eq!(only("promshard_collector_samples_appended_total"), 1234.0);
    assert_eq!(only("promshard_collector_series"), 120.0);
    assert_eq!(only("promshard_collector_ready"), 0.0);
    let by = |n: &str, k: &str, v: &str| {
        samples[n]
            .iter()
            .find(|(l, _)| l.get(k) == Some(v))
            .unwrap_or_else(|| panic!("{n}{{{k}={v}}}"))
            .1
    };
    assert_eq!(by("promshard_collector_targets", "health", "up"), 1.0);
    assert_eq!(by("promshard_collector_targets", "health", "down"), 1.0);
    assert_eq!(by("promshard_collector_targets", "health", "unknown"), 1.0);
    assert_eq!(
        by(
            "promshard_collector_remote_samples_sent_total",
            "remote",
            "vm"
        ),
        1000.0
    );
    assert_eq!(
        by(
            "promshard_collector_remote_samples_retried_total",
            "remote",
            "vm"
        ),
        30.0
    );
    assert_eq!(
        by("promshard_collector_remote_samples_pending", "remote", "vm"),
        11.0
    );
    assert_eq!(
        by(
            "promshard_collector_remote_samples_dropped_total",
            "reason",
            "relabel"
        ),
        4.0
    );
    assert_eq!(
        by(
            "promshard_collector_remote_samples_dropped_total",
            "reason",
            "client_error"
        ),
        0.0
    );
    assert_eq!(
        by("promshard_collector_remote_backlog_bytes", "remote", "vm"),
        77.0
    );
    assert_eq!(
        by(
            "promshard_collector_remote_highest_sent_timestamp_seconds",
            "remote",
            "vm"
        ),
        1_700_000_000.5
    );
    let wal = f.state.wal.stats();
    let backlog = wal.consumers[0].backlog_bytes;
    assert!(backlog > 0, "the fixture's unread batch: {wal:?}");
    assert_eq!(
        by(
            "promshard_collector_wal_consumer_backlog_bytes",
            "consumer",
            "rw-test"
        ),
        backlog as f64
    );
    assert_eq!(only("promshard_collector_wal_segments"), 1.0);
    f.ready.store(true, Ordering::Relaxed);
    let (_, _, body) = call(&f, Method::GET, "/metrics").await;
    assert!(body.contains("promshard_collector_ready 1"), "{body}");
}

#[tokio::test]
async fn metrics_never_show_secrets() {
    // Remote status URLs are redacted by the shippers; the API prints what
    // it is given and never reads configs. Targets' URLs are redacted here.
    let f = fixture();
    let (_, _, body) = call(&f, Method::GET, "/api/v1/targets").await;
    assert!(!body.contains("hunter2"));
    let (_, _, metrics) = call(&f, Method::GET, "/metrics").await;
    assert!(!metrics.contains("hunter2"));
}
