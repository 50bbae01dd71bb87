//! `promshard collector`: a standalone native shard, a drop-in for
//! `prometheus --enable-feature=agent` on the same prometheus.yml.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use promshard_collector::run::{Collector, CollectorOptions, TargetSource};
use promshard_collector::wal::{FsyncPolicy, WalOptions};
use promshard_promlib::config::ByteSize;
use promshard_sidecar::{Agent, AgentOptions, NativeBackend};

use crate::sidecar_cmd::ShardArgs;

use crate::prom_duration;

#[derive(clap::Args, Debug)]
pub struct CollectorArgs {
    /// The prometheus.yml to read (reloaded on SIGHUP and POST /-/reload).
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    config_file: PathBuf,
    /// Directory of the write-ahead log (`<path>/wal`).
    #[arg(long = "storage.path", default_value = "data-collector/")]
    storage_path: PathBuf,
    /// Address of the HTTP API (/metrics, /-/healthy, /-/ready, /-/reload,
    /// /api/v1/targets).
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen_address: SocketAddr,
    /// On SIGINT/SIGTERM: how long to keep delivering what the WAL holds
    /// before exiting (what is left is sent after the next start).
    #[arg(long = "shutdown.grace", default_value = "30s", value_parser = prom_duration)]
    shutdown_grace: Duration,
    /// When WAL appends are fsynced: `always`, `never`, or an interval
    /// such as `1s`.
    #[arg(long = "storage.wal.fsync", default_value = "1s")]
    wal_fsync: String,
    /// Size at which a WAL segment is closed. Each segment repeats the
    /// definition of every series it uses (about 100 bytes each), so a
    /// segment should be well above 100 bytes x the shard's series.
    #[arg(long = "storage.wal.segment-size", default_value = "256MiB")]
    wal_segment_size: ByteSize,
    /// Bound on the WAL's size; over it the oldest undelivered data is
    /// dropped (counted). 0: no bound.
    #[arg(long = "storage.wal.max-size", default_value = "0")]
    wal_max_size: ByteSize,
    /// Bound on the age of undelivered WAL data; older segments are
    /// dropped (counted). 0s: no bound.
    #[arg(long = "storage.wal.max-age", default_value = "0s", value_parser = prom_duration)]
    wal_max_age: Duration,
    /// Coordinated mode: take jobs and targets from this promshard
    /// coordinator (`http://HOST:PORT` or `https://...`) instead of the
    /// config file's service discovery; the file supplies only `global`
    /// and `remote_write`.
    #[arg(long = "coordinator.address")]
    coordinator_address: Option<String>,
    /// Threads running scrapes, the pipeline and remote write (default:
    /// one per CPU). Fewer threads than CPUs can cost less CPU per sample
    /// while the collector is mostly idle (fewer wake-ups of parked
    /// threads); one thread handles about a million samples per second.
    #[arg(long = "runtime.worker-threads")]
    worker_threads: Option<std::num::NonZeroUsize>,
    #[command(flatten)]
    shard: ShardArgs,
}

fn fsync_policy(s: &str) -> Result<FsyncPolicy> {
    Ok(match s {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        other => {
            let d = prom_duration(other)
                .map_err(anyhow::Error::msg)
                .with_context(|| {
                    format!("--storage.wal.fsync={other:?}: want always, never or a duration")
                })?;
            if d.is_zero() {
                bail!("--storage.wal.fsync: the interval must be positive");
            }
            FsyncPolicy::Interval(d)
        }
    })
}

pub fn run(args: CollectorArgs) -> Result<()> {
    let wal = WalOptions {
        segment_size: args.wal_segment_size.0.max(1 << 16),
        fsync: fsync_policy(&args.wal_fsync)?,
        max_bytes: (args.wal_max_size.0 > 0).then_some(args.wal_max_size.0),
        max_age: (!args.wal_max_age.is_zero()).then_some(args.wal_max_age),
        ..WalOptions::default()
    };
    let options = CollectorOptions {
        config_file: args.config_file,
        storage_path: args.storage_path,
        listen_address: args.listen_address,
        wal,
    };
    let agent = args
        .coordinator_address
        .map(|address| args.shard.agent_options(address, args.listen_address));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.get());
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(options, args.shutdown_grace, agent))
}

async fn serve(
    options: CollectorOptions,
    grace: Duration,
    agent: Option<AgentOptions>,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let source = match agent {
        Some(_) => TargetSource::External,
        None => TargetSource::Discovery,
    };
    let collector = Collector::start_with(options, source)
        .await
        .context("starting the collector")?;
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = match agent {
        Some(opts) => {
            let backend = Arc::new(NativeBackend::new(collector.handle()).await);
            let agent = Agent::new(opts, backend);
            Some(tokio::spawn(agent.run(async move {
                let _ = agent_stopped.await;
            })))
        }
        None => None,
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // Errors are logged by reload; the old config stays.
                let _ = collector.reload().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = stop_agent.send(());
    if let Some(t) = agent_task {
        let _ = t.await;
    }
    tracing::info!(grace = ?grace, "shutting down: delivering what the WAL holds");
    let report = collector.shutdown(grace).await;
    if report.undelivered_samples > 0 {
        tracing::warn!(
            samples = report.undelivered_samples,
            "not delivered within the grace period; kept in the WAL for the next start"
        );
    }
    Ok(())
}
