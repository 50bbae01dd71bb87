//! `promshard loadtest scenario NAME`: a whole system on loopback
//! (coordinator and shards as child processes, the fleet and the sink in
//! this process), one disturbance, and a report judged slot by slot.
//!
//! - [`system`]: the child processes and the coordinator's admin API.
//! - [`world`]: fleet + sink + configs + processes of one run, the monitor
//!   sampling the coordinator, the common phases (converge, window, drain).
//! - [`scripts`]: what each scenario does and claims.
//! - [`analysis`]: the sink's timelines against the expected slots.
//! - [`report`]: figures and verdicts, as text or JSON.

pub mod analysis;
pub mod report;
pub mod scale;
pub mod scripts;
pub mod system;
pub mod world;

use std::path::PathBuf;
use std::time::Duration;

pub use report::{Claim, ScenarioReport};

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Nothing happens: the baseline.
    Steady,
    /// Targets are added until the autoscaler starts one more shard.
    ScaleOut,
    /// Targets are removed until the autoscaler drains and stops a shard.
    ScaleIn,
    /// Targets come and go.
    Churn,
    /// One target grows past a shard's capacity.
    HeavyTarget,
    /// A shard is SIGKILLed and restarted later on the same storage.
    ShardKill,
    /// The coordinator is SIGKILLed and restarted.
    CoordinatorKill,
    /// The remote storage answers 503 for a while.
    StorageOutage,
}

impl Scenario {
    /// Every scenario, in the order CI runs them.
    pub const ALL: [Scenario; 8] = [
        Scenario::Steady,
        Scenario::CoordinatorKill,
        Scenario::ShardKill,
        Scenario::StorageOutage,
        Scenario::Churn,
        Scenario::HeavyTarget,
        Scenario::ScaleOut,
        Scenario::ScaleIn,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::ScaleOut => "scale-out",
            Scenario::ScaleIn => "scale-in",
            Scenario::Churn => "churn",
            Scenario::HeavyTarget => "heavy-target",
            Scenario::ShardKill => "shard-kill",
            Scenario::CoordinatorKill => "coordinator-kill",
            Scenario::StorageOutage => "storage-outage",
        }
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Which.
    pub scenario: Scenario,
    /// The short version (about a minute, for CI).
    pub short: bool,
    /// The promshard binary.
    pub binary: PathBuf,
    /// Keep the run directory (logs, storage) even when every claim passes.
    pub keep_dir: bool,
    /// Scrape interval.
    pub interval: Duration,
    /// Targets (default per scenario).
    pub targets: Option<usize>,
    /// Series per target.
    pub series_per_target: usize,
    /// Shards at the start (default per scenario).
    pub shards: Option<usize>,
    /// Length of the quiet parts (default per scenario and version).
    pub duration: Option<Duration>,
}

impl ScenarioConfig {
    /// The defaults of `scenario`.
    pub fn new(scenario: Scenario, binary: PathBuf) -> ScenarioConfig {
        ScenarioConfig {
            scenario,
            short: false,
            binary,
            keep_dir: false,
            interval: Duration::from_secs(1),
            targets: None,
            series_per_target: 100,
            shards: None,
            duration: None,
        }
    }

    /// The scrape interval in ms.
    pub fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval.as_millis()).unwrap_or(1000)
    }
}

/// Why a scenario could not run (a claim that fails is a report, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Settings that cannot run.
    #[error("scenario: {0}")]
    Config(String),
    /// A file, directory or process.
    #[error("scenario: {what} {}: {source}", path.display())]
    Io {
        /// What it was for.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fleet could not start.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The sink could not start.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// A process did not come up, or the system never converged.
    #[error("scenario {scenario}: {what}\n{logs}")]
    System {
        /// The scenario.
        scenario: &'static str,
        /// What failed.
        what: String,
        /// The tails of the logs (and where they are kept).
        logs: String,
    },
}

/// Runs one scenario on its own tokio runtime (the calling thread owns
/// the child processes: they die with it).
pub fn run(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    if config.interval < Duration::from_millis(200) {
        return Err(ScenarioError::Config(format!(
            "interval {:?} is below 200ms",
            config.interval
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("scenario")
        .enable_all()
        .build()
        .map_err(|source| ScenarioError::Io {
            what: "cannot start the tokio runtime",
            path: PathBuf::from("-"),
            source,
        })?;
    rt.block_on(scripts::run(config))
}
