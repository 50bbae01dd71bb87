//! A standalone collector: config, WAL, scrape manager fed by service
//! discovery, remote-write shippers and the HTTP API, with reload and a
//! graceful shutdown. The binary's `promshard collector` is a thin front
//! door over [`Collector`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::config::{self, Config, ConfigError};
use promshard_promlib::discovery::DiscoveryError;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use crate::api::{ApiState, BoxFuture};
use crate::discovery_feed::{DiscoveryFeed, DroppedTargets};
use crate::pipeline::RefAllocator;
use crate::scrape::{BatchSink, ManagerError, ScrapeManager};
use crate::ship::{ShipError, Shippers};
use crate::wal::{Wal, WalError, WalOptions};

/// Everything `promshard collector` takes from its flags.
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    pub config_file: PathBuf,
    /// The WAL lives in `<storage_path>/wal`.
    pub storage_path: PathBuf,
    pub listen_address: SocketAddr,
    pub wal: WalOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the WAL in {dir}: {source}")]
    Wal {
        dir: String,
        #[source]
        source: WalError,
    },
    #[error(transparent)]
    Scrape(#[from] ManagerError),
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error("service discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where a collector's targets come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetSource {
    /// Its own service discovery of the config file (standalone).
    #[default]
    Discovery,
    /// Someone else (the shard agent) sets the jobs through
    /// [`CollectorHandle::apply_config`] and the targets through
    /// [`CollectorHandle::scrape_manager`]; the config file supplies only
    /// `global` and `remote_write`, and its `scrape_configs` are ignored.
    External,
}

/// What a shutdown left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Samples not delivered within the grace period; they stay in the WAL
    /// and are sent after the next start.
    pub undelivered_samples: u64,
}

/// The parts a reload replaces.
struct Live {
    config: Arc<Config>,
    discovery: Option<DiscoveryFeed>,
    shippers: Option<Shippers>,
}

pub(crate) struct Inner {
    options: CollectorOptions,
    wal: Arc<Wal>,
    manager: Arc<ScrapeManager>,
    dropped: Arc<Mutex<DroppedTargets>>,
    live: AsyncMutex<Live>,
    ready: Arc<AtomicBool>,
    source: TargetSource,
}

/// A running collector.
pub struct Collector {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Collector {
    /// Loads the config, opens (and replays) the WAL, starts shipping,
    /// discovery and scraping, and serves the HTTP API. Fails, with nothing
    /// left running, if any of it cannot start.
    pub async fn start(options: CollectorOptions) -> Result<Collector, CollectorError> {
        Self::start_with(options, TargetSource::Discovery).await
    }

    /// [`Collector::start`] with the targets coming from `source`. With
    /// [`TargetSource::External`] no discovery runs and no job is
    /// configured until [`CollectorHandle::apply_config`] sets them.
    pub async fn start_with(
        options: CollectorOptions,
        source: TargetSource,
    ) -> Result<Collector, CollectorError> {
        let mut cfg = config::load_file(&options.config_file)?;
        if source == TargetSource::External {
            cfg.scrape_configs.clear();
        }
        let cfg = Arc::new(cfg);
        let base_dir = base_dir(&options.config_file);
        let wal_dir = options.storage_path.join("wal");
        let wal =
            Wal::open(&wal_dir, options.wal.clone()).map_err(|source| CollectorError::Wal {
                dir: wal_dir.display().to_string(),
                source,
            })?;
        let wal = Arc::new(wal);
        let refs = Arc::new(RefAllocator::new(wal.next_series_ref()));
        let shippers = Shippers::start(wal.clone(), &cfg.remote_write, &base_dir)?;
        let sink: Arc<dyn BatchSink> = wal.clone();
        let manager = Arc::new(ScrapeManager::new(sink, refs, base_dir.clone()));
        manager.set_config(&cfg)?;
        let dropped = Arc::new(Mutex::new(DroppedTargets::default()));
        let discovery = match source {
            TargetSource::Discovery => Some(DiscoveryFeed::start(
                cfg.clone(),
                manager.clone(),
                dropped.clone(),
            )?),
            TargetSource::External => None,
        };
        let listener = tokio::net::TcpListener::bind(options.listen_address)
            .await
            .map_err(|source| CollectorError::Listen {
                address: options.listen_address,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| CollectorError::Listen {
                address: options.listen_address,
                source,
            })?;
        let remotes = shippers.status_source();
        let inner = Arc::new(Inner {
            options,
            wal,
            manager,
            dropped,
            live: AsyncMutex::new(Live {
                config: cfg,
                discovery,
                shippers: Some(shippers),
            }),
            ready: Arc::new(AtomicBool::new(true)),
            source,
        });
        let router = crate::api::router(api_state(&inner, remotes));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tracing::info!(address = %local_addr, "collector started");
        Ok(Collector {
            inner,
            local_addr,
            server,
        })
    }

    /// The address the HTTP API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A cheap handle for whoever drives the collector from outside (the
    /// shard agent); it stays usable until [`Collector::shutdown`].
    pub fn handle(&self) -> CollectorHandle {
        CollectorHandle {
            inner: self.inner.clone(),
        }
    }

    /// Re-reads the config file and applies it (SIGHUP, `/-/reload`).
    pub async fn reload(&self) -> Result<(), CollectorError> {
        self.inner.reload().await
    }

    /// Stops scraping (no staleness markers: a restart continues the
    /// series), delivers what the WAL holds within `grace`, closes the WAL.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        let inner = self.inner;
        inner.ready.store(false, Ordering::SeqCst);
        let (discovery, shippers) = {
            let mut live = inner.live.lock().await;
            (live.discovery.take(), live.shippers.take())
        };
        if let Some(d) = discovery {
            d.stop();
        }
        inner.manager.shutdown().await;
        let undelivered = match shippers {
            Some(s) => s.shutdown(grace).await,
            None => 0,
        };
        if let Err(e) = inner.wal.sync() {
            tracing::error!(error = %e, "syncing the WAL at shutdown");
        }
        self.server.abort();
        ShutdownReport {
            undelivered_samples: undelivered,
        }
    }
}

impl Inner {
    /// Loads and applies the config file; on any error the running config
    /// stays as it was.
    pub(crate) async fn reload(&self) -> Result<(), CollectorError> {
        let result = self.try_reload().await;
        match &result {
            Ok(()) => tracing::info!(file = %self.options.config_file.display(), "config reloaded"),
            Err(e) => tracing::error!(
                file = %self.options.config_file.display(),
                error = %e,
                "config reload failed; keeping the running config"
            ),
        }
        result
    }

    async fn try_reload(&self) -> Result<(), CollectorError> {
        let cfg = config::load_file(&self.options.config_file)?;
        // With external targets the jobs are not the file's: keep the
        // applied ones.
        self.apply(cfg, self.source == TargetSource::External).await
    }

    /// Applies `cfg` to the scrape side, the shippers and (standalone) the
    /// discovery; on any error the running config stays as it was.
    /// `keep_jobs`: `cfg`'s scrape_configs are replaced by those in force,
    /// under the same lock, so that a concurrent
    /// [`CollectorHandle::apply_config`] is not undone.
    async fn apply(&self, mut cfg: Config, keep_jobs: bool) -> Result<(), CollectorError> {
        let base_dir = base_dir(&self.options.config_file);
        let mut live = self.live.lock().await;
        if keep_jobs {
            cfg.scrape_configs = live.config.scrape_configs.clone();
        }
        let cfg = Arc::new(cfg);
        // Validate discovery first: it changes nothing.
        if self.source == TargetSource::Discovery {
            promshard_promlib::discovery::Discoverer::new(&cfg)?;
        }
        self.manager.set_config(&cfg)?;
        if let Some(shippers) = live.shippers.as_mut()
            && let Err(e) = shippers.reload(&cfg.remote_write, &base_dir).await
        {
            // Put the scrape side back so the two halves agree.
            if let Err(back) = self.manager.set_config(&live.config) {
                tracing::error!(error = %back, "restoring the previous scrape config");
            }
            return Err(e.into());
        }
        if self.source == TargetSource::Discovery {
            let discovery =
                DiscoveryFeed::start(cfg.clone(), self.manager.clone(), self.dropped.clone())?;
            if let Some(old) = live.discovery.replace(discovery) {
                old.stop();
            }
        }
        live.config = cfg;
        Ok(())
    }
}

/// Drives a running collector from outside (see [`Collector::handle`]).
#[derive(Clone)]
pub struct CollectorHandle {
    inner: Arc<Inner>,
}

impl CollectorHandle {
    /// The scrape manager: targets are added and removed here.
    pub fn scrape_manager(&self) -> Arc<ScrapeManager> {
        self.inner.manager.clone()
    }

    /// The config in force (with [`TargetSource::External`]: the file's
    /// `global`/`remote_write` and the jobs applied so far).
    pub async fn config(&self) -> Arc<Config> {
        self.inner.live.lock().await.config.clone()
    }

    /// Applies a whole config (jobs, external labels, remote write) as a
    /// reload does, without reading the file. On error nothing changes.
    pub async fn apply_config(&self, cfg: Config) -> Result<(), CollectorError> {
        self.inner.apply(cfg, false).await
    }

    /// The WAL's state (backlog of each remote-write consumer).
    pub fn wal_stats(&self) -> crate::wal::WalStats {
        self.inner.wal.stats()
    }

    /// Where the config file's relative `*_file` paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        base_dir(&self.inner.options.config_file)
    }
}

/// The HTTP API's view of a collector.
fn api_state(inner: &Arc<Inner>, remotes: crate::ship::StatusSource) -> ApiState {
    let manager = inner.manager.clone();
    let dropped = inner.dropped.clone();
    let weak = Arc::downgrade(inner);
    ApiState {
        targets: Arc::new(move || manager.statuses()),
        dropped_targets: Arc::new(move || {
            dropped
                .lock()
                .map(|d| d.targets.clone())
                .unwrap_or_default()
        }),
        scrape_stats: inner.manager.stats(),
        wal: inner.wal.clone(),
        remotes: Arc::new(move || remotes.statuses()),
        reload: Arc::new(move || -> BoxFuture<Result<(), String>> {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(inner) => inner.reload().await.map_err(|e| e.to_string()),
                    None => Err("the collector is shutting down".to_string()),
                }
            })
        }),
        ready: inner.ready.clone(),
    }
}

/// Relative `*_file` paths of a config resolve against its directory.
fn base_dir(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
