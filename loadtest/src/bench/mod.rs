//! `bench-collector`: one fleet scraped for the same time by each
//! contender in turn (promshard collector, vmagent, Prometheus agent), each
//! remote-writing to a fresh sink; CPU, memory and delivery are measured
//! per contender.
//!
//! The fleet and the sink run in this process, each on its own tokio
//! runtime with named threads, so their CPU time is read per thread and
//! reported apart from the contender's, which is a child process read
//! through `/proc/PID`.

pub mod contender;
pub mod procfs;
pub mod report;

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::fleet::{Fleet, FleetConfig, FleetError};
use crate::sink::{Sink, SinkConfig, SinkError};
pub use contender::{Binaries, ContenderKind};
pub use procfs::ProcError;
pub use report::{BenchReport, ContenderReport, Measured, Outcome, Ratio, Workload};

const FLEET_THREADS: &str = "bench-fleet";
const SINK_THREADS: &str = "bench-sink";
const JOB: &str = "fleet";

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Targets in the fleet.
    pub targets: usize,
    /// Mean series per target.
    pub series_per_target: usize,
    /// Zipf exponent of the size skew (0 = all the same).
    pub zipf_exponent: f64,
    /// Fraction of each target's series replaced every `churn_every`
    /// scrapes.
    pub churn_fraction: f64,
    /// Scrapes per churn generation.
    pub churn_every: u64,
    /// Address of target 0 (port 0: an ephemeral port per target).
    pub fleet_base: SocketAddrV4,
    /// Worker threads of the fleet.
    pub fleet_threads: usize,
    /// Scrape interval (and timeout) of the job.
    pub interval: Duration,
    /// Time each contender runs before its window starts.
    pub warmup: Duration,
    /// The measured window; a whole number of intervals.
    pub duration: Duration,
    /// Longest wait after the window for its samples to arrive.
    pub drain: Duration,
    /// `queue_config.max_samples_per_send` given to promshard and
    /// Prometheus (0: none, Prometheus' default of 500). vmagent does not
    /// read queue_config: it sends up to `-remoteWrite.maxRowsPerBlock`
    /// samples per request, 10,000 by default.
    pub max_samples_per_send: usize,
    /// Who runs, in order.
    pub contenders: Vec<ContenderKind>,
    /// Their binaries.
    pub binaries: Binaries,
}

/// Why the benchmark could not run at all (a contender's own failure is
/// reported as [`Outcome::Failed`] instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings cannot make a measurement.
    #[error("bench-collector: {0}")]
    Config(String),
    /// A tokio runtime could not start.
    #[error("bench-collector: cannot start the {what} runtime: {source}")]
    Runtime {
        /// fleet or sink.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fleet could not start.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// A sink could not start.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A file or directory of a run.
    #[error("bench-collector: {what} {}: {source}", path.display())]
    Io {
        /// What it was for.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `/proc` could not be read.
    #[error("bench-collector: {0}")]
    Proc(#[from] ProcError),
}

fn runtime(name: &'static str, threads: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        // Per-thread CPU time is lost when a thread exits: keep idle
        // blocking threads (the sink decodes on them) for the whole run.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime { what: name, source })
}

/// The parts every contender's run shares.
struct Bench<'a> {
    config: &'a BenchConfig,
    fleet: Fleet,
    fleet_rt: tokio::runtime::Runtime,
    sink_rt: tokio::runtime::Runtime,
    ticks_per_second: f64,
}

/// Runs every contender in turn against one fleet and reports.
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let interval_ms = config.interval.as_millis();
    if interval_ms == 0 || config.duration.is_zero() {
        return Err(BenchError::Config(
            "the interval and the duration must be positive".into(),
        ));
    }
    if !config.duration.as_millis().is_multiple_of(interval_ms) {
        return Err(BenchError::Config(format!(
            "the duration {:?} is not a whole number of intervals of {:?}",
            config.duration, config.interval
        )));
    }
    let fleet_rt = runtime(FLEET_THREADS, config.fleet_threads)?;
    let sink_rt = runtime(SINK_THREADS, 2)?;
    let fleet = fleet_rt.block_on(Fleet::start(FleetConfig {
        targets: config.targets,
        series_per_target: config.series_per_target,
        zipf_exponent: config.zipf_exponent,
        churn_fraction: config.churn_fraction,
        churn_every: config.churn_every,
        base: config.fleet_base,
        ..FleetConfig::default()
    }))?;
    tracing::info!(
        targets = config.targets,
        series = fleet.expected_series_total(),
        "bench fleet serving"
    );
    let bench = Bench {
        config,
        fleet,
        fleet_rt,
        sink_rt,
        ticks_per_second: procfs::clock_ticks_per_second() as f64,
    };
    let mut reports = Vec::new();
    for &kind in &config.contenders {
        reports.push(bench.run_contender(kind));
    }
    let workload = Workload {
        targets: config.targets,
        series_total: bench.fleet.expected_series_total(),
        interval_secs: config.interval.as_secs_f64(),
        warmup_secs: config.warmup.as_secs_f64(),
        window_secs: config.duration.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        max_samples_per_send: config.max_samples_per_send,
    };
    let Bench {
        fleet,
        fleet_rt,
        sink_rt,
        ..
    } = bench;
    fleet_rt.block_on(fleet.stop());
    drop(sink_rt);
    Ok(BenchReport::new(workload, reports))
}

/// A contender's process: killed (SIGKILL) and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// `Some(reason)` once the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.0.try_wait() {
            Ok(Some(status)) => Some(format!("exited early ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot be waited for: {e}")),
        }
    }
}

/// The contender gets SIGKILL when the thread that started it (this
/// run's main thread) ends, so a benchmark killed or interrupted midway
/// leaves no scraper behind.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: between fork and exec only async-signal-safe calls are
    // allowed; prctl is a plain system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn free_port() -> Result<u16, BenchError> {
    let io = |source| BenchError::Io {
        what: "cannot find a free port on",
        path: PathBuf::from("127.0.0.1"),
        source,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}

/// What a contender's log says about its end: a Rust panic's message when
/// there is one (a backtrace would bury it), else the last few lines.
fn log_tail(path: &Path) -> String {
    summarize_log(&std::fs::read_to_string(path).unwrap_or_default())
}

pub(crate) fn summarize_log(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
        return lines[i..lines.len().min(i + 2)].join(" | ");
    }
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        tail
    }
}

impl Bench<'_> {
    fn run_contender(&self, kind: ContenderKind) -> ContenderReport {
        let binary = self.config.binaries.of(kind);
        let mut report = ContenderReport {
            contender: kind,
            command: String::new(),
            outcome: Outcome::Ran,
            measured: None,
        };
        if !binary.is_file() {
            report.outcome = Outcome::Skipped(format!("{} is not installed", binary.display()));
            tracing::warn!(contender = kind.name(), binary = %binary.display(), "skipped: binary missing");
            return report;
        }
        tracing::info!(contender = kind.name(), "bench run starts");
        match self.measure(kind, binary, &mut report.command) {
            Ok(m) => report.measured = Some(m),
            Err(why) => {
                tracing::warn!(contender = kind.name(), %why, "bench run failed");
                report.outcome = Outcome::Failed(why);
            }
        }
        report
    }

    fn fleet_scrapes(&self) -> u64 {
        (0..self.config.targets)
            .map(|i| self.fleet.scrapes(i))
            .sum()
    }

    fn ticks_to_secs(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second
    }

    /// Runs one contender: warm-up, window, drain. `Err` is the reason it
    /// could not be measured.
    fn measure(
        &self,
        kind: ContenderKind,
        binary: &Path,
        command_line: &mut String,
    ) -> Result<Measured, String> {
        let config = self.config;
        let dir = tempfile::Builder::new()
            .prefix("promshard-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let sink = self
            .sink_rt
            .block_on(Sink::start(SinkConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                interval: Some(config.interval),
                record_labels: false,
            }))
            .map_err(|e| e.to_string())?;
        let interval = format!("{}ms", config.interval.as_millis());
        let mut yml = self.fleet.prometheus_yml(JOB, &interval);
        yml.push_str(&remote_write_yml(
            &sink.write_url(),
            config.max_samples_per_send,
        ));
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, yml)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let log_path = dir.path().join("output.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
        let listen = format!("127.0.0.1:{}", free_port().map_err(|e| e.to_string())?);
        let mut cmd = contender::command(
            kind,
            &contender::Launch {
                binary,
                config: &config_path,
                data_dir: &data_dir,
                write_url: &sink.write_url(),
                listen: &listen,
            },
        );
        *command_line = contender::command_line(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        die_with_parent(&mut cmd);
        let mut child = Running(
            cmd.spawn()
                .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
        );
        let pid = child.0.id();
        let failed = |why: String| format!("{why}; its output: {}", log_tail(&log_path));

        // Warm-up: the contender starts, discovers and scrapes every target.
        let warm_end = Instant::now() + config.warmup;
        while Instant::now() < warm_end {
            if let Some(why) = child.exited() {
                return Err(failed(why));
            }
            std::thread::sleep(Duration::from_millis(100).min(warm_end - Instant::now()));
        }

        // The window.
        let proc_err = |e: ProcError| failed(e.to_string());
        let received0 = sink.summary().totals.samples;
        let scrapes0 = self.fleet_scrapes();
        let [fleet0, sink0] =
            procfs::own_threads_cpu_ticks([FLEET_THREADS, SINK_THREADS]).map_err(proc_err)?;
        let machine0 = procfs::MachineCpu::now().map_err(proc_err)?;
        let cpu0 = procfs::process_cpu_ticks(pid).map_err(proc_err)?;
        let start = Instant::now();
        let from_ms = now_ms();
        let window_ms = i64::try_from(config.duration.as_millis()).unwrap_or(i64::MAX);
        sink.set_window(from_ms, from_ms.saturating_add(window_ms));
        let end = start + config.duration;
        let mut max_rss = 0;
        loop {
            if let Some(why) = child.exited() {
                return Err(failed(why));
            }
            if let Ok(rss) = procfs::status_bytes(pid, "VmRSS") {
                max_rss = max_rss.max(rss);
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep(Duration::from_secs(1).min(end - now));
        }
        let cpu1 = procfs::process_cpu_ticks(pid).map_err(proc_err)?;
        let peak_rss = procfs::status_bytes(pid, "VmHWM").map_err(proc_err)?;
        let window = start.elapsed();
        let machine1 = procfs::MachineCpu::now().map_err(proc_err)?;
        let [fleet1, sink1] =
            procfs::own_threads_cpu_ticks([FLEET_THREADS, SINK_THREADS]).map_err(proc_err)?;
        let scrapes1 = self.fleet_scrapes();
        let received1 = sink.summary().totals.samples;

        // Drain: samples scraped in the window still on their way.
        let intervals = config.duration.as_millis() / config.interval.as_millis();
        let intervals = u64::try_from(intervals).unwrap_or(u64::MAX);
        let expected = (self.fleet.expected_series_total() as u64).saturating_mul(intervals);
        let drain_end = Instant::now() + config.drain;
        while sink.window_samples() < expected && Instant::now() < drain_end {
            if child.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(child);
        let delivered = sink.window_samples();
        let summary = sink.summary();
        self.sink_rt.block_on(sink.stop());
        if let Err(e) = dir.close() {
            tracing::warn!(error = %e, "cannot remove the bench directory");
        }

        let healthy = self
            .fleet
            .target_infos()
            .iter()
            .filter(|t| t.behaviour.serves_series())
            .count() as u64;
        let cpu_seconds = self.ticks_to_secs(cpu1.saturating_sub(cpu0));
        Ok(Measured {
            window_secs: window.as_secs_f64(),
            cpu_seconds,
            peak_rss_bytes: peak_rss,
            max_sampled_rss_bytes: max_rss,
            delivered_samples: delivered,
            expected_samples: expected,
            delivered_percent: report::percent(delivered, expected),
            cpu_seconds_per_million_samples: if delivered == 0 {
                f64::INFINITY
            } else {
                cpu_seconds / (delivered as f64 / 1e6)
            },
            received_during_window: received1.saturating_sub(received0),
            scrapes_served: scrapes1.saturating_sub(scrapes0),
            scrapes_expected: healthy.saturating_mul(intervals),
            fleet_cpu_seconds: self.ticks_to_secs(fleet1.saturating_sub(fleet0)),
            sink_cpu_seconds: self.ticks_to_secs(sink1.saturating_sub(sink0)),
            machine_busy_fraction: machine0.busy_fraction_until(machine1),
            duplicates: summary.totals.duplicates,
            out_of_order: summary.totals.out_of_order,
            gaps: summary.totals.gaps,
            rejected_requests: summary.rejected.values().sum(),
        })
    }
}

/// The `remote_write` section to the sink: requests of up to `per_send`
/// samples (0: Prometheus' defaults), with room for three requests per
/// shard as Prometheus' tuning guide suggests.
fn remote_write_yml(url: &str, per_send: usize) -> String {
    let mut yml = format!("remote_write:\n  - url: {url}\n");
    if per_send > 0 {
        yml.push_str(&format!(
            "    queue_config:\n      max_samples_per_send: {per_send}\n      capacity: {}\n",
            per_send.saturating_mul(3)
        ));
    }
    yml
}

#[cfg(test)]
mod tests {
    use super::summarize_log;

    #[test]
    fn a_panic_message_is_shown_instead_of_the_backtrace_end() {
        let log = "starting\n\nthread 'main' (7) panicked at collector/src/ship/mod.rs:50:9:\n\
                   not yet implemented: ship\nstack backtrace:\n  0: x\n  1: y\n  2: z\n";
        assert_eq!(
            summarize_log(log),
            "thread 'main' (7) panicked at collector/src/ship/mod.rs:50:9: | not yet implemented: ship"
        );
        assert_eq!(summarize_log("a\nb\n"), "a | b");
        assert_eq!(summarize_log(""), "no output");
    }
}
