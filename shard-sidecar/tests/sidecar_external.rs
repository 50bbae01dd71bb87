//! The sidecar next to a real, unmodified Prometheus 2.42 (agent mode) and
//! vmagent on loopback: a fake coordinator sends jobs and deltas; the
//! backend scrapes the fixture through the sidecar's proxy and
//! remote-writes series with the final labels' public part; the Report
//! carries what the proxy counted; a removed target leaves the backend;
//! a job change reloads once, a target change never.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use promshard_proto::v1;
use promshard_sidecar::external::default_pickup_lag;
use promshard_sidecar::{Agent, AgentOptions, ExternalBackend, ExternalKind, ExternalOptions};

const T: Duration = Duration::from_secs(10);
/// The backend must pick up an http_sd change within this.
const PICKUP: Duration = Duration::from_secs(25);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(150), f)
        .await
        .expect("test took longer than 150 s");
}

/// A child process killed by its pid when dropped.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the backend");
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // By pid, this child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn http_ok(url: String) -> bool {
    match reqwest::get(&url).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

async fn wait_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Labels of the backend's active targets of job `job` (Prometheus'
/// `/api/v1/targets`; vmagent serves the same shape).
async fn active_target_labels(backend: SocketAddr, job: &str) -> Vec<serde_json::Value> {
    let url = format!("http://{backend}/api/v1/targets");
    let Ok(r) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["labels"]["job"] == job)
        .collect()
}

struct Sidecar {
    backend: Arc<ExternalBackend>,
    server: tokio::task::JoinHandle<()>,
    agent: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Sidecar {
    async fn start(
        kind: ExternalKind,
        dir: &Path,
        capture: &Capture,
        coordinator: &str,
        backend_addr: SocketAddr,
    ) -> Sidecar {
        let cfg = dir.join("sidecar.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  external_labels:\n    shard: s1\n\
                 remote_write:\n  - url: http://{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 100ms\n      \
                 min_backoff: 50ms\n      max_backoff: 500ms\n    metadata_config:\n      send: false\n",
                capture.addr
            ),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sd = listener.local_addr().unwrap();
        let mut o = ExternalOptions::new(kind, dir.join("backend.yml"), sd.to_string());
        o.config_file = Some(cfg);
        o.backend_url = Some(format!("http://{backend_addr}"));
        o.refresh_interval = Duration::from_secs(1);
        o.pickup_lag = default_pickup_lag(kind, o.refresh_interval);
        let backend = Arc::new(ExternalBackend::new(o).expect("sidecar backend"));
        let server = backend.spawn_server(listener);
        let mut opts = AgentOptions::new(coordinator, "s1");
        opts.max_series = 1000;
        opts.address = format!("http://{sd}");
        opts.report_interval = Duration::from_millis(300);
        opts.backoff_initial = Duration::from_millis(100);
        opts.backoff_max = Duration::from_millis(500);
        let agent = Agent::new(opts, backend.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        Sidecar {
            backend,
            server,
            agent,
            stop: Some(stop),
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.agent).await;
        self.server.abort();
    }
}

fn start_prometheus(dir: &Path, addr: SocketAddr) -> Proc {
    Proc::spawn(
        Command::new("/usr/bin/prometheus")
            .arg("--enable-feature=agent")
            .arg("--web.enable-lifecycle")
            .arg(format!(
                "--config.file={}",
                dir.join("backend.yml").display()
            ))
            .arg(format!(
                "--storage.agent.path={}",
                dir.join("agent").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=debug"),
        &dir.join("prometheus.log"),
    )
}

fn start_vmagent(dir: &Path, addr: SocketAddr, capture: &Capture) -> Proc {
    Proc::spawn(
        Command::new("/usr/bin/vmagent")
            .arg(format!(
                "-promscrape.config={}",
                dir.join("backend.yml").display()
            ))
            .arg(format!(
                "-remoteWrite.url=http://{}/api/v1/write",
                capture.addr
            ))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.join("vmagent-data").display()
            ))
            .arg("-remoteWrite.flushInterval=100ms")
            .arg("-promscrape.httpSDCheckInterval=1s")
            .arg(format!("-httpListenAddr={addr}")),
        &dir.join("vmagent.log"),
    )
}

/// The fixture's target with final labels as the coordinator sends them.
fn final_target(job: &str, addr: SocketAddr) -> v1::Target {
    use promshard_promlib::labels::Labels;
    let labels = Labels::from_pairs([
        ("__address__", addr.to_string()),
        ("__metrics_path__", "/m".to_string()),
        ("__param_x", "1".to_string()),
        ("__scheme__", "http".to_string()),
        ("__scrape_interval__", INTERVAL.to_string()),
        ("__scrape_timeout__", "400ms".to_string()),
        ("instance", "fixture-1".to_string()),
        ("job", job.to_string()),
        ("team", "a".to_string()),
    ]);
    common::proto_target(job, labels)
}

/// The whole scenario against one backend kind.
async fn scenario(kind: ExternalKind) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::start().await;
    let capture = Capture::start().await;
    let mut coord = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), None).await;
    let backend_addr = free_port();
    let sidecar = Sidecar::start(kind, dir.path(), &capture, &coord.url(), backend_addr).await;
    assert_eq!(
        sidecar.backend.config_writes(),
        1,
        "the first config is written at start"
    );
    let proc = match kind {
        ExternalKind::Prometheus => start_prometheus(dir.path(), backend_addr),
        ExternalKind::Vmagent => start_vmagent(dir.path(), backend_addr, &capture),
    };
    let ready_path = match kind {
        ExternalKind::Prometheus => "/-/ready",
        ExternalKind::Vmagent => "/health",
    };
    assert!(
        wait_async(Duration::from_secs(20), || http_ok(format!(
            "http://{backend_addr}{ready_path}"
        )))
        .await,
        "{} ready; log:\n{}",
        kind.name(),
        proc.log()
    );

    let hello = coord.accept(T).await;
    let want_kind = match kind {
        ExternalKind::Prometheus => v1::BackendKind::Prometheus,
        ExternalKind::Vmagent => v1::BackendKind::Vmagent,
    };
    assert_eq!(hello.backend, want_kind as i32);
    assert!(hello.targets.is_empty());

    // Jobs, then a target: one reload, for the jobs only.
    // The final labels hold a public label beyond job/instance, an
    // instance that is not the address, and a param.
    let t = final_target(JOB, fixture.addr);
    coord.send(jobs_msg(&[(JOB, &job_yaml(JOB))])).await;
    coord.send(delta(1, 0, vec![add(t.clone())], vec![])).await;
    let ack = coord.ack(T).await;
    assert!(ack.ok, "{}", ack.error);
    assert_eq!(sidecar.backend.reloads(), 1, "jobs reload the backend once");
    assert_eq!(sidecar.backend.config_writes(), 2);
    let written = std::fs::read_to_string(dir.path().join("backend.yml")).unwrap();
    assert!(written.contains("/http_sd/fx"), "{written}");

    // The backend scrapes the fixture through the proxy and writes series
    // whose labels are the final labels' public part.
    assert!(
        wait_until(PICKUP, || !capture.named("fx_a").is_empty()).await,
        "samples delivered; backend log:\n{}",
        proc.log()
    );
    let (labels, _, _) = capture.named("fx_a")[0].clone();
    let mut want: Vec<(String, String)> = vec![
        ("__name__".to_string(), "fx_a".to_string()),
        ("instance".to_string(), "fixture-1".to_string()),
        ("team".to_string(), "a".to_string()),
        ("job".to_string(), JOB.to_string()),
    ];
    let mut got: Vec<(String, String)> = labels;
    // Both add the shard's external labels.
    want.push(("shard".to_string(), "s1".to_string()));
    want.sort();
    got.sort();
    assert_eq!(got, want, "stored series carry the final public labels");
    for (l, _, _) in capture.named("fx_b") {
        assert!(l.contains(&("instance".to_string(), "fixture-1".to_string())));
    }
    assert!(!fixture.hits().is_empty(), "the real target was scraped");

    // The backend's own view of the target: the same public labels.
    {
        let targets = active_target_labels(backend_addr, JOB).await;
        assert_eq!(targets.len(), 1, "{targets:?}");
        let mut labels = targets[0]["labels"].clone();
        if kind == ExternalKind::Vmagent {
            // vmagent shows global external labels among target labels.
            labels.as_object_mut().unwrap().remove("shard");
        }
        assert_eq!(
            labels,
            serde_json::json!({"instance": "fixture-1", "job": JOB, "team": "a"})
        );
        assert_eq!(
            targets[0]["discoveredLabels"]["__metrics_path__"],
            format!("/proxy/{:016x}", t.id)
        );
        if kind == ExternalKind::Prometheus {
            assert_eq!(targets[0]["scrapeInterval"], "500ms");
            assert_eq!(targets[0]["health"], "up");
        }
    }

    // What the proxy counted reaches the coordinator.
    let report = coord
        .report_where(T, |r| {
            r.targets
                .iter()
                .any(|x| x.target_id == t.id && x.series > 0)
        })
        .await;
    let tr = report.targets.iter().find(|x| x.target_id == t.id).unwrap();
    assert_eq!(tr.series, 3, "{tr:?}");
    assert_eq!(tr.samples_per_scrape, 3);
    assert_eq!(tr.health, v1::TargetHealth::Up as i32);
    assert!((tr.interval_seconds - 0.5).abs() < 1e-9);
    assert!(tr.scrape_duration_seconds > 0.0);
    assert_eq!(report.total_series, 3);

    // Removing the target: no reload; the backend stops scraping it.
    coord
        .send(delta(
            2,
            1,
            vec![],
            vec![v1::TargetRemove {
                target_id: t.id,
                stop_after_unix_ms: 0,
                handover: false,
            }],
        ))
        .await;
    let ack = coord.ack(T).await;
    assert!(ack.ok, "{}", ack.error);
    assert_eq!(
        sidecar.backend.reloads(),
        1,
        "a target change does not reload"
    );
    assert_eq!(sidecar.backend.config_writes(), 2);
    let removed_at = Instant::now();
    // No scrape of the fixture for two intervals in a row = it is gone.
    assert!(
        wait_until(PICKUP, || {
            let hits = fixture.hits();
            hits.last()
                .is_some_and(|last| now_ms() - last > 3 * INTERVAL_MS)
        })
        .await,
        "the backend stopped scraping the removed target"
    );
    let gone_after = removed_at.elapsed();
    if kind == ExternalKind::Prometheus {
        assert!(
            wait_async(T, || async {
                active_target_labels(backend_addr, JOB).await.is_empty()
            })
            .await,
            "target gone from /api/v1/targets"
        );
    }
    eprintln!(
        "{}: target gone from the backend {gone_after:?} after the remove",
        kind.name()
    );

    // A changed job definition: exactly one more write and reload.
    let changed = format!("{}honor_labels: true\n", job_yaml(JOB));
    coord.send(jobs_msg(&[(JOB, &changed)])).await;
    // Same definition again: nothing.
    coord.send(jobs_msg(&[(JOB, &changed)])).await;
    coord.send(delta(3, 2, vec![add(t.clone())], vec![])).await;
    let ack = coord.ack(T).await;
    assert!(ack.ok, "{}", ack.error);
    assert_eq!(sidecar.backend.reloads(), 2, "one reload per job change");
    assert_eq!(sidecar.backend.config_writes(), 3);
    let before = fixture.hits().len();
    assert!(
        wait_until(PICKUP, || fixture.hits().len() > before + 2).await,
        "scraped again after the re-add"
    );

    sidecar.stop().await;
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_agent_scrapes_through_the_proxy_with_final_labels() {
    bounded(scenario(ExternalKind::Prometheus)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmagent_scrapes_through_the_proxy_with_final_labels() {
    bounded(scenario(ExternalKind::Vmagent)).await;
}
