//! `promshard demo`: a built-in target fleet (skewed sizes), the verifying
//! sink, and a native collector scraping the fleet and remote-writing to the
//! sink, all on loopback, with a status line every few seconds.
//!
//! Today it runs one native shard; with the coordinator it becomes
//! `promshard local` plus the fleet and the sink.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use promshard_collector::run::{Collector, CollectorOptions};
use promshard_collector::wal::WalOptions;
use promshard_loadtest::fleet::{Fleet, FleetConfig};
use promshard_loadtest::sink::{Sink, SinkConfig};
use promshard_promlib::duration::Duration as PromDuration;

use crate::prom_duration;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of fake targets.
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Mean series per target.
    #[arg(long, default_value_t = 300)]
    series: usize,
    /// Zipf exponent of the target size skew (0: all the same).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Scrape interval.
    #[arg(long, default_value = "5s", value_parser = prom_duration)]
    interval: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = prom_duration)]
    duration: Option<Duration>,
    /// Address of the collector's HTTP API.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9090")]
    listen_address: SocketAddr,
    /// Loopback address of fake target 0 (target i uses the address i
    /// further on, ephemeral ports).
    #[arg(long = "fleet.base", default_value = "127.0.10.1")]
    fleet_base: Ipv4Addr,
    /// How often the status line is printed.
    #[arg(long = "status.every", default_value = "5s", value_parser = prom_duration)]
    status_every: Duration,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if args.interval.is_zero() {
        bail!("--interval must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("creating the demo's temp dir")?;
    let fleet = Fleet::start(FleetConfig {
        targets: args.targets,
        series_per_target: args.series,
        zipf_exponent: args.zipf,
        base: SocketAddrV4::new(args.fleet_base, 0),
        ..FleetConfig::default()
    })
    .await
    .context("starting the target fleet")?;
    let sink = Sink::start(SinkConfig {
        record_labels: false,
        ..SinkConfig::default()
    })
    .await
    .context("starting the sink")?;
    let sd = dir.path().join("targets.json");
    std::fs::write(&sd, fleet.file_sd_json()).context("writing the file_sd file")?;
    let interval = PromDuration::from_millis(args.interval.as_millis() as u64);
    let config = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  external_labels:\n    demo: promshard\n\
scrape_configs:\n  - job_name: fleet\n    file_sd_configs:\n      - files: [targets.json]\n\
remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
        sink.write_url()
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).context("writing the demo prometheus.yml")?;
    let collector = Collector::start(CollectorOptions {
        config_file: config_file.clone(),
        storage_path: dir.path().join("data"),
        listen_address: args.listen_address,
        wal: WalOptions::default(),
    })
    .await
    .context("starting the collector")?;

    println!(
        "promshard demo: {} targets, {} series, interval {interval}",
        args.targets,
        fleet.expected_series_total()
    );
    println!(
        "  collector API  http://{}/api/v1/targets  /metrics",
        collector.local_addr()
    );
    println!("  sink summary   http://{}/summary", sink.addr());
    println!("  config         {}", config_file.display());
    println!("Ctrl-C stops.");

    let started = Instant::now();
    let mut tick = tokio::time::interval(args.status_every);
    tick.tick().await;
    let mut last_samples = 0u64;
    let mut last_at = Instant::now();
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = tokio::signal::ctrl_c() => true,
        };
        let s = sink.summary();
        let now = Instant::now();
        let rate = (s.totals.samples - last_samples) as f64 / (now - last_at).as_secs_f64();
        last_samples = s.totals.samples;
        last_at = now;
        println!(
            "[{:>5.0}s] series {:>8}  samples {:>10}  {:>9.0} samples/s  gaps {}  duplicates {}  out-of-order {}  stale {}",
            started.elapsed().as_secs_f64(),
            s.totals.series,
            s.totals.samples,
            rate,
            s.totals.gaps,
            s.totals.duplicates,
            s.totals.out_of_order,
            s.totals.stale_markers,
        );
        if stop || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    let report = collector.shutdown(Duration::from_secs(10)).await;
    let s = sink.summary();
    println!(
        "done: series {} samples {} gaps {} duplicates {} out-of-order {} undelivered {}",
        s.totals.series,
        s.totals.samples,
        s.totals.gaps,
        s.totals.duplicates,
        s.totals.out_of_order,
        report.undelivered_samples
    );
    sink.stop().await;
    fleet.stop().await;
    Ok(())
}
