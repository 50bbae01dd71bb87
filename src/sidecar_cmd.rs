//! `promshard sidecar`: the shard agent next to an unmodified Prometheus
//! (agent or server mode, started with `--web.enable-lifecycle`) or
//! vmagent. The sidecar writes the backend's config file, serves its
//! http_sd and proxies its scrapes; it does not start the backend: point
//! the backend at `--backend.config-out`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use promshard_sidecar::external::default_pickup_lag;
use promshard_sidecar::{Agent, AgentOptions, ExternalBackend, ExternalKind, ExternalOptions};

use crate::prom_duration;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BackendArg {
    Prometheus,
    Vmagent,
}

#[derive(clap::Args, Debug)]
pub struct SidecarArgs {
    /// The backend next to the sidecar.
    #[arg(long = "backend", value_enum)]
    backend: BackendArg,
    /// The shard's prometheus.yml: its `global` and `remote_write` go into
    /// the backend's config (its jobs are ignored; jobs come from the
    /// coordinator). vmagent takes remote write from its own flags.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// The backend's config file, written by the sidecar (Prometheus'
    /// `--config.file`, vmagent's `-promscrape.config`).
    #[arg(long = "backend.config-out")]
    config_out: PathBuf,
    /// The backend's base URL, for `POST /-/reload` (default:
    /// http://127.0.0.1:9090 for Prometheus, http://127.0.0.1:8429 for
    /// vmagent).
    #[arg(long = "backend.url")]
    backend_url: Option<String>,
    /// Reload the backend by SIGHUP to this pid instead of HTTP.
    #[arg(long = "backend.pid")]
    backend_pid: Option<u32>,
    /// How often the backend polls the sidecar's http_sd (Prometheus'
    /// `refresh_interval`; give vmagent the same
    /// `-promscrape.httpSDCheckInterval`). Assignment changes reach the
    /// backend this much later (Prometheus: plus up to 5 s).
    #[arg(long = "backend.sd-refresh-interval", default_value = "5s", value_parser = prom_duration)]
    sd_refresh_interval: Duration,
    /// Address of the sidecar's HTTP server (http_sd, scrape proxy).
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9091")]
    listen_address: SocketAddr,
    /// `host:port` at which the backend reaches the sidecar (default: the
    /// listen address, 127.0.0.1 for an unspecified host).
    #[arg(long = "web.sd-address")]
    sd_address: Option<String>,
    /// The promshard coordinator (`http://HOST:PORT` or `https://...`).
    #[arg(long = "coordinator.address")]
    coordinator_address: String,
    #[command(flatten)]
    shard: ShardArgs,
}

/// The shard agent's flags, shared by `promshard sidecar` and
/// `promshard collector --coordinator.address`.
#[derive(clap::Args, Debug)]
pub struct ShardArgs {
    /// File with a bearer token for the coordinator.
    #[arg(long = "coordinator.token-file")]
    coordinator_token_file: Option<PathBuf>,
    /// PEM CA bundle for an https:// coordinator (default: system roots).
    #[arg(long = "coordinator.tls-ca-file")]
    coordinator_tls_ca_file: Option<PathBuf>,
    /// This shard's stable id (with --coordinator.address).
    #[arg(long = "shard.id", default_value = "shard-0")]
    shard_id: String,
    /// Capacity announced to the coordinator: active series.
    #[arg(long = "shard.max-series", default_value_t = 1_000_000)]
    shard_max_series: u64,
    /// Capacity announced to the coordinator: samples per second.
    #[arg(long = "shard.max-samples-per-second", default_value_t = 100_000.0)]
    shard_max_samples_per_second: f64,
    /// Address of this shard's HTTP API as the coordinator should see it
    /// (default: http://<web.listen-address>).
    #[arg(long = "shard.address")]
    shard_address: Option<String>,
    /// How often per-target load is reported to the coordinator.
    #[arg(long = "shard.report-interval", default_value = "15s", value_parser = prom_duration)]
    shard_report_interval: Duration,
}

impl ShardArgs {
    /// The agent's options for `coordinator`; the shard's address defaults
    /// to `http://<listen>`.
    pub fn agent_options(self, coordinator: String, listen: SocketAddr) -> AgentOptions {
        let mut a = AgentOptions::new(coordinator, self.shard_id);
        a.max_series = self.shard_max_series;
        a.max_samples_per_second = self.shard_max_samples_per_second;
        a.address = self
            .shard_address
            .unwrap_or_else(|| format!("http://{listen}"));
        a.token_file = self.coordinator_token_file;
        a.tls.ca_file = self.coordinator_tls_ca_file;
        a.report_interval = self.shard_report_interval;
        a
    }
}

pub fn run(args: SidecarArgs) -> Result<()> {
    let kind = match args.backend {
        BackendArg::Prometheus => ExternalKind::Prometheus,
        BackendArg::Vmagent => ExternalKind::Vmagent,
    };
    let sd_address = args.sd_address.clone().unwrap_or_else(|| {
        let mut a = args.listen_address;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        a.to_string()
    });
    let mut ext = ExternalOptions::new(kind, args.config_out, sd_address);
    ext.config_file = args.config_file;
    ext.backend_pid = args.backend_pid;
    ext.backend_url = Some(args.backend_url.unwrap_or_else(|| {
        match kind {
            ExternalKind::Prometheus => "http://127.0.0.1:9090",
            ExternalKind::Vmagent => "http://127.0.0.1:8429",
        }
        .to_string()
    }));
    ext.refresh_interval = args.sd_refresh_interval.max(Duration::from_millis(100));
    ext.pickup_lag = default_pickup_lag(kind, ext.refresh_interval);

    let agent = args
        .shard
        .agent_options(args.coordinator_address, args.listen_address);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(ext, agent, args.listen_address))
}

async fn serve(ext: ExternalOptions, agent: AgentOptions, listen: SocketAddr) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let out = ext.config_out.display().to_string();
    let backend = Arc::new(ExternalBackend::new(ext).context("setting up the backend")?);
    tracing::info!(config_out = %out, "backend config written; start (or keep) the backend on it");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let server = backend.spawn_server(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(Agent::new(agent, backend).run(async move {
        let _ = stopped.await;
    }));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = stop.send(());
    let _ = agent.await;
    // The backend keeps its last config; its http_sd goes away with us.
    server.abort();
    Ok(())
}
