//! Harness of the coordinator integration tests (`tests/coordinator_*.rs`):
//! a `promshard coordinator` and `promshard collector --coordinator.address`
//! shards as real processes on loopback (SIGKILLed on drop and when the
//! spawning thread dies), plus the loadtest fleet and sink in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promshard_loadtest::fleet::{Fleet, FleetConfig};
use promshard_loadtest::sink::{Sink, SinkConfig};

use super::{prom, runtime, wait_until, write_atomic};

/// A child process with its log in a file; SIGKILLed on drop.
pub struct Proc {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl Proc {
    /// Starts the promshard binary with `args`, appending its output to
    /// `log_path`.
    pub fn spawn(args: &[String], log_path: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open log");
        let log2 = log.try_clone().expect("clone log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promshard"));
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        prom::set_parent_death_signal(&mut cmd);
        let child = cmd.spawn().expect("spawn promshard");
        Proc {
            child: Some(child),
            log_path: log_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `path` on 127.0.0.1:`port` and parse the JSON body.
pub fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    match prom::http("GET", port, path) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Timing knobs of a test cluster: the same as the loadtest scenarios'.
pub use promshard_loadtest::scenario::world::Timing;

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A running `promshard coordinator`.
pub struct Coord {
    pub proc: Proc,
    pub web: u16,
    pub grpc: u16,
    args: Vec<String>,
}

impl Coord {
    /// Starts a coordinator on `config` (free ports, log `dir/coordinator.log`)
    /// and waits (bounded) until its admin API answers.
    pub fn start(dir: &Path, config: &Path, timing: &Timing, extra: &[&str]) -> Coord {
        for _ in 0..3 {
            let web = prom::free_port();
            let grpc = prom::free_port();
            let mut args = vec![
                "coordinator".to_string(),
                format!("--config.file={}", config.display()),
                format!("--web.listen-address=127.0.0.1:{web}"),
                format!("--grpc.listen-address=127.0.0.1:{grpc}"),
                format!("--shard.failure-timeout={}", secs(timing.failure_timeout)),
                format!("--shard.grace={}", secs(timing.grace)),
                format!("--plan.interval={}", secs(timing.plan_interval)),
                format!("--handover.lead={}", secs(timing.handover_lead)),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let proc = Proc::spawn(&args, &dir.join("coordinator.log"));
            let mut c = Coord {
                proc,
                web,
                grpc,
                args,
            };
            if c.wait_healthy(Duration::from_secs(30)) {
                return c;
            }
            if c.proc.log().contains("in use") {
                continue;
            }
            panic!("coordinator not healthy:\n{}", c.proc.log());
        }
        panic!("coordinator could not bind free ports 3 times");
    }

    fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.proc.alive() {
                return false;
            }
            if let Ok((200, _)) = prom::http("GET", self.web, "/-/healthy") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again with the same flags and ports (after [`Coord::kill`]).
    pub fn restart(&mut self) {
        self.proc.kill();
        for _ in 0..50 {
            self.proc = Proc::spawn(&self.args, &self.proc.log_path.clone());
            if self.wait_healthy(Duration::from_secs(30)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("coordinator did not restart:\n{}", self.proc.log());
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// `/api/v1/shards` data: shard id -> view.
    pub fn shards(&self) -> BTreeMap<String, serde_json::Value> {
        let v = get_json(self.web, "/api/v1/shards").unwrap_or_default();
        let list = v.get("data").and_then(|d| d.as_array()).cloned();
        list.unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some((s.get("id")?.as_str()?.to_string(), s)))
            .collect()
    }

    /// Ids of the shards the coordinator sees up.
    pub fn shards_up(&self) -> BTreeSet<String> {
        self.shards()
            .into_iter()
            .filter(|(_, s)| s.get("health").and_then(|h| h.as_str()) == Some("up"))
            .map(|(id, _)| id)
            .collect()
    }

    /// max/mean utilization over the shards that are up, if any has load.
    pub fn imbalance(&self) -> Option<f64> {
        let us: Vec<f64> = self
            .shards()
            .values()
            .filter(|s| s.get("health").and_then(|h| h.as_str()) == Some("up"))
            .filter_map(|s| s.get("utilization")?.as_f64())
            .collect();
        let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
        (mean > 0.0).then(|| us.iter().cloned().fold(0.0, f64::max) / mean)
    }

    /// `/api/v1/targets`' active targets as JSON (empty when unreachable).
    pub fn active_targets(&self) -> Vec<serde_json::Value> {
        let v = get_json(self.web, "/api/v1/targets").unwrap_or_default();
        v.pointer("/data/activeTargets")
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// `/api/v1/targets` active targets: instance -> (shard, state).
    pub fn targets(&self) -> BTreeMap<String, (Option<String>, String)> {
        self.active_targets()
            .into_iter()
            .filter_map(|t| {
                let inst = t.pointer("/labels/instance")?.as_str()?.to_string();
                let shard = t.get("shard").and_then(|s| s.as_str()).map(String::from);
                let state = t.get("state")?.as_str()?.to_string();
                Some((inst, (shard, state)))
            })
            .collect()
    }

    /// The sum of every sample of metric `name` on `/metrics` (0 when absent).
    pub fn metric_sum(&self, name: &str) -> f64 {
        self.metric_sum_where(name, "")
    }

    /// The sum of the samples of metric `name` whose line contains
    /// `labels` (e.g. `result="failure"`).
    pub fn metric_sum_where(&self, name: &str, labels: &str) -> f64 {
        let Ok((200, body)) = prom::http("GET", self.web, "/metrics") else {
            return f64::NAN;
        };
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                    && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// POST `/-/reload`: status and body.
    pub fn reload(&self) -> (u16, String) {
        prom::http("POST", self.web, "/-/reload").expect("POST /-/reload")
    }
}

/// A running coordinated native shard.
pub struct ShardProc {
    pub id: String,
    pub proc: Proc,
    pub web: u16,
}

impl ShardProc {
    /// Starts `promshard collector --coordinator.address=...` with
    /// `config` (global + remote_write), storage and log under `dir`.
    pub fn start(
        dir: &Path,
        log_name: &str,
        id: &str,
        config: &Path,
        coordinator: &str,
        max_series: u64,
        timing: &Timing,
    ) -> ShardProc {
        for _ in 0..3 {
            let web = prom::free_port();
            let args = vec![
                "collector".to_string(),
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", dir.join(log_name).display()),
                format!("--web.listen-address=127.0.0.1:{web}"),
                format!("--coordinator.address={coordinator}"),
                format!("--shard.id={id}"),
                format!("--shard.max-series={max_series}"),
                format!("--shard.report-interval={}", secs(timing.report_interval)),
                "--shutdown.grace=1s".to_string(),
                // Small WAL segments: the disk is shared.
                "--storage.wal.segment-size=4MiB".to_string(),
            ];
            let mut proc = Proc::spawn(&args, &dir.join(format!("{log_name}.log")));
            let ok = wait_until(Duration::from_secs(30), || {
                !proc.alive() || matches!(prom::http("GET", web, "/-/healthy"), Ok((200, _)))
            });
            if ok && proc.alive() {
                return ShardProc {
                    id: id.to_string(),
                    proc,
                    web,
                };
            }
            if !proc.log().contains("in use") {
                panic!("shard {id} did not start:\n{}", proc.log());
            }
        }
        panic!("shard {id} could not bind a free port 3 times");
    }

    /// Instances of the targets this shard scrapes (its own API).
    pub fn targets(&self) -> Option<BTreeSet<String>> {
        let v = get_json(self.web, "/api/v1/targets")?;
        let list = v.pointer("/data/activeTargets")?.as_array()?.clone();
        Some(
            list.into_iter()
                .filter_map(|t| Some(t.pointer("/labels/instance")?.as_str()?.to_string()))
                .collect(),
        )
    }
}

/// Who scrapes what, from the shards' own APIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub per_shard: BTreeMap<String, BTreeSet<String>>,
}

impl Coverage {
    pub fn of(shards: &[&ShardProc]) -> Coverage {
        Coverage {
            per_shard: shards
                .iter()
                .map(|s| {
                    (
                        s.proc.log_path.display().to_string(),
                        s.targets().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    pub fn union(&self) -> BTreeSet<String> {
        self.per_shard.values().flatten().cloned().collect()
    }

    /// Instances scraped by more than one shard.
    pub fn doubles(&self) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut twice = BTreeSet::new();
        for t in self.per_shard.values().flatten() {
            if !seen.insert(t.clone()) {
                twice.insert(t.clone());
            }
        }
        twice
    }

    /// Every fleet target scraped by exactly one shard.
    pub fn exact(&self, fleet: &BTreeSet<String>) -> bool {
        self.doubles().is_empty() && &self.union() == fleet
    }
}

/// Fleet + sink + config files in a temp dir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub fleet: Option<Fleet>,
    pub sink: Option<Sink>,
    pub coordinator_config: PathBuf,
    pub shard_config: PathBuf,
    pub sd_file: PathBuf,
}

impl World {
    /// Starts the fleet (`fleet` config) and the sink; writes the file_sd
    /// file, the coordinator's prometheus.yml (job `fleet`, interval
    /// `interval`) and the shards' config (remote_write to the sink).
    pub fn start(fleet: FleetConfig, interval: &str) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = runtime();
        let fleet = rt.block_on(Fleet::start(fleet)).expect("fleet");
        let sink = rt
            .block_on(Sink::start(SinkConfig {
                record_labels: true,
                ..SinkConfig::default()
            }))
            .expect("sink");
        let sd_file = dir.path().join("targets.json");
        write_atomic(&sd_file, &fleet.file_sd_json());
        let coordinator_config = dir.path().join("coordinator.yml");
        std::fs::write(
            &coordinator_config,
            format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
scrape_configs:\n  - job_name: fleet\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
                sd_file.display()
            ),
        )
        .expect("write coordinator config");
        let shard_config = dir.path().join("shard.yml");
        std::fs::write(
            &shard_config,
            format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
                sink.write_url()
            ),
        )
        .expect("write shard config");
        World {
            dir,
            fleet: Some(fleet),
            sink: Some(sink),
            coordinator_config,
            shard_config,
            sd_file,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("fleet")
    }

    pub fn sink(&self) -> &Sink {
        self.sink.as_ref().expect("sink")
    }

    /// Every fleet target's instance (`host:port`).
    pub fn instances(&self) -> BTreeSet<String> {
        self.fleet().targets().into_iter().collect()
    }

    /// Series of one instance in the sink: count and the oldest last
    /// timestamp among them.
    pub fn sink_instance(&self, instance: &str) -> (usize, i64) {
        let m = promshard_loadtest::sink::matcher::Matcher::parse(&format!(
            "{{instance=\"{instance}\"}}"
        ))
        .expect("matcher");
        let series = self.sink().series(&m, 1_000_000);
        let oldest = series.iter().map(|s| s.last_timestamp).min().unwrap_or(0);
        (series.len(), oldest)
    }

    /// The sink's counts for the fleet's job (zero before any sample).
    pub fn fleet_counts(&self) -> promshard_loadtest::sink::Counts {
        self.sink()
            .summary()
            .jobs
            .get("fleet")
            .cloned()
            .unwrap_or_default()
    }

    /// Dumps logs of the processes for a failing assertion.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.path()) {
            let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                if f.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&f).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {} (tail) ---\n", f.display()));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let rt = runtime();
        if let Some(f) = self.fleet.take() {
            rt.block_on(f.stop());
        }
        if let Some(s) = self.sink.take() {
            rt.block_on(s.stop());
        }
    }
}
