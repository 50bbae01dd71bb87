//! `promshard coordinator` and `promshard local`: the coordinator alone
//! (shards attach by themselves), or with N native shards on this host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use promshard_coordinator::control::ControlOptions;
use promshard_coordinator::hub::{BearerToken, HubOptions};
use promshard_coordinator::model::Capacity;
use promshard_coordinator::provider::{LocalOptions, LocalProvider, ShardProvider};
use promshard_coordinator::scale::ScaleOptions;
use promshard_coordinator::server::{Server, ServerOptions, TlsFiles};

use crate::prom_duration;

/// Flags of the coordinator itself (shared by `coordinator`, `local` and
/// `demo`).
#[derive(clap::Args, Debug, Clone)]
pub struct CoordinatorFlags {
    /// The prometheus.yml whose targets are sharded.
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    pub config_file: PathBuf,
    /// Admin HTTP API.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9300")]
    pub web_listen: SocketAddr,
    /// gRPC endpoint shards attach to.
    #[arg(long = "grpc.listen-address", default_value = "127.0.0.1:9301")]
    pub grpc_listen: SocketAddr,
    /// File with a bearer token required from shards and on the admin
    /// API's POST endpoints.
    #[arg(long = "auth.token-file")]
    pub token_file: Option<PathBuf>,
    /// Serve gRPC over TLS with this certificate (PEM; needs the key too).
    #[arg(long = "grpc.tls-cert-file", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The key of --grpc.tls-cert-file (PEM).
    #[arg(long = "grpc.tls-key-file", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Capacity of a shard that announces none: series.
    #[arg(long = "shard.max-series", default_value_t = 1_000_000)]
    pub max_series: u64,
    /// Capacity of a shard that announces none: samples per second.
    #[arg(long = "shard.max-samples-per-second", default_value_t = 100_000.0)]
    pub max_samples_per_second: f64,
    /// Planning rounds at least this often.
    #[arg(long = "plan.interval", default_value = "10s", value_parser = prom_duration)]
    pub plan_interval: Duration,
    /// Imbalance (max/mean utilization) that triggers rebalancing.
    #[arg(long = "plan.imbalance-threshold", default_value_t = 1.10)]
    pub imbalance_threshold: f64,
    /// Utilization above which a shard sheds targets.
    #[arg(long = "plan.high-watermark", default_value_t = 0.9)]
    pub high_watermark: f64,
    /// At most this fraction of all series moved per round by rebalancing.
    #[arg(long = "plan.move-budget", default_value_t = 0.1)]
    pub move_budget: f64,
    /// Utilization the desired shard count is sized for.
    #[arg(long = "plan.target-utilization", default_value_t = 0.7)]
    pub target_utilization: f64,
    /// How far ahead a handover starts on the receiving shard.
    #[arg(long = "handover.lead", default_value = "5s", value_parser = prom_duration)]
    pub handover_lead: Duration,
    /// How long a shard has to acknowledge an assignment delta (a
    /// handover's acks must also come within half the time left before its
    /// start, or it is cancelled).
    #[arg(long = "handover.ack-timeout", default_value = "10s", value_parser = prom_duration)]
    pub ack_timeout: Duration,
    /// A shard silent this long is considered gone.
    #[arg(long = "shard.failure-timeout", default_value = "15s", value_parser = prom_duration)]
    pub failure_timeout: Duration,
    /// A detached shard keeps its targets this long (it may be restarting).
    #[arg(long = "shard.grace", default_value = "5s", value_parser = prom_duration)]
    pub shard_grace: Duration,
    /// Explore (scrape once) new targets of jobs without history.
    #[arg(long = "explore.enabled", default_value_t = true, action = clap::ArgAction::Set)]
    pub explore: bool,
}

impl CoordinatorFlags {
    fn token(&self) -> Result<Option<String>> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            bail!("the token file {} is empty", path.display());
        }
        Ok(Some(t))
    }

    /// The server's options from the flags. A port 0 becomes a free port
    /// now: local shards must be told the gRPC address before it is bound.
    pub fn server_options(&self, min_shards: usize, max_shards: usize) -> Result<ServerOptions> {
        let capacity = Capacity {
            max_series: self.max_series,
            max_samples_per_second: self.max_samples_per_second,
        };
        let mut control = ControlOptions::new(self.config_file.clone());
        control.default_capacity = capacity;
        control.planner.shard_capacity = capacity;
        control.planner.imbalance_threshold = self.imbalance_threshold;
        control.planner.high_watermark = self.high_watermark;
        control.planner.move_budget = self.move_budget;
        control.planner.target_utilization = self.target_utilization;
        control.planner.min_shards = min_shards;
        control.planner.max_shards = max_shards;
        control.plan_interval = self.plan_interval;
        control.handover_lead = self.handover_lead;
        control.shard_grace = self.shard_grace;
        if !self.explore {
            control.explore = None;
        }
        let token = self.token()?;
        let hub = HubOptions {
            failure_timeout: self.failure_timeout,
            ping_interval: (self.failure_timeout / 3).max(Duration::from_millis(100)),
            ack_timeout: self.ack_timeout,
            auth_token: token
                .clone()
                .map(BearerToken::new)
                .transpose()
                .context("the bearer token")?,
            ..HubOptions::default()
        };
        Ok(ServerOptions {
            control,
            hub,
            grpc_listen: with_port(self.grpc_listen)?,
            web_listen: self.web_listen,
            web_token: token,
            grpc_tls: match (&self.grpc_tls_cert, &self.grpc_tls_key) {
                (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                }),
                _ => None,
            },
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub flags: CoordinatorFlags,
    /// Fewest shards the desired count advises.
    #[arg(long = "shards.min", default_value_t = 1)]
    pub min_shards: usize,
    /// Most shards the desired count advises.
    #[arg(long = "shards.max", default_value_t = 64)]
    pub max_shards: usize,
}

#[derive(clap::Args, Debug)]
pub struct LocalArgs {
    #[command(flatten)]
    pub flags: CoordinatorFlags,
    /// Native shards to run.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// With --shards.max: scale automatically between these.
    #[arg(long = "shards.min")]
    pub min_shards: Option<usize>,
    #[arg(long = "shards.max")]
    pub max_shards: Option<usize>,
    /// Where the shards keep their WALs (shard-N/ below it).
    #[arg(long = "storage.path", default_value = "data-local/")]
    pub storage: PathBuf,
    /// How long each shard gets to deliver its WAL on exit.
    #[arg(long = "shutdown.grace", default_value = "30s", value_parser = prom_duration)]
    pub grace: Duration,
    /// Scale-in only after the desired shard count stayed lower this long.
    #[arg(long = "scale.cooldown", default_value = "2m", value_parser = prom_duration)]
    pub scale_cooldown: Duration,
    /// At most one scale-out per this long.
    #[arg(long = "scale.up-interval", default_value = "30s", value_parser = prom_duration)]
    pub scale_up_interval: Duration,
    /// A drain (scale-in) that has not moved all targets off its shard by
    /// then is called off.
    #[arg(long = "scale.drain-timeout", default_value = "5m", value_parser = prom_duration)]
    pub scale_drain_timeout: Duration,
}

/// `addr`, with a free port when its port is 0.
fn with_port(addr: SocketAddr) -> Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(l.local_addr()?)
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Waits for SIGINT or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Reloads on SIGHUP until the process ends.
fn reload_on_sighup(server: &Server) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    let c = server.coordinator.handle();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match c.reload().await {
                Ok(()) => tracing::info!("config reloaded (SIGHUP)"),
                Err(e) => {
                    tracing::error!(error = %e, "config reload (SIGHUP) failed; the old config stays")
                }
            }
        }
    });
}

pub fn run_coordinator(args: CoordinatorArgs) -> Result<()> {
    if args.min_shards > args.max_shards {
        bail!("--shards.min must not exceed --shards.max");
    }
    runtime()?.block_on(async {
        let opts = args
            .flags
            .server_options(args.min_shards, args.max_shards)?;
        let server = Server::start(opts, ShardProvider::Static).await?;
        reload_on_sighup(&server);
        eprintln!(
            "promshard coordinator: admin API http://{} , shards attach to http://{}",
            server.web_addr(),
            server.grpc_addr()
        );
        stop_signal().await;
        server.shutdown(Duration::ZERO).await;
        Ok(())
    })
}

/// The local provider for `flags`, its shards dialing `grpc`.
pub fn local_provider(
    flags: &CoordinatorFlags,
    grpc: SocketAddr,
    storage: PathBuf,
    env: Vec<(String, String)>,
) -> Result<ShardProvider> {
    let binary = std::env::current_exe().context("finding this binary")?;
    let mut extra_args = Vec::new();
    if let Some(t) = &flags.token_file {
        extra_args.push(format!("--coordinator.token-file={}", t.display()));
    }
    // With TLS, the shards trust the coordinator's own certificate.
    let scheme = match &flags.grpc_tls_cert {
        Some(cert) => {
            extra_args.push(format!("--coordinator.tls-ca-file={}", cert.display()));
            "https"
        }
        None => "http",
    };
    Ok(ShardProvider::Local(LocalProvider::new(LocalOptions {
        binary,
        config_file: flags.config_file.clone(),
        storage_dir: storage,
        coordinator_address: format!("{scheme}://{grpc}"),
        listen_host: grpc.ip().to_string(),
        max_series: flags.max_series,
        max_samples_per_second: flags.max_samples_per_second,
        extra_args,
        restart_backoff: Duration::from_millis(500),
        env,
    })))
}

pub fn run_local(args: LocalArgs) -> Result<()> {
    let (min, max) = match (args.min_shards, args.max_shards) {
        (Some(a), Some(b)) if a > b => bail!("--shards.min must not exceed --shards.max"),
        (a, b) => (a.unwrap_or(args.shards), b.unwrap_or(args.shards)),
    };
    let autoscale = min != max;
    runtime()?.block_on(async {
        let opts = args.flags.server_options(min, max)?;
        let provider = local_provider(&args.flags, opts.grpc_listen, args.storage.clone(), Vec::new())?;
        let server = Server::start(opts, provider).await?;
        let start = args.shards.clamp(min.max(1), max.max(1));
        server
            .provider
            .scale_to(start, args.grace)
            .await
            .context("starting the shards")?;
        reload_on_sighup(&server);
        eprintln!(
            "promshard local: {start} shard(s); admin API http://{}/api/v1/shards ; Ctrl-C stops everything",
            server.web_addr()
        );
        let scale = ScaleOptions {
            min_shards: min,
            max_shards: max,
            up_every: args.scale_up_interval,
            cooldown: args.scale_cooldown,
            drain_limit: args.scale_drain_timeout,
            grace: args.grace,
            ..ScaleOptions::default()
        };
        let scaler = autoscale.then(|| {
            tokio::spawn(promshard_coordinator::scale::follow_desired(
                server.coordinator.handle(),
                std::sync::Arc::clone(&server.provider),
                scale,
            ))
        });
        stop_signal().await;
        eprintln!("promshard local: stopping the shards (WALs are delivered first)...");
        if let Some(s) = scaler {
            s.abort();
        }
        server.shutdown(args.grace).await;
        Ok(())
    })
}
