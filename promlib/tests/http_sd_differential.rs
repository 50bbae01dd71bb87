//! Differential test: http_sd jobs served by a loopback endpoint, seen by
//! a real Prometheus 2.42 (`/api/v1/targets?state=any`) and by
//! `api::targets_once` (what `promshard targets` prints: `discover_once` +
//! relabeling). Active targets (pool, discoveredLabels, labels, scrapeUrl)
//! and dropped targets (discoveredLabels) must agree, order-insensitively.
//! Never skips: a missing Prometheus fails the test.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use promshard_promlib::api::{self, TargetDiscovery};
use promshard_promlib::config;

const GROUPS_A: &str = r#"[
  {"targets": ["a.invalid:9100", "b.invalid:9100"], "labels": {"env": "prod", "team": "x"}},
  {"targets": ["c.invalid"], "labels": {"env": "dev", "__scheme__": "https", "__metrics_path__": "/m"}},
  {"targets": ["[::1]:9", "d.invalid:1"], "labels": {"__param_module": "m1", "env": "prod"}},
  {"targets": [], "labels": {"env": "empty"}},
  {"targets": ["e.invalid:2"]}
]"#;

const GROUPS_B: &str = r#"[
  {"targets": ["f.invalid:3"], "labels": {"__scrape_interval__": "30s", "__scrape_timeout__": "5s"}},
  {"targets": ["g.invalid:4"], "labels": {"instance": "custom"}}
]"#;

type Projected = (BTreeSet<String>, Vec<String>);

fn project(d: &TargetDiscovery) -> Projected {
    let active = d
        .active_targets
        .iter()
        .map(|t| {
            format!(
                "{} {} {:?} {:?}",
                t.scrape_pool, t.scrape_url, t.labels, t.discovered_labels
            )
        })
        .collect();
    let mut dropped: Vec<String> = d
        .dropped_targets
        .iter()
        .map(|t| format!("{:?}", t.discovered_labels))
        .collect();
    dropped.sort();
    (active, dropped)
}

#[test]
fn http_sd_targets_agree_with_prometheus_2_42() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = rt.block_on(async {
        let app = Router::new()
            .route(
                "/a",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], GROUPS_A) }),
            )
            .route(
                "/b",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], GROUPS_B) }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        format!("http://{addr}")
    });
    let config = format!(
        r#"global: {{scrape_interval: 1m, scrape_timeout: 10s}}
scrape_configs:
- job_name: http_plain
  http_sd_configs:
  - url: {base}/a
    refresh_interval: 2s
- job_name: http_relabel
  http_sd_configs:
  - url: {base}/a
  - url: {base}/b
  relabel_configs:
  - {{source_labels: [__meta_url], target_label: sd_url}}
  - {{source_labels: [env], regex: dev, action: drop}}
  - {{regex: 'team', action: labeldrop}}
  - {{source_labels: [__address__], regex: '(.*):.*', target_label: host}}
- job_name: http_intervals
  http_sd_configs:
  - url: {base}/b
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("prometheus.yml");
    let prom = common::Prometheus::start_in(dir, &config);
    let cfg = config::load_file(&cfg_path).unwrap_or_else(|e| panic!("{e}\n{config}"));
    let jobs = ["http_plain", "http_relabel", "http_intervals"];
    let missing = prom.wait_for_pools(&jobs, Duration::from_secs(60));
    assert!(
        missing.is_empty(),
        "pools never listed: {missing:?}\n{}",
        prom.log()
    );
    // One more discovery round (5s) so that every provider's groups are in.
    std::thread::sleep(Duration::from_secs(6));

    let mut report = String::new();
    let mut compared = 0;
    for job in jobs {
        let theirs = prom.targets(Some(job));
        let (ours, failures) = api::targets_once(&cfg, Some(job)).unwrap();
        assert!(failures.is_empty(), "{job}: {failures:?}");
        assert!(
            !theirs.active_targets.is_empty(),
            "{job}: Prometheus has no targets"
        );
        let (pa, pd) = project(&theirs);
        let (oa, od) = project(&ours);
        compared += pa.len() + pd.len();
        if pa != oa || pd != od || theirs.active_targets.len() != ours.active_targets.len() {
            report += &format!("job {job} DISAGREES\n");
            for a in pa.difference(&oa) {
                report += &format!("  only prometheus: {a}\n");
            }
            for a in oa.difference(&pa) {
                report += &format!("  only ours:       {a}\n");
            }
            if pd != od {
                report += &format!("  dropped: prometheus {pd:?}\n           ours {od:?}\n");
            }
        }
    }
    eprintln!("compared {compared} targets");
    assert!(report.is_empty(), "{report}");
    assert!(compared >= 10, "only {compared} targets compared");
}
