use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use promshard_promlib::api::{ActiveTarget, DroppedTarget};
use promshard_promlib::labels::Labels;
use tower::ServiceExt;

use super::*;

struct Fake {
    reload_result: Mutex<Result<(), String>>,
    rebalances: AtomicUsize,
    ready: bool,
}

fn target(job: &str, shard: Option<&str>, state: TargetState) -> CoordinatorTarget {
    CoordinatorTarget {
        target: ActiveTarget {
            discovered_labels: Labels::from_pairs([("job", job)]),
            labels: Labels::from_pairs([("job", job), ("instance", "h:1")]),
            scrape_pool: job.to_string(),
            scrape_url: "http://h:1/metrics".to_string(),
            global_url: "http://h:1/metrics".to_string(),
            last_error: String::new(),
            last_scrape: promshard_promlib::api::NEVER_SCRAPED.to_string(),
            last_scrape_duration: 0.0,
            health: "unknown".to_string(),
            scrape_interval: "10s".to_string(),
            scrape_timeout: "10s".to_string(),
        },
        id: "00000000000000aa".to_string(),
        shard: shard.map(str::to_string),
        series: 10,
        samples_per_second: 1.0,
        load_source: "reported".to_string(),
        state,
    }
}

impl AdminControl for Fake {
    fn targets(&self) -> CoordinatorTargets {
        CoordinatorTargets {
            active_targets: vec![
                target("a", Some("shard-0"), TargetState::Assigned),
                target("a", Some("shard-1"), TargetState::Migrating),
                target("b", None, TargetState::Unassigned),
                target("b", Some("shard-1"), TargetState::Oversized),
            ],
            dropped_targets: vec![
                DroppedTarget {
                    discovered_labels: Labels::from_pairs([("job", "a")]),
                },
                DroppedTarget {
                    discovered_labels: Labels::from_pairs([("job", "b")]),
                },
            ],
        }
    }
    fn shards(&self) -> Vec<ShardView> {
        Vec::new()
    }
    fn plan(&self) -> PlanView {
        PlanView {
            desired_shards: 3,
            ..PlanView::default()
        }
    }
    fn rebalance(&self) -> PlanView {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        self.plan()
    }
    fn scale(&self) -> ScaleView {
        ScaleView::default()
    }
    fn config_yaml(&self) -> String {
        "global:\n  scrape_interval: 10s\n".to_string()
    }
    fn reload(&self) -> BoxFuture<Result<(), String>> {
        let r = self.reload_result.lock().unwrap().clone();
        Box::pin(async move { r })
    }
    fn ready(&self) -> bool {
        self.ready
    }
    fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        Ok("# EOF\n".to_string())
    }
}

fn app(token: Option<&str>, reload: Result<(), String>, ready: bool) -> (Router, Arc<Fake>) {
    let fake = Arc::new(Fake {
        reload_result: Mutex::new(reload),
        rebalances: AtomicUsize::new(0),
        ready,
    });
    let state = AdminState {
        control: fake.clone(),
        token: token.map(Arc::from),
    };
    (router(state), fake)
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn targets_of(app: &Router, query: &str) -> (usize, usize) {
    let (status, body) = call(app, "GET", &format!("/api/v1/targets{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    (
        v["data"]["activeTargets"].as_array().unwrap().len(),
        v["data"]["droppedTargets"].as_array().unwrap().len(),
    )
}

#[tokio::test]
async fn targets_filter_by_state_job_and_shard() {
    let (app, _) = app(None, Ok(()), true);
    assert_eq!(targets_of(&app, "").await, (4, 2));
    assert_eq!(targets_of(&app, "?state=active").await, (4, 0));
    assert_eq!(targets_of(&app, "?state=dropped").await, (0, 2));
    assert_eq!(targets_of(&app, "?state=migrating").await, (1, 0));
    assert_eq!(targets_of(&app, "?state=oversized").await, (1, 0));
    assert_eq!(targets_of(&app, "?job=b").await, (2, 1));
    assert_eq!(targets_of(&app, "?shard=shard-1").await, (2, 0));
    assert_eq!(targets_of(&app, "?shard=shard-1&job=a").await, (1, 0));
    let (status, body) = call(&app, "GET", "/api/v1/targets?state=bogus", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown state \\\"bogus\\\""), "{body}");
}

#[tokio::test]
async fn target_entries_carry_prometheus_fields_and_the_coordinators() {
    let (app, _) = app(None, Ok(()), true);
    let (_, body) = call(&app, "GET", "/api/v1/targets?state=assigned", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["scrapePool"], "a");
    assert_eq!(t["scrapeUrl"], "http://h:1/metrics");
    assert_eq!(t["shard"], "shard-0");
    assert_eq!(t["series"], 10);
    assert_eq!(t["samplesPerSecond"], 1.0);
    assert_eq!(t["state"], "assigned");
}

#[tokio::test]
async fn post_endpoints_need_the_token_when_one_is_set() {
    let (app, fake) = app(Some("s3cret"), Ok(()), true);
    assert_eq!(
        call(&app, "POST", "/api/v1/rebalance", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/rebalance", Some("wrong"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fake.rebalances.load(Ordering::SeqCst), 0);
    let (status, body) = call(&app, "POST", "/api/v1/rebalance", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fake.rebalances.load(Ordering::SeqCst), 1);
    assert_eq!(
        call(&app, "POST", "/-/reload", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // GETs stay open.
    assert_eq!(
        call(&app, "GET", "/api/v1/plan", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reload_reports_the_reason_and_rejects_get() {
    let (app, _) = app(None, Err("prometheus.yml:3:1: bad".to_string()), true);
    let (status, body) = call(&app, "POST", "/-/reload", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("prometheus.yml:3:1: bad"), "{body}");
    assert_eq!(
        call(&app, "GET", "/-/reload", None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let (app, _) = app_ok();
    assert_eq!(call(&app, "PUT", "/-/reload", None).await.0, StatusCode::OK);
}

fn app_ok() -> (Router, Arc<Fake>) {
    app(None, Ok(()), true)
}

#[tokio::test]
async fn readiness_config_plan_and_metrics() {
    let (app, _) = app(None, Ok(()), false);
    assert_eq!(
        call(&app, "GET", "/-/ready", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&app, "GET", "/-/healthy", None).await.0,
        StatusCode::OK
    );
    let (_, body) = call(&app, "GET", "/api/v1/status/config", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["data"]["yaml"]
            .as_str()
            .unwrap()
            .contains("scrape_interval")
    );
    let (_, body) = call(&app, "GET", "/api/v1/plan", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["desiredShards"], 3);
    let (status, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("# EOF\n"));
}

#[test]
fn constant_time_eq_compares_whole_strings() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
