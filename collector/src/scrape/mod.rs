//! Scrape loops and the scrape manager.
//!
//! One loop per target, scraping on absolute slots
//! `k * interval + offset(target id)` (the same on every host, so a target
//! moved between shards keeps its schedule), with the scrape timeout, each
//! result run through the target's [`TargetPipeline`] and appended to a
//! [`BatchSink`] (the WAL).
//!
//! The target set is replaceable from outside at any time
//! ([`ScrapeManager::set_targets`], or per target for the coordinator);
//! a config reload ([`ScrapeManager::set_config`]) keeps every loop whose
//! target did not change (no gap, no reset of staleness tracking).
//!
//! SKELETON: the signatures are the contract; bodies are being written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use promshard_promlib::config::Config;
use promshard_promlib::targets::Target;

use crate::pipeline::RefAllocator;
use crate::series::AppendBatch;

/// Where scrape loops append their batches (the WAL in production; a
/// collecting sink in tests).
pub trait BatchSink: Send + Sync + 'static {
    /// Appends one batch. `Err` with [`AppendError::UnknownSeries`] makes
    /// the loop define every series of the batch and retry once.
    fn append(&self, batch: &AppendBatch) -> Result<(), AppendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("series ref {0} unknown to the sink")]
    UnknownSeries(u64),
    #[error("{0}")]
    Other(String),
}

impl BatchSink for crate::wal::Wal {
    fn append(&self, batch: &AppendBatch) -> Result<(), AppendError> {
        match crate::wal::Wal::append(self, batch) {
            Ok(_) => Ok(()),
            Err(crate::wal::WalError::UnknownSeries(r)) => Err(AppendError::UnknownSeries(r)),
            Err(e) => Err(AppendError::Other(e.to_string())),
        }
    }
}

/// A target handed to the manager.
#[derive(Clone, Debug)]
pub struct ManagedTarget {
    pub target: Target,
    /// Do not scrape before this time (unix ms): the first slot at or after
    /// it is the first scrape (handover). `None`: the next slot.
    pub start_at_ms: Option<i64>,
}

/// How a target stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop {
    /// Scrape every slot strictly before this time (unix ms), then stop.
    /// `None`: stop now.
    pub stop_before_ms: Option<i64>,
    /// `true`: no staleness markers (another shard continues).
    pub handover: bool,
}

/// Health of a target as Prometheus reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// One target's state for `/api/v1/targets` and reports.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub target: Target,
    pub scrape_url: String,
    pub scrape_pool: String,
    pub health: Health,
    pub last_error: String,
    /// Start of the last scrape, unix ms (0: never).
    pub last_scrape_ms: i64,
    pub last_scrape_duration: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    /// Series after relabeling at the last scrape.
    pub series: u64,
    /// Samples appended by the last scrape (post relabeling).
    pub samples_per_scrape: u64,
}

/// Counters of all loops, for `/metrics`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    pub scrapes: std::sync::atomic::AtomicU64,
    pub scrape_failures: std::sync::atomic::AtomicU64,
    pub samples_appended: std::sync::atomic::AtomicU64,
    pub append_failures: std::sync::atomic::AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("job {job:?}: {reason}")]
    Job { job: String, reason: String },
}

/// Owns every scrape loop. Needs a Tokio runtime.
pub struct ScrapeManager {
    _private: (),
}

impl ScrapeManager {
    /// `base_dir`: where relative `*_file` paths of the config resolve.
    pub fn new(sink: Arc<dyn BatchSink>, refs: Arc<RefAllocator>, base_dir: PathBuf) -> Self {
        let _ = (sink, refs, base_dir);
        todo!("manager")
    }

    /// Installs a config (jobs and external labels). Loops of jobs whose
    /// scrape_config is unchanged are untouched; loops of changed jobs
    /// continue on their schedule with the new settings (a changed interval
    /// moves them to the new slots); targets of removed jobs stop with
    /// staleness markers. On error nothing changes.
    pub fn set_config(&self, cfg: &Config) -> Result<(), ManagerError> {
        let _ = cfg;
        todo!("manager")
    }

    /// Replaces the whole target set: new targets start, targets whose id
    /// is still present keep running untouched, missing ones stop with
    /// staleness markers (at their next slot, as Prometheus).
    pub fn set_targets(&self, targets: Vec<ManagedTarget>) {
        let _ = targets;
        todo!("manager")
    }

    /// Adds one target (no-op if its id runs already).
    pub fn add_target(&self, target: ManagedTarget) {
        let _ = target;
        todo!("manager")
    }

    /// Stops one target as `stop` says (no-op if unknown).
    pub fn remove_target(&self, id: u64, stop: Stop) {
        let _ = (id, stop);
        todo!("manager")
    }

    /// The status of every running target, sorted by job then id.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        todo!("manager")
    }

    pub fn stats(&self) -> Arc<ScrapeStats> {
        todo!("manager")
    }

    /// Stops every loop without staleness markers (a restart continues the
    /// series), waiting for in-flight scrapes to be appended.
    pub async fn shutdown(&self) {
        todo!("manager")
    }
}

/// The absolute slot schedule: the offset of a target within its interval,
/// a stable function of its id, the same on every host.
pub fn slot_offset(target_id: u64, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(target_id % ms)
}

/// The first slot at or after `now_ms` (unix ms) for `target_id`.
pub fn next_slot_ms(target_id: u64, interval: Duration, now_ms: i64) -> i64 {
    let ms = interval.as_millis().max(1) as i64;
    let off = slot_offset(target_id, interval).as_millis() as i64;
    let k = (now_ms - off).div_euclid(ms);
    let slot = k * ms + off;
    if slot >= now_ms { slot } else { slot + ms }
}
