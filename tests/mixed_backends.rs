//! A Prometheus-backend shard (`prometheus --enable-feature=agent` behind
//! `promshard sidecar`) next to a native shard, in one run with one
//! coordinator: the coordinator places targets on both, each target is
//! scraped by exactly one of them, and the sink sees every fleet series.

use std::collections::BTreeSet;
use std::net::{SocketAddrV4, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promshard_loadtest::fleet::{Fleet, FleetConfig};
use promshard_loadtest::sink::{Sink, SinkConfig};

/// A child process killed (and reaped) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(name: &'static str, dir: &Path, program: &str, args: &[String]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({program}): {e}"));
        Proc { name, child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        format!("--- {} ---\n{}", self.name, lines[from..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn get_json(url: &str) -> Option<serde_json::Value> {
    let resp = reqwest::get(url).await.ok()?;
    resp.json().await.ok()
}

/// `instance` labels of the active targets a Prometheus-style
/// `/api/v1/targets` lists.
async fn instances(url: &str) -> BTreeSet<String> {
    let Some(v) = get_json(url).await else {
        return BTreeSet::new();
    };
    v["data"]["activeTargets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["labels"]["instance"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_backend_shard_and_a_native_shard_share_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(FleetConfig {
        targets: 12,
        series_per_target: 40,
        zipf_exponent: 0.5,
        base: SocketAddrV4::new([127, 0, 13, 1].into(), 0),
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    let sink = Sink::start(SinkConfig {
        record_labels: false,
        ..SinkConfig::default()
    })
    .await
    .unwrap();
    std::fs::write(dir.path().join("targets.json"), fleet.file_sd_json()).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
scrape_configs:\n  - job_name: fleet\n    file_sd_configs:\n      - files: [targets.json]\n        refresh_interval: 1s\n\
remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
            sink.write_url()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_promshard");
    let (web, grpc, native_web, sidecar_web, prom_web) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let coordinator_addr = format!("--coordinator.address=http://127.0.0.1:{grpc}");
    // Equal capacities, small enough that both shards are needed.
    let capacity = "--shard.max-series=600";
    let cfg_arg = format!("--config.file={}", config.display());
    let _coordinator = Proc::start(
        "coordinator",
        dir.path(),
        bin,
        &[
            "coordinator".into(),
            cfg_arg.clone(),
            format!("--web.listen-address=127.0.0.1:{web}"),
            format!("--grpc.listen-address=127.0.0.1:{grpc}"),
            capacity.into(),
            "--plan.interval=2s".into(),
            "--handover.lead=2s".into(),
        ],
    );
    let native = Proc::start(
        "native",
        dir.path(),
        bin,
        &[
            "collector".into(),
            cfg_arg.clone(),
            format!("--storage.path={}", dir.path().join("native").display()),
            format!("--web.listen-address=127.0.0.1:{native_web}"),
            coordinator_addr.clone(),
            "--shard.id=native-0".into(),
            capacity.into(),
            "--shard.report-interval=1s".into(),
        ],
    );
    let prom_config = dir.path().join("prometheus-backend.yml");
    let sidecar = Proc::start(
        "sidecar",
        dir.path(),
        bin,
        &[
            "sidecar".into(),
            "--backend=prometheus".into(),
            cfg_arg.clone(),
            format!("--backend.config-out={}", prom_config.display()),
            format!("--backend.url=http://127.0.0.1:{prom_web}"),
            "--backend.sd-refresh-interval=1s".into(),
            format!("--web.listen-address=127.0.0.1:{sidecar_web}"),
            coordinator_addr.clone(),
            "--shard.id=prom-0".into(),
            capacity.into(),
            "--shard.report-interval=1s".into(),
        ],
    );
    // The sidecar writes the backend's config once it has the jobs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !prom_config.exists() {
        assert!(
            Instant::now() < deadline,
            "the sidecar wrote no backend config\n{}",
            sidecar.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let prometheus = Proc::start(
        "prometheus",
        dir.path(),
        "/usr/bin/prometheus",
        &[
            "--enable-feature=agent".into(),
            "--web.enable-lifecycle".into(),
            format!("--config.file={}", prom_config.display()),
            format!(
                "--storage.agent.path={}",
                dir.path().join("pdata").display()
            ),
            format!("--web.listen-address=127.0.0.1:{prom_web}"),
        ],
    );

    let all: BTreeSet<String> = fleet.targets().into_iter().collect();
    let want_series = fleet.expected_series_total() as u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut on_native, mut on_prom);
    loop {
        on_native = instances(&format!("http://127.0.0.1:{native_web}/api/v1/targets")).await;
        on_prom = instances(&format!("http://127.0.0.1:{prom_web}/api/v1/targets")).await;
        let union: BTreeSet<String> = on_native.union(&on_prom).cloned().collect();
        let series = sink.summary().jobs.get("fleet").map_or(0, |c| c.series);
        if union == all && on_native.is_disjoint(&on_prom) && series >= want_series {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: native {on_native:?}, prometheus {on_prom:?}, fleet series {series}/{want_series}\n{}\n{}\n{}\n{}",
            _coordinator.log_tail(),
            native.log_tail(),
            sidecar.log_tail(),
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!on_native.is_empty(), "the native shard got no target");
    assert!(!on_prom.is_empty(), "the Prometheus shard got no target");

    // The coordinator's view agrees: both shards up, every target assigned.
    let shards = get_json(&format!("http://127.0.0.1:{web}/api/v1/shards"))
        .await
        .expect("shards API");
    let shards = shards["data"].as_array().cloned().unwrap_or_default();
    let backends: BTreeSet<String> = shards
        .iter()
        .filter(|s| s["health"] == "up")
        .filter_map(|s| s["backend"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        backends,
        BTreeSet::from(["native".to_string(), "prometheus".to_string()]),
        "{shards:?}"
    );
    let unassigned = get_json(&format!(
        "http://127.0.0.1:{web}/api/v1/targets?state=unassigned"
    ))
    .await
    .expect("targets API");
    assert_eq!(
        unassigned["data"]["activeTargets"].as_array().map(Vec::len),
        Some(0)
    );
    // Neither backend scrapes a target twice, so the sink sees no sample
    // twice.
    assert_eq!(sink.summary().totals.duplicates, 0);
    drop(prometheus);
    drop(sidecar);
    drop(native);
    sink.stop().await;
    fleet.stop().await;
}
