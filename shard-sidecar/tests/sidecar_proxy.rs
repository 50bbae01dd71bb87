//! The sidecar's parts without a real backend: the scrape proxy (headers,
//! gzip, counting, errors), the http_sd serving windows of `start_at` /
//! `stop_after`, and reloads (HTTP, refused, SIGHUP).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{INTERVAL, job_yaml, now_ms, target};
use promshard_proto::v1;
use promshard_sidecar::{Backend, ExternalBackend, ExternalKind, ExternalOptions};

const BODY: &str = "# HELP g x\n# TYPE g gauge\ng 1\nh{a=\"1\"} 2\nh{a=\"2\"} 3\nh{a=\"3\"} 4\n";

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s");
}

#[derive(Default)]
struct Seen {
    headers: Vec<HeaderMap>,
    queries: Vec<String>,
}

/// A target with `/gz` (gzip body), `/fail` (503) and `/m`.
async fn start_target() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(BODY.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let app = axum::Router::new()
        .route(
            "/gz",
            axum::routing::get(move |headers: HeaderMap, q: axum::extract::RawQuery| {
                let s = s.clone();
                let gz = gz.clone();
                async move {
                    let mut g = s.lock().unwrap();
                    g.headers.push(headers);
                    g.queries.push(q.0.unwrap_or_default());
                    (
                        [
                            ("content-type", "text/plain; version=0.0.4"),
                            ("content-encoding", "gzip"),
                            ("x-custom", "kept"),
                        ],
                        gz,
                    )
                }
            }),
        )
        .route(
            "/fail",
            axum::routing::get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "busy\n") }),
        )
        .route("/m", axum::routing::get(|| async { BODY }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, seen)
}

/// A fake backend: counts `POST /-/reload`, refuses them when told.
async fn start_fake_backend() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicBool>) {
    let count = Arc::new(AtomicU64::new(0));
    let refuse = Arc::new(AtomicBool::new(false));
    let (c, r) = (count.clone(), refuse.clone());
    let app = axum::Router::new().route(
        "/-/reload",
        axum::routing::post(move || {
            let (c, r) = (c.clone(), r.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if r.load(Ordering::SeqCst) {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "failed to reload config: bad job",
                    )
                } else {
                    (StatusCode::OK, "")
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, count, refuse)
}

struct Side {
    backend: ExternalBackend,
    sd: SocketAddr,
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Side {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn side(adjust: impl FnOnce(&mut ExternalOptions)) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sd = l.local_addr().unwrap();
    let mut o = ExternalOptions::new(
        ExternalKind::Prometheus,
        dir.path().join("out.yml"),
        sd.to_string(),
    );
    o.pickup_lag = Duration::from_secs(1);
    adjust(&mut o);
    let backend = ExternalBackend::new(o).unwrap();
    let server = backend.spawn_server(l);
    Side {
        backend,
        sd,
        dir,
        server,
    }
}

fn jobs(defs: &[(&str, &str)]) -> v1::JobDefinitions {
    v1::JobDefinitions {
        jobs: defs
            .iter()
            .map(|(n, y)| v1::JobDefinition {
                job_name: n.to_string(),
                config_hash: format!("h-{}", y.len()),
                scrape_config_yaml: y.to_string(),
            })
            .collect(),
        removed_jobs: vec![],
        global_config_yaml: String::new(),
    }
}

/// A target of job `job` at `addr` with `path` and extra labels.
fn target_at(job: &str, addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> v1::Target {
    use promshard_promlib::labels::Labels;
    let mut pairs: Vec<(String, String)> = vec![
        ("__address__".into(), addr.to_string()),
        ("__metrics_path__".into(), path.into()),
        ("__scheme__".into(), "http".into()),
        ("__scrape_interval__".into(), INTERVAL.into()),
        ("__scrape_timeout__".into(), "400ms".into()),
        ("instance".into(), addr.to_string()),
        ("job".into(), job.into()),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let labels = Labels::from_pairs(pairs);
    common::proto_target(job, labels)
}

fn delta(add: Vec<(v1::Target, i64)>, remove: Vec<(u64, i64)>, full: bool) -> v1::AssignmentDelta {
    v1::AssignmentDelta {
        version: 1,
        base_version: 0,
        full,
        add: add
            .into_iter()
            .map(|(t, start)| v1::TargetAdd {
                target: Some(t),
                start_at_unix_ms: start,
            })
            .collect(),
        remove: remove
            .into_iter()
            .map(|(id, stop)| v1::TargetRemove {
                target_id: id,
                stop_after_unix_ms: stop,
                handover: true,
            })
            .collect(),
    }
}

async fn served_ids(sd: SocketAddr, job: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::get(format!("http://{sd}/http_sd/{job}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["labels"]["__metrics_path__"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn report_of(r: &v1::Report, id: u64) -> v1::TargetReport {
    r.targets
        .iter()
        .find(|t| t.target_id == id)
        .cloned()
        .unwrap_or_else(|| panic!("target {id:x} in {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_headers_and_params_decompresses_gzip_counts_lines_and_reports_failures() {
    bounded(async {
        let (addr, seen) = start_target().await;
        let s = side(|_| {}).await;
        let out = s
            .backend
            .apply_jobs(jobs(&[("j", &job_yaml("j"))]))
            .await
            .unwrap();
        assert!(out.is_ok(), "{out:?}");
        let gz = target_at(
            "j",
            addr,
            "/gz",
            &[("__param_module", "m 1"), ("team", "a")],
        );
        let fail = target_at("j", addr, "/fail", &[]);
        let d = s
            .backend
            .apply_delta(&delta(
                vec![(gz.clone(), 0), (fail.clone(), 0)],
                vec![],
                false,
            ))
            .await
            .unwrap();
        assert!(d.rejected.is_empty(), "{d:?}");

        // Before any scrape: assigned, health unknown.
        let r = s.backend.report().await;
        assert_eq!(
            report_of(&r, gz.id).health,
            v1::TargetHealth::Unknown as i32
        );

        let client = reqwest::Client::builder().no_gzip().build().unwrap();
        let resp = client
            .get(format!("http://{}/proxy/{:016x}", s.sd, gz.id))
            .header("authorization", "Bearer s3cret")
            .header("accept", "text/plain;version=0.0.4")
            .header("accept-encoding", "gzip")
            .header("x-prometheus-scrape-timeout-seconds", "0.4")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-custom"],
            "kept",
            "response headers forwarded"
        );
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "the body arrives decompressed"
        );
        assert_eq!(resp.text().await.unwrap(), BODY);
        {
            let g = seen.lock().unwrap();
            let h = &g.headers[0];
            assert_eq!(h["authorization"], "Bearer s3cret");
            assert_eq!(h["accept"], "text/plain;version=0.0.4");
            assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "0.4");
            assert_eq!(g.queries[0], "module=m+1", "params from the final labels");
        }
        let r = s.backend.report().await;
        let t = report_of(&r, gz.id);
        assert_eq!((t.series, t.samples_per_scrape), (4, 4), "{t:?}");
        assert_eq!(t.health, v1::TargetHealth::Up as i32);
        assert!((t.interval_seconds - 0.5).abs() < 1e-9);
        assert!(t.last_scrape_unix_ms > 0);
        assert_eq!(r.total_series, 4);
        assert!((r.total_samples_per_second - 8.0).abs() < 1e-9);

        // A failing target: the status goes through, the report says down.
        let resp = client
            .get(format!("http://{}/proxy/{:016x}", s.sd, fail.id))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.text().await.unwrap(), "busy\n");
        let t = report_of(&s.backend.report().await, fail.id);
        assert_eq!(t.health, v1::TargetHealth::Down as i32);
        assert!(t.last_error.contains("503"), "{t:?}");

        // Unknown and malformed ids.
        let resp = client
            .get(format!("http://{}/proxy/{:016x}", s.sd, 12345u64))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let resp = client
            .get(format!("http://{}/proxy/nothex", s.sd))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        // A dead target: 502 and down with the reason.
        let dead: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let gone = target_at("j", dead, "/m", &[]);
        s.backend
            .apply_delta(&delta(vec![(gone.clone(), 0)], vec![], false))
            .await
            .unwrap();
        let resp = client
            .get(format!("http://{}/proxy/{:016x}", s.sd, gone.id))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        let t = report_of(&s.backend.report().await, gone.id);
        assert_eq!(t.health, v1::TargetHealth::Down as i32);
        assert!(!t.last_error.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_serves_final_labels_within_start_at_and_stop_after_windows() {
    bounded(async {
        let (addr, _) = start_target().await;
        let s = side(|_| {}).await;
        s.backend
            .apply_jobs(jobs(&[("j", &job_yaml("j"))]))
            .await
            .unwrap();
        let now = now_ms();
        let a = target_at("j", addr, "/m", &[("x", "a")]);
        let b = target_at("j", addr, "/m", &[("x", "b")]);
        let c = target_at("j", addr, "/m", &[("x", "c")]);
        let path = |t: &v1::Target| format!("/proxy/{:016x}", t.id);
        // a starts in 3 s (served from 2 s: the pickup lag is 1 s); b and
        // c now.
        s.backend
            .apply_delta(&delta(
                vec![(a.clone(), now + 3000), (b.clone(), 0), (c.clone(), 0)],
                vec![],
                false,
            ))
            .await
            .unwrap();
        let served = served_ids(s.sd, "j").await;
        assert!(!served.contains(&path(&a)), "a is not due yet");
        assert!(served.contains(&path(&b)) && served.contains(&path(&c)));

        // The group's labels: final public labels, the proxy as address.
        let v: serde_json::Value = reqwest::get(format!("http://{}/http_sd/j", s.sd))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let g = v
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["labels"]["x"] == "b")
            .unwrap()
            .clone();
        assert_eq!(g["targets"], serde_json::json!([s.sd.to_string()]));
        assert_eq!(
            g["labels"],
            serde_json::json!({
                "__metrics_path__": path(&b),
                "__scheme__": "http",
                "__scrape_interval__": INTERVAL,
                "__scrape_timeout__": "400ms",
                "instance": addr.to_string(),
                "job": "j",
                "x": "b",
            })
        );

        // b stops after 1.5 s: still served now, not after.
        let mut d = delta(vec![], vec![(b.id, now_ms() + 1500)], false);
        d.version = 2;
        d.base_version = 1;
        s.backend.apply_delta(&d).await.unwrap();
        assert!(served_ids(s.sd, "j").await.contains(&path(&b)));
        let ids: Vec<u64> = s
            .backend
            .current_targets()
            .await
            .iter()
            .map(|t| t.id)
            .collect();
        assert!(
            !ids.contains(&b.id),
            "a removed target is no longer assigned"
        );
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let served = served_ids(s.sd, "j").await;
        assert!(!served.contains(&path(&b)), "b left after stop_after");
        assert!(served.contains(&path(&a)), "a served from start_at - lag");
        // The proxy still forwards b's late scrapes (the backend has not
        // noticed yet).
        let resp = reqwest::get(format!("http://{}{}", s.sd, path(&b)))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);

        // A full assignment drops everything else at once.
        let mut full = delta(vec![(a.clone(), 0)], vec![], true);
        full.version = 3;
        s.backend.apply_delta(&full).await.unwrap();
        assert_eq!(served_ids(s.sd, "j").await, vec![path(&a)]);

        // Unknown job: an empty list. A target of an unknown job: refused.
        assert!(served_ids(s.sd, "nope").await.is_empty());
        let stray = target("nope", addr);
        let out = s
            .backend
            .apply_delta(&delta(vec![(stray.clone(), 0)], vec![], false))
            .await
            .unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert!(out.rejected[0].reason.contains("not defined"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_changes_reload_once_target_changes_never_and_refusals_are_reported() {
    bounded(async {
        let (addr, _) = start_target().await;
        let (backend, count, refuse) = start_fake_backend().await;
        let s = side(|o| o.backend_url = Some(format!("http://{backend}"))).await;
        let j = job_yaml("j");
        assert!(
            s.backend
                .apply_jobs(jobs(&[("j", &j)]))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // The same definitions again: nothing written, no reload.
        assert!(
            s.backend
                .apply_jobs(jobs(&[("j", &j)]))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(s.backend.config_writes(), 2);
        // Targets never reload.
        s.backend
            .apply_delta(&delta(vec![(target("j", addr), 0)], vec![], false))
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let hashes: HashMap<String, String> =
            s.backend.job_config_hashes().await.into_iter().collect();
        assert_eq!(hashes["j"], format!("h-{}", j.len()));

        // A refused reload comes back as the global error.
        refuse.store(true, Ordering::SeqCst);
        let changed = format!("{j}honor_labels: true\n");
        let out = s
            .backend
            .apply_jobs(jobs(&[("j", &changed)]))
            .await
            .unwrap();
        assert!(
            out.global_error
                .as_deref()
                .unwrap_or("")
                .contains("bad job"),
            "{out:?}"
        );
        assert_eq!(s.backend.reloads(), 1, "only accepted reloads count");

        // A bad job definition is refused by name; the others stay.
        let out = s
            .backend
            .apply_jobs(jobs(&[("k", "job_name: k\nscrape_interval: nope\n")]))
            .await
            .unwrap();
        assert!(out.job_errors.contains_key("k"), "{out:?}");
        assert!(s.backend.job_config_hashes().await.contains_key("j"));

        // Removing the job removes its targets.
        let mut rm = jobs(&[]);
        rm.removed_jobs = vec!["j".to_string()];
        refuse.store(false, Ordering::SeqCst);
        assert!(s.backend.apply_jobs(rm).await.unwrap().is_ok());
        assert!(s.backend.current_targets().await.is_empty());
        assert!(served_ids(s.sd, "j").await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_pid_sends_sighup() {
    bounded(async {
        // `sleep` dies of SIGHUP: its exit status shows the signal.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let s = side(|o| o.backend_pid = Some(pid)).await;
        assert!(
            s.backend
                .apply_jobs(jobs(&[("j", &job_yaml("j"))]))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(s.backend.reloads(), 1);
        let mut status = None;
        for _ in 0..100 {
            if let Some(st) = child.try_wait().unwrap() {
                status = Some(st);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child got no SIGHUP");
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc_sighup()));
    })
    .await;
}

fn libc_sighup() -> i32 {
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_global_config_goes_into_the_file_and_an_old_file_survives_a_restart() {
    bounded(async {
        let s = side(|_| {}).await;
        let out = s.dir.path().join("out.yml");
        assert_eq!(s.backend.config_writes(), 1);
        let mut defs = jobs(&[("j", &job_yaml("j"))]);
        defs.global_config_yaml =
            "global:\n  scrape_interval: 7s\n  external_labels: {shard: c9}\n\
             remote_write:\n  - url: http://127.0.0.1:1/coord-write\n"
                .to_string();
        let o = s.backend.apply_jobs(defs.clone()).await.unwrap();
        assert!(o.is_ok(), "{o:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("coord-write") && text.contains("c9"),
            "{text}"
        );
        assert!(text.contains("/http_sd/j"));
        // A broken global config is refused; the previous stays.
        let mut bad = defs.clone();
        bad.global_config_yaml = "global: [".to_string();
        let o = s.backend.apply_jobs(bad).await.unwrap();
        assert!(o.global_error.is_some());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

        // A second sidecar on the same file leaves it until jobs arrive.
        let mut o2 = ExternalOptions::new(ExternalKind::Prometheus, &out, s.sd.to_string());
        o2.pickup_lag = Duration::from_secs(1);
        let again = ExternalBackend::new(o2).unwrap();
        assert_eq!(again.config_writes(), 0);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
        assert!(again.apply_jobs(defs).await.unwrap().is_ok());
        assert_eq!(again.config_writes(), 1, "the first jobs are written");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_job_config_reaches_the_proxy_of_targets_already_assigned() {
    bounded(async {
        let (addr, seen) = start_target().await;
        let s = side(|_| {}).await;
        let out = s
            .backend
            .apply_jobs(jobs(&[("j", &job_yaml("j"))]))
            .await
            .unwrap();
        assert!(out.is_ok(), "{out:?}");
        let gz = target_at("j", addr, "/gz", &[]);
        let d = s
            .backend
            .apply_delta(&delta(vec![(gz.clone(), 0)], vec![], false))
            .await
            .unwrap();
        assert!(d.rejected.is_empty(), "{d:?}");
        let scrape = || async {
            let resp = reqwest::get(format!("http://{}/proxy/{:016x}", s.sd, gz.id))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        };
        scrape().await;
        // The job now has params: the target's next scrape carries them,
        // with no new delta.
        let with_params = format!("{}params:\n  module: [m2]\n", job_yaml("j"));
        let out = s
            .backend
            .apply_jobs(jobs(&[("j", &with_params)]))
            .await
            .unwrap();
        assert!(out.is_ok(), "{out:?}");
        scrape().await;
        let g = seen.lock().unwrap();
        assert_eq!(g.queries, ["", "module=m2"], "params of the job in force");
    })
    .await;
}
