//! `fleet`: thousands of fake scrape targets in one process.
//!
//! Addressing: target `i` listens on its own loopback address, `base + i`
//! (all of 127.0.0.0/8 is local on Linux), on the base port, so each target
//! has a realistic, distinct `__address__` (`127.0.1.17:9100`) and serves the
//! usual `/metrics` path. With port 0 every target gets its own ephemeral
//! port instead. One listening socket per target; connections are kept alive
//! by scrapers, so a fleet of N targets holds about 2N descriptors.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exposition::{SeriesInfo, Template};
use crate::zipf::zipf_sizes;

/// How a target answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Behaviour {
    /// A valid body at once.
    Healthy,
    /// A valid body after a delay.
    Slow {
        /// The delay in milliseconds.
        delay_ms: u64,
    },
    /// HTTP 500.
    ServerError,
    /// HTTP 200 with a body that is not a valid exposition.
    Malformed,
    /// Accepts the connection and never answers.
    Hang,
}

impl Behaviour {
    /// True when a scrape of this target yields its series.
    pub fn serves_series(self) -> bool {
        matches!(self, Behaviour::Healthy | Behaviour::Slow { .. })
    }
}

/// What fleet to run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Number of targets.
    pub targets: usize,
    /// Mean series per target.
    pub series_per_target: usize,
    /// Zipf exponent of the size skew; 0 = every target the same size.
    pub zipf_exponent: f64,
    /// Fraction (0..=1) of each target's series replaced every
    /// `churn_every` scrapes of that target.
    pub churn_fraction: f64,
    /// Scrapes per churn generation.
    pub churn_every: u64,
    /// Address of target 0; target `i` binds the address `i` further on.
    pub base: SocketAddrV4,
    /// Number of slow targets and their delay.
    pub slow_targets: usize,
    /// Delay of a slow target.
    pub slow_delay: Duration,
    /// Targets answering 500.
    pub error_targets: usize,
    /// Targets answering a malformed body.
    pub malformed_targets: usize,
    /// Targets that never answer.
    pub hanging_targets: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            targets: 10,
            series_per_target: 100,
            zipf_exponent: 0.0,
            churn_fraction: 0.0,
            churn_every: 10,
            base: SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 1), 0),
            slow_targets: 0,
            slow_delay: Duration::from_secs(2),
            error_targets: 0,
            malformed_targets: 0,
            hanging_targets: 0,
        }
    }
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A target's listener could not bind.
    #[error("fleet: target {target} cannot listen on {addr}: {source}")]
    Bind {
        /// The target index.
        target: usize,
        /// The address it tried.
        addr: SocketAddrV4,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration cannot be served.
    #[error("fleet: invalid config: {0}")]
    Config(String),
}

/// One target's serving state.
#[derive(Debug)]
struct TargetState {
    /// Replaced by [`Fleet::set_series`].
    template: std::sync::RwLock<Arc<Template>>,
    behaviour: Behaviour,
    churn_every: u64,
    scrapes: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// Public description of one running target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetInfo {
    /// `host:port`, the target's `__address__`.
    pub address: String,
    /// Series per scrape (0 for targets whose behaviour serves none).
    pub series: usize,
    /// How it answers.
    pub behaviour: Behaviour,
}

/// A running fleet; dropping it stops every target.
#[derive(Debug)]
pub struct Fleet {
    infos: Vec<TargetInfo>,
    churn_fraction: f64,
    states: Vec<Arc<TargetState>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

fn behaviour_of(config: &FleetConfig, i: usize) -> Behaviour {
    // Broken and slow targets are the last ones, so Zipf's huge targets
    // (the first ranks) stay healthy.
    let from_end = config.targets - 1 - i;
    let mut edge = config.hanging_targets;
    if from_end < edge {
        return Behaviour::Hang;
    }
    edge += config.malformed_targets;
    if from_end < edge {
        return Behaviour::Malformed;
    }
    edge += config.error_targets;
    if from_end < edge {
        return Behaviour::ServerError;
    }
    edge += config.slow_targets;
    if from_end < edge {
        return Behaviour::Slow {
            delay_ms: config.slow_delay.as_millis() as u64,
        };
    }
    Behaviour::Healthy
}

impl Fleet {
    /// Binds every target and starts serving.
    pub async fn start(config: FleetConfig) -> Result<Fleet, FleetError> {
        if !(0.0..=1.0).contains(&config.churn_fraction) {
            return Err(FleetError::Config(format!(
                "churn fraction {} is not within 0..=1",
                config.churn_fraction
            )));
        }
        if config.churn_every == 0 {
            return Err(FleetError::Config("churn_every must be at least 1".into()));
        }
        let broken = config.slow_targets
            + config.error_targets
            + config.malformed_targets
            + config.hanging_targets;
        if broken > config.targets {
            return Err(FleetError::Config(format!(
                "{broken} slow or broken targets but only {} targets",
                config.targets
            )));
        }
        let base = u32::from(*config.base.ip());
        if u64::from(base) + config.targets as u64
            > u64::from(u32::from(Ipv4Addr::new(127, 255, 255, 255)))
        {
            return Err(FleetError::Config(format!(
                "{} targets from {} leave 127.0.0.0/8",
                config.targets, config.base
            )));
        }
        let sizes = zipf_sizes(
            config.targets,
            config.series_per_target,
            config.zipf_exponent,
        );
        let mut templates: HashMap<usize, Arc<Template>> = HashMap::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut fleet = Fleet {
            infos: Vec::with_capacity(config.targets),
            churn_fraction: config.churn_fraction,
            states: Vec::with_capacity(config.targets),
            tasks: Vec::with_capacity(config.targets),
            shutdown,
        };
        for (i, &size) in sizes.iter().enumerate() {
            let churn = (size as f64 * config.churn_fraction).round() as usize;
            let template = templates
                .entry(size)
                .or_insert_with(|| Arc::new(Template::new(size, churn)))
                .clone();
            let addr = SocketAddrV4::new(Ipv4Addr::from(base + i as u32), config.base.port());
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| FleetError::Bind {
                    target: i,
                    addr,
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| FleetError::Bind {
                target: i,
                addr,
                source,
            })?;
            let behaviour = behaviour_of(&config, i);
            let series = template.series_count();
            let state = Arc::new(TargetState {
                template: std::sync::RwLock::new(template),
                behaviour,
                churn_every: config.churn_every,
                scrapes: AtomicU64::new(0),
                shutdown: shutdown_rx.clone(),
            });
            let router = Router::new()
                .route("/metrics", get(serve_metrics))
                .with_state(state.clone());
            let mut stop = shutdown_rx.clone();
            fleet.tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::warn!(target = i, error = %e, "fleet target stopped");
                }
            }));
            fleet.infos.push(TargetInfo {
                address: socket_string(local),
                series: if behaviour.serves_series() { series } else { 0 },
                behaviour,
            });
            fleet.states.push(state);
        }
        Ok(fleet)
    }

    /// Every target's `host:port`, in target order.
    pub fn targets(&self) -> Vec<String> {
        self.infos.iter().map(|t| t.address.clone()).collect()
    }

    /// Every target's address, size and behaviour.
    pub fn target_infos(&self) -> &[TargetInfo] {
        &self.infos
    }

    /// Series one scrape of the whole fleet yields (healthy and slow
    /// targets only): the series count a scraper should deliver.
    pub fn expected_series_total(&self) -> usize {
        self.infos.iter().map(|t| t.series).sum()
    }

    /// The series target `target` exposes during churn generation
    /// `generation` (empty for targets that serve none).
    pub fn expected_series(&self, target: usize, generation: u64) -> Vec<SeriesInfo> {
        match (self.infos.get(target), self.states.get(target)) {
            (Some(info), Some(state)) if info.behaviour.serves_series() => {
                state.template().series(generation)
            }
            _ => Vec::new(),
        }
    }

    /// Makes target `target` expose `series` series from its next scrape on
    /// (its first series stay the same: a target that grows keeps its old
    /// series and adds new ones; churn is kept at the fleet's fraction).
    pub fn set_series(&mut self, target: usize, series: usize) -> Result<(), FleetError> {
        let (Some(info), Some(state)) = (self.infos.get_mut(target), self.states.get(target))
        else {
            return Err(FleetError::Config(format!(
                "set_series: no target {target} (the fleet has {})",
                self.infos.len()
            )));
        };
        let churn = (series as f64 * self.churn_fraction).round() as usize;
        let template = Arc::new(Template::new(series, churn));
        if info.behaviour.serves_series() {
            info.series = template.series_count();
        }
        *state.template.write().unwrap_or_else(|e| e.into_inner()) = template;
        Ok(())
    }

    /// How many times target `target` has been scraped.
    pub fn scrapes(&self, target: usize) -> u64 {
        self.states
            .get(target)
            .map_or(0, |s| s.scrapes.load(Ordering::Relaxed))
    }

    /// A `file_sd_configs` JSON document listing every target.
    pub fn file_sd_json(&self) -> String {
        let doc = serde_json::json!([{
            "targets": self.targets(),
            "labels": {"fleet": "promshard-loadtest"},
        }]);
        doc.to_string()
    }

    /// A prometheus.yml with one scrape job for every target.
    pub fn prometheus_yml(&self, job: &str, scrape_interval: &str) -> String {
        let mut out = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  scrape_timeout: {scrape_interval}\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets:\n"
        );
        for t in &self.infos {
            out.push_str("          - ");
            out.push_str(&t.address);
            out.push('\n');
        }
        out
    }

    /// Stops every target and waits (at most 5 s) for the listeners to
    /// close; whatever is still open then is aborted.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<_> = self.tasks.drain(..).collect();
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            for a in aborts {
                a.abort();
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TargetState {
    fn template(&self) -> Arc<Template> {
        self.template
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn socket_string(addr: SocketAddr) -> String {
    addr.to_string()
}

async fn serve_metrics(State(target): State<Arc<TargetState>>) -> Response {
    match target.behaviour {
        Behaviour::Healthy => {}
        Behaviour::Slow { delay_ms } => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
        Behaviour::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "fake target: internal error\n",
            )
                .into_response();
        }
        Behaviour::Malformed => {
            return (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                "# TYPE broken counter\nbroken{unterminated=\"yes 12\nnot a sample line at all\n",
            )
                .into_response();
        }
        Behaviour::Hang => {
            let mut stop = target.shutdown.clone();
            let _ = stop.wait_for(|s| *s).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let scrape = target.scrapes.fetch_add(1, Ordering::Relaxed);
    let mut body = String::new();
    target
        .template()
        .render(scrape, scrape / target.churn_every, &mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
