//! `promshard demo`: `promshard local` (the coordinator and N native shards
//! as child processes) plus a built-in target fleet with skewed sizes and
//! the verifying sink, all on loopback, with a status line every few
//! seconds: shards, targets, series per shard, samples/s, and the sink's
//! gaps and duplicates so far.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use promshard_coordinator::server::Server;
use promshard_loadtest::fleet::{Fleet, FleetConfig};
use promshard_loadtest::sink::{Sink, SinkConfig};
use promshard_promlib::duration::Duration as PromDuration;

use crate::coordinator_cmd::{CoordinatorFlags, local_provider, runtime, stop_signal};
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
    /// Native shards.
    #[arg(long, default_value_t = 3)]
    shards: usize,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = prom_duration)]
    duration: Option<Duration>,
    /// Address of the coordinator's admin API.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9300")]
    listen_address: SocketAddr,
    /// Where shards attach (port 0: any free port).
    #[arg(long = "grpc.listen-address", default_value = "127.0.0.1:0")]
    grpc_address: SocketAddr,
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
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    runtime()?.block_on(demo(args))
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

    // Capacity so that the fleet fills the shards to about 60%.
    let total = fleet.expected_series_total() as u64 + 5 * args.targets as u64;
    let per_shard = (total as f64 / args.shards as f64 / 0.6).ceil() as u64;
    let interval_s = args.interval.as_secs_f64();
    let flags = CoordinatorFlags {
        config_file: config_file.clone(),
        web_listen: args.listen_address,
        grpc_listen: args.grpc_address,
        token_file: None,
        grpc_tls_cert: None,
        grpc_tls_key: None,
        max_series: per_shard.max(100),
        max_samples_per_second: (per_shard as f64 / interval_s).max(10.0),
        plan_interval: Duration::from_secs(5),
        imbalance_threshold: 1.10,
        high_watermark: 0.9,
        move_budget: 0.1,
        target_utilization: 0.7,
        handover_lead: (args.interval * 2).max(Duration::from_secs(2)),
        ack_timeout: Duration::from_secs(10),
        failure_timeout: Duration::from_secs(10),
        shard_grace: Duration::from_secs(5),
        explore: true,
    };
    let mut opts = flags.server_options(args.shards, args.shards)?;
    opts.control.initial_wait = Duration::from_millis(500);
    let provider = local_provider(
        &flags,
        opts.grpc_listen,
        dir.path().join("shards"),
        vec![("RUST_LOG".to_string(), "warn".to_string())],
    )?;
    let server = Server::start(opts, provider)
        .await
        .context("starting the coordinator")?;
    server
        .provider
        .scale_to(args.shards, Duration::from_secs(10))
        .await
        .context("starting the shards")?;
    let admin = server
        .coordinator
        .admin(std::sync::Arc::clone(&server.provider));

    println!(
        "promshard demo: {} targets (Zipf {}), {} series, interval {interval}, {} native shards",
        args.targets,
        args.zipf,
        fleet.expected_series_total(),
        args.shards
    );
    println!(
        "  coordinator    http://{}/api/v1/shards  /api/v1/targets  /api/v1/plan  /metrics",
        server.web_addr()
    );
    println!("  sink summary   http://{}/summary", sink.addr());
    println!("  config         {}", config_file.display());
    println!("Ctrl-C stops.");

    let started = Instant::now();
    let mut tick = tokio::time::interval(args.status_every);
    tick.tick().await;
    let mut last_samples = 0u64;
    let mut last_at = Instant::now();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stop => true,
        };
        let s = sink.summary();
        let now = Instant::now();
        let rate = (s.totals.samples - last_samples) as f64 / (now - last_at).as_secs_f64();
        last_samples = s.totals.samples;
        last_at = now;
        let shards = tokio::task::block_in_place(|| admin.shards());
        let per_shard: Vec<String> = shards
            .iter()
            .map(|v| format!("{}={}", v.id.trim_start_matches("shard-"), v.series))
            .collect();
        let assigned: usize = shards.iter().map(|v| v.targets).sum();
        println!(
            "[{:>5.0}s] shards {} targets {}/{} series/shard [{}]  sink: series {} {:>8.0} samples/s  gaps {} duplicates {} out-of-order {} stale {}",
            started.elapsed().as_secs_f64(),
            shards.iter().filter(|v| v.health == "up").count(),
            assigned,
            args.targets,
            per_shard.join(" "),
            s.totals.series,
            rate,
            s.totals.gaps,
            s.totals.duplicates,
            s.totals.out_of_order,
            s.totals.stale_markers,
        );
        if stopping || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    // The shards deliver what their WALs hold before they exit.
    server.shutdown(Duration::from_secs(10)).await;
    let s = sink.summary();
    println!(
        "done: series {} samples {} gaps {} duplicates {} out-of-order {}",
        s.totals.series,
        s.totals.samples,
        s.totals.gaps,
        s.totals.duplicates,
        s.totals.out_of_order,
    );
    sink.stop().await;
    fleet.stop().await;
    Ok(())
}
