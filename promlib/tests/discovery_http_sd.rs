//! http_sd_configs against a loopback HTTP server: groups with sources and
//! `__meta_url`, the request headers Prometheus sends, refreshes that pick
//! up changes and drop vanished groups, failed refreshes (status 500,
//! invalid JSON, wrong content type, oversized body) that keep the last
//! good targets and are counted, and the one-shot `discover_once`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promshard_promlib::config;
use promshard_promlib::discovery::{
    self, Discoverer, HttpSd, HttpSdError, TargetGroup, TargetSets, URL_LABEL, Update,
};
use tokio::sync::mpsc;

/// What the endpoint answers, and the headers of the requests it got.
#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Endpoint {
    reply: Arc<Mutex<Option<Reply>>>,
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Endpoint {
    fn set(&self, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
        *self.reply.lock().unwrap() = Some(Reply {
            status,
            content_type: content_type.to_string(),
            body: body.into(),
        });
    }
    fn json(&self, body: &str) {
        self.set(200, "application/json", body);
    }
    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn handler(State(ep): State<Endpoint>, headers: HeaderMap) -> Response {
    ep.requests.lock().unwrap().push(headers);
    let reply = ep.reply.lock().unwrap().clone();
    match reply {
        Some(r) => (
            StatusCode::from_u16(r.status).unwrap(),
            [(header::CONTENT_TYPE, r.content_type)],
            r.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves the endpoint at `http://127.0.0.1:PORT/sd` on the current runtime.
async fn serve(ep: Endpoint) -> String {
    let app = Router::new().route("/sd", get(handler)).with_state(ep);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/sd")
}

fn job_config(url: &str, extra: &str) -> config::Config {
    let text = format!(
        "scrape_configs:\n  - job_name: h\n    http_sd_configs:\n      - url: {url}\n        refresh_interval: 200ms\n{extra}"
    );
    config::load_str(&text, "h.yml").unwrap()
}

/// The `__address__`es of the job's groups, by source.
fn addresses(groups: &[TargetGroup]) -> BTreeMap<String, Vec<String>> {
    groups
        .iter()
        .map(|g| {
            (
                g.source.clone(),
                g.targets
                    .iter()
                    .map(|t| t.get("__address__").unwrap_or_default().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// Applies updates until `done(sets)` holds; panics after `timeout`.
async fn until(
    rx: &mut mpsc::Receiver<Update>,
    sets: &mut TargetSets,
    timeout: Duration,
    what: &str,
    done: impl Fn(&TargetSets) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(sets) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(u)) => {
                assert!(u.provider == "static/0" || u.provider == "http/0", "{u:?}");
                sets.apply(u);
            }
            Ok(None) => panic!("discoverer stopped while waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; groups: {:?}",
                sets.groups("h")
            ),
        }
    }
}

#[tokio::test]
async fn groups_carry_sources_url_label_and_prometheus_request_headers() {
    let ep = Endpoint::default();
    ep.json(r#"[{"targets":["a:1","b:2"],"labels":{"env":"prod"}},{"targets":["c:3"]}]"#);
    let url = serve(ep.clone()).await;
    let cfg = job_config(
        &url,
        "        basic_auth: {username: user, password: pass}\n",
    );
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(Discoverer::new(&cfg).unwrap().run(tx));
    let mut sets = TargetSets::new();
    until(
        &mut rx,
        &mut sets,
        Duration::from_secs(10),
        "two groups",
        |s| s.groups("h").len() == 2,
    )
    .await;
    let groups = sets.groups("h");
    let got = addresses(&groups);
    assert_eq!(got[&format!("{url}:0")], ["a:1", "b:2"]);
    assert_eq!(got[&format!("{url}:1")], ["c:3"]);
    for g in &groups {
        assert_eq!(g.labels.get(URL_LABEL), Some(url.as_str()), "{g:?}");
    }
    assert_eq!(groups[0].labels.get("env"), Some("prod"));
    assert_eq!(groups[1].labels.get("env"), None);

    let req = ep.requests.lock().unwrap()[0].clone();
    assert_eq!(req.get("accept").unwrap(), "application/json");
    assert_eq!(
        req.get("x-prometheus-refresh-interval-seconds").unwrap(),
        "0.2"
    );
    // base64("user:pass")
    assert_eq!(req.get("authorization").unwrap(), "Basic dXNlcjpwYXNz");
    assert!(req.get("user-agent").is_some());
    task.abort();
}

#[tokio::test]
async fn refresh_picks_up_changes_and_vanished_groups_disappear() {
    let ep = Endpoint::default();
    ep.json(r#"[{"targets":["a:1"]},{"targets":["b:2"]},{"targets":["c:3"]}]"#);
    let url = serve(ep.clone()).await;
    let cfg = job_config(&url, "");
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(Discoverer::new(&cfg).unwrap().run(tx));
    let mut sets = TargetSets::new();
    until(
        &mut rx,
        &mut sets,
        Duration::from_secs(10),
        "three groups",
        |s| s.groups("h").len() == 3,
    )
    .await;

    // The list shrinks to one group with a changed target.
    ep.json(r#"[{"targets":["a:1","new:9"]}]"#);
    let url0 = format!("{url}:0");
    until(
        &mut rx,
        &mut sets,
        Duration::from_secs(10),
        "one changed group",
        |s| {
            let g = addresses(&s.groups("h"));
            g.len() == 1 && g.get(&url0).is_some_and(|a| a == &["a:1", "new:9"])
        },
    )
    .await;

    // An empty list removes everything.
    ep.json("[]");
    until(
        &mut rx,
        &mut sets,
        Duration::from_secs(10),
        "no groups",
        |s| s.groups("h").is_empty(),
    )
    .await;
    task.abort();
}

#[tokio::test]
async fn failed_refreshes_keep_the_last_good_targets_and_are_counted() {
    let ep = Endpoint::default();
    ep.json(r#"[{"targets":["a:1"]}]"#);
    let url = serve(ep.clone()).await;
    let cfg = job_config(&url, "");
    let discoverer = Discoverer::new(&cfg).unwrap();
    let stats = discoverer.stats();
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(discoverer.run(tx));
    let mut sets = TargetSets::new();
    until(&mut rx, &mut sets, Duration::from_secs(10), "a:1", |s| {
        s.groups("h").len() == 1
    })
    .await;
    let good = sets.groups("h");

    for (status, ct, body, expect) in [
        (500, "text/plain", "boom", "500 Internal Server Error"),
        (200, "application/json", "[{\"targets\": [", "invalid JSON"),
        (200, "text/plain", "[]", "unsupported content type"),
    ] {
        let before_requests = ep.requests();
        let before_failures = stats.failures("http");
        ep.set(status, ct, body);
        // Several refreshes (200ms each) happen with the bad answer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ep.requests() < before_requests + 3 {
            assert!(tokio::time::Instant::now() < deadline, "no refreshes");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(u) = rx.try_recv() {
            sets.apply(u);
        }
        assert_eq!(sets.groups("h"), good, "after {expect}");
        let snap = stats.snapshot();
        let s = &snap[&("h".to_string(), "http/0".to_string())];
        assert_eq!(s.mechanism, "http");
        assert!(stats.failures("http") >= before_failures + 2, "{s:?}");
        let last = s.last_error.clone().unwrap_or_default();
        assert!(last.contains(expect) && last.contains(&url), "{last}");
    }

    // Recovery: a good answer is applied again and clears the error.
    ep.json(r#"[{"targets":["z:1"]}]"#);
    until(&mut rx, &mut sets, Duration::from_secs(10), "z:1", |s| {
        addresses(&s.groups("h")).values().any(|a| a == &["z:1"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = stats.snapshot();
    assert_eq!(
        snap[&("h".to_string(), "http/0".to_string())].last_error,
        None
    );
    task.abort();
}

#[tokio::test]
async fn refresh_errors_name_the_problem_and_the_url() {
    let ep = Endpoint::default();
    let url = serve(ep.clone()).await;
    let cfg = job_config(&url, "");
    let mut sd = HttpSd::new(&cfg.scrape_configs[0].http_sd_configs[0], "".as_ref()).unwrap();

    ep.json(r#"[{"targets":["a:1"],"labels":{"0bad":"x"}}]"#);
    let e = sd.refresh().await.unwrap_err();
    assert!(matches!(e, HttpSdError::Json { .. }), "{e}");
    assert!(
        e.to_string().contains("0bad") && e.to_string().contains(&url),
        "{e}"
    );

    ep.json(r#"[{"targets":["a:1"],"extra":1}]"#);
    let e = sd.refresh().await.unwrap_err();
    assert!(e.to_string().contains("extra"), "{e}");

    ep.json("[null]");
    let e = sd.refresh().await.unwrap_err();
    assert!(matches!(e, HttpSdError::NilGroup { index: 0, .. }), "{e}");

    ep.json(&format!("[{{\"targets\":[\"{}\"]}}]", "x".repeat(11 << 20)));
    let e = sd.refresh().await.unwrap_err();
    assert!(matches!(e, HttpSdError::BodyTooLarge { .. }), "{e}");

    ep.set(503, "application/json", "[]");
    let e = sd.refresh().await.unwrap_err();
    assert!(e.to_string().contains("503 Service Unavailable"), "{e}");

    // `charset=utf-8` is accepted, and the groups after errors start fresh.
    ep.set(
        200,
        "application/json; charset=utf-8",
        r#"[{"targets":["a:1"]}]"#,
    );
    let g = sd.refresh().await.unwrap();
    assert_eq!(g.len(), 1);
    // A shorter answer yields empty groups for the vanished sources.
    ep.json(r#"[{"targets":["a:1"]},{"targets":["b:1"]}]"#);
    assert_eq!(sd.refresh().await.unwrap().len(), 2);
    ep.json("[]");
    let g = sd.refresh().await.unwrap();
    assert_eq!(g.len(), 2);
    assert!(g.iter().all(|g| g.targets.is_empty()));
    assert_eq!(g[1].source, format!("{url}:1"));
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_after_the_refresh_interval() {
    // Accepts connections but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let cfg = job_config(&format!("http://{addr}/sd"), "");
    let mut sd = HttpSd::new(&cfg.scrape_configs[0].http_sd_configs[0], "".as_ref()).unwrap();
    let t0 = std::time::Instant::now();
    let e = sd.refresh().await.unwrap_err();
    assert!(matches!(e, HttpSdError::Timeout { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    hold.abort();
}

/// `discover_once` is blocking; it must work outside a runtime (the CLI)
/// and must not panic when called from inside one.
#[test]
fn discover_once_fetches_http_sd_groups() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ep = Endpoint::default();
    ep.json(r#"[{"targets":["a:1"],"labels":{"x":"y"}},{"targets":[]}]"#);
    let url = rt.block_on(serve(ep.clone()));
    let text = format!(
        "scrape_configs:\n  - job_name: h\n    static_configs: [{{targets: ['s:1']}}]\n    http_sd_configs:\n      - url: {url}\n  - job_name: down\n    http_sd_configs:\n      - url: http://127.0.0.1:1/none\n"
    );
    let cfg = config::load_str(&text, "h.yml").unwrap();
    let all = discovery::discover_once(&cfg).unwrap();
    let h = addresses(&all["h"]);
    assert_eq!(h["0"], ["s:1"]);
    assert_eq!(h[&format!("{url}:0")], ["a:1"]);
    assert_eq!(h.len(), 2, "{h:?}");
    // An unreachable endpoint contributes nothing (logged), like Prometheus.
    assert!(all["down"].is_empty());

    let inside = rt.block_on(async { discovery::discover_once(&cfg).unwrap() });
    assert_eq!(inside, all);
}
