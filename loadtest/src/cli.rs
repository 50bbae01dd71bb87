//! `promshard loadtest ...`: run a fleet or a sink until Ctrl-C, or
//! benchmark collectors against each other.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::bench::{BenchConfig, Binaries, ContenderKind};
use crate::fleet::{Fleet, FleetConfig};
use crate::sink::{Sink, SinkConfig};

/// `promshard loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// What to run.
    #[command(subcommand)]
    pub command: LoadtestCommand,
}

/// The load-test parts.
#[derive(Debug, Subcommand)]
pub enum LoadtestCommand {
    /// Serve N fake targets (target i on its own loopback address base+i).
    Fleet(FleetArgs),
    /// Receive remote writes and check every series.
    Sink(SinkArgs),
    /// Scrape one fleet with promshard collector, vmagent and the
    /// Prometheus agent in turn; compare CPU per sample, memory, delivery.
    BenchCollector(BenchArgs),
    /// Run a whole system on loopback through one disturbance and judge
    /// every sample (exit status 1 when a claim fails).
    Scenario(ScenarioArgs),
    /// Place one target set with promshard's planner, hashmod, vmagent
    /// cluster mode and the OpenTelemetry allocator; compare balance and
    /// series moved on scale-out and scale-in.
    Compare(crate::compare::CompareArgs),
}

/// `promshard loadtest scenario NAME`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Which scenario.
    #[arg(value_enum)]
    pub name: crate::scenario::Scenario,
    /// The short version (about a minute, for CI).
    #[arg(long)]
    pub short: bool,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long = "report.json")]
    pub report_json: Option<std::path::PathBuf>,
    /// The promshard binary (default: this binary).
    #[arg(long)]
    pub binary: Option<std::path::PathBuf>,
    /// Keep the run directory (logs, WALs) even when every claim passes.
    #[arg(long)]
    pub keep_dir: bool,
    /// Scrape interval.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Targets (default per scenario).
    #[arg(long)]
    pub targets: Option<usize>,
    /// Series per target.
    #[arg(long, default_value_t = 100)]
    pub series: usize,
    /// Shards at the start (default per scenario).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Scales the quiet parts of the full version (60s = as designed).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// `promshard loadtest bench-collector`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of targets.
    #[arg(long, default_value_t = 1000)]
    pub targets: usize,
    /// Mean series per target.
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Scrape interval (and timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Time each contender runs before its measured window.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The measured window (a whole number of intervals).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Longest wait after the window for its samples to reach the sink.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Zipf exponent of the size skew (0 = all the same).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Fraction of each target's series replaced every --churn-every scrapes.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Scrapes per churn generation.
    #[arg(long, default_value_t = 10)]
    pub churn_every: u64,
    /// Address of target 0 (port 0: an ephemeral port per target).
    #[arg(long, default_value = "127.0.2.1:0")]
    pub fleet_listen: SocketAddrV4,
    /// Worker threads serving the fleet.
    #[arg(long, default_value_t = 2)]
    pub fleet_threads: usize,
    /// Samples per remote-write request of promshard and Prometheus
    /// (their queue_config.max_samples_per_send; 0 leaves Prometheus'
    /// default of 500). The default is what vmagent sends per request
    /// (-remoteWrite.maxRowsPerBlock), so all three send the same requests.
    #[arg(long, default_value_t = 10_000)]
    pub max_samples_per_send: usize,
    /// Who runs, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "promshard,vmagent,prometheus"
    )]
    pub contenders: Vec<ContenderKind>,
    /// The promshard binary run as `collector` (default: this binary).
    #[arg(long)]
    pub promshard_binary: Option<std::path::PathBuf>,
    /// The vmagent binary.
    #[arg(long, default_value = "/usr/bin/vmagent")]
    pub vmagent_binary: std::path::PathBuf,
    /// The prometheus binary (run with --enable-feature=agent).
    #[arg(long, default_value = "/usr/bin/prometheus")]
    pub prometheus_binary: std::path::PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `promshard loadtest fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Number of targets.
    #[arg(long, default_value_t = 100)]
    pub targets: usize,
    /// Mean series per target.
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Zipf exponent of the size skew (0 = all the same).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Fraction of each target's series replaced every --churn-every scrapes.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Scrapes per churn generation.
    #[arg(long, default_value_t = 10)]
    pub churn_every: u64,
    /// Address of target 0; target i listens on the address i further on.
    #[arg(long, default_value = "127.0.1.1:9100")]
    pub listen: SocketAddrV4,
    /// Number of slow targets.
    #[arg(long, default_value_t = 0)]
    pub slow: usize,
    /// Delay of slow targets (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub slow_delay: Duration,
    /// Targets answering 500.
    #[arg(long, default_value_t = 0)]
    pub broken_500: usize,
    /// Targets answering a malformed body.
    #[arg(long, default_value_t = 0)]
    pub broken_malformed: usize,
    /// Targets that never answer.
    #[arg(long, default_value_t = 0)]
    pub broken_hang: usize,
    /// Write a file_sd JSON listing every target here.
    #[arg(long)]
    pub file_sd: Option<std::path::PathBuf>,
}

/// `promshard loadtest sink`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9201")]
    pub listen: SocketAddr,
    /// Expected interval between samples of a series (learned per series
    /// when absent).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Log a summary line this often.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub summary_every: Duration,
    /// Do not keep labels (saves memory; /series then returns nothing).
    #[arg(long)]
    pub no_labels: bool,
}

/// Parses `1.5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .with_context(|| format!("duration {s:?}: {num:?} is not a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("duration {s:?}: unit {unit:?} is not one of ms, s, m, h"),
    };
    Duration::try_from_secs_f64(secs).with_context(|| format!("duration {s:?} is out of range"))
}

/// Runs a load-test part until Ctrl-C (its own tokio runtime). The caller
/// sets up logging, to stderr: stdout holds reports (bench-collector --json).
pub fn run(args: LoadtestArgs) -> Result<()> {
    let args = match args.command {
        // The benchmark runs its own runtimes for the fleet and the sink.
        LoadtestCommand::BenchCollector(a) => return run_bench(a),
        LoadtestCommand::Scenario(a) => return run_scenario(a),
        LoadtestCommand::Compare(a) => return crate::compare::run_cli(&a),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("loadtest: cannot start the tokio runtime")?;
    runtime.block_on(async move {
        match args {
            LoadtestCommand::Fleet(a) => run_fleet(a).await,
            LoadtestCommand::Sink(a) => run_sink(a).await,
            LoadtestCommand::BenchCollector(_) | LoadtestCommand::Scenario(_) => {
                bail!("loadtest: bench-collector and scenario run on their own runtimes")
            }
            LoadtestCommand::Compare(_) => bail!("loadtest: compare needs no runtime"),
        }
    })
}

fn run_bench(a: BenchArgs) -> Result<()> {
    let promshard = match a.promshard_binary {
        Some(p) => p,
        None => std::env::current_exe()
            .context("bench-collector: cannot find this binary; pass --promshard-binary")?,
    };
    let config = BenchConfig {
        targets: a.targets,
        series_per_target: a.series,
        zipf_exponent: a.zipf,
        churn_fraction: a.churn,
        churn_every: a.churn_every,
        fleet_base: a.fleet_listen,
        fleet_threads: a.fleet_threads,
        interval: a.interval,
        warmup: a.warmup,
        duration: a.duration,
        drain: a.drain,
        max_samples_per_send: a.max_samples_per_send,
        contenders: a.contenders,
        binaries: Binaries {
            promshard,
            vmagent: a.vmagent_binary,
            prometheus: a.prometheus_binary,
        },
    };
    let report = crate::bench::run(&config)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

fn run_scenario(a: ScenarioArgs) -> Result<()> {
    let binary = match a.binary {
        Some(p) => p,
        None => {
            std::env::current_exe().context("scenario: cannot find this binary; pass --binary")?
        }
    };
    let mut config = crate::scenario::ScenarioConfig::new(a.name, binary);
    config.short = a.short;
    config.keep_dir = a.keep_dir;
    config.interval = a.interval;
    config.targets = a.targets;
    config.series_per_target = a.series;
    config.shards = a.shards;
    config.duration = a.duration;
    let report = crate::scenario::run(&config)?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &a.report_json {
        std::fs::write(path, &json)
            .with_context(|| format!("scenario: cannot write {}", path.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", report.to_text());
    }
    if !report.pass {
        let failed: Vec<&str> = report
            .claims
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.claim.as_str())
            .collect();
        bail!("scenario {}: FAIL: {}", report.scenario, failed.join("; "));
    }
    Ok(())
}

async fn run_fleet(a: FleetArgs) -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        targets: a.targets,
        series_per_target: a.series,
        zipf_exponent: a.zipf,
        churn_fraction: a.churn,
        churn_every: a.churn_every,
        base: a.listen,
        slow_targets: a.slow,
        slow_delay: a.slow_delay,
        error_targets: a.broken_500,
        malformed_targets: a.broken_malformed,
        hanging_targets: a.broken_hang,
    })
    .await?;
    if let Some(path) = &a.file_sd {
        std::fs::write(path, fleet.file_sd_json())
            .with_context(|| format!("fleet: cannot write file_sd {}", path.display()))?;
    }
    let targets = fleet.targets();
    tracing::info!(
        targets = targets.len(),
        expected_series = fleet.expected_series_total(),
        first = targets.first().map_or("", String::as_str),
        last = targets.last().map_or("", String::as_str),
        "fleet serving /metrics; Ctrl-C stops"
    );
    tokio::signal::ctrl_c()
        .await
        .context("fleet: cannot wait for Ctrl-C")?;
    fleet.stop().await;
    Ok(())
}

async fn run_sink(a: SinkArgs) -> Result<()> {
    let sink = Sink::start(SinkConfig {
        listen: a.listen,
        interval: a.interval,
        record_labels: !a.no_labels,
    })
    .await?;
    tracing::info!(url = %sink.write_url(), "sink receiving; Ctrl-C stops");
    let mut tick = tokio::time::interval(a.summary_every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => log_summary(&sink),
            r = tokio::signal::ctrl_c() => {
                r.context("sink: cannot wait for Ctrl-C")?;
                break;
            }
        }
    }
    log_summary(&sink);
    println!("{}", serde_json::to_string_pretty(&sink.summary())?);
    sink.stop().await;
    Ok(())
}

fn log_summary(sink: &Sink) {
    let s = sink.summary();
    tracing::info!(
        requests = s.requests,
        rejected = s.rejected.values().sum::<u64>(),
        injected = s.injected_faults,
        series = s.totals.series,
        samples = s.totals.samples,
        duplicates = s.totals.duplicates,
        out_of_order = s.totals.out_of_order,
        gaps = s.totals.gaps,
        stale = s.totals.stale_markers,
        "sink summary"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }
}
