//! Scrape loops and the scrape manager.
//!
//! One loop (one Tokio task) per target, scraping on absolute slots
//! `k * interval + offset(target id)` in unix-ms time (the same on every
//! host, so a target moved between shards keeps its schedule; see
//! [`schedule`]), with the scrape timeout, each result run through the
//! target's [`TargetPipeline`](crate::pipeline::TargetPipeline) and appended
//! to a [`BatchSink`] (the WAL).
//!
//! Choices, and where they differ from Prometheus 2.42:
//! - Timestamps: the slot time when the scrape starts within
//!   [`SLOT_TOLERANCE_MS`] of its slot, else the actual start (Prometheus:
//!   the start time, snapped to the previous scrape + interval within
//!   2 ms). Two shards scraping one target across a handover thus write
//!   identical timestamps.
//! - Overruns: a scrape never runs twice at once for one target; slots that
//!   pass while a scrape runs are skipped and counted
//!   ([`ScrapeStats::missed_slots`]). The timeout is capped at the interval.
//! - End-of-run staleness: a target that leaves the target set writes stale
//!   markers at its next slot (Prometheus: stamped with the next slot's
//!   time but written about 2.1 intervals later, so a recreated target can
//!   win). Adding the target back before that slot cancels the stop; the
//!   loop continues without a gap. A target never scraped writes nothing.
//! - Interval and timeout: a target's `__scrape_interval__` /
//!   `__scrape_timeout__` labels win over its job's (as in Prometheus);
//!   `targets::populate` always sets them, so a changed job interval
//!   normally arrives as new targets (new ids) from discovery. A loop whose
//!   target lacks the labels follows the job's interval to the new slots.
//! - Targets of a job that is not configured wait (logged,
//!   [`ScrapeManager::pending_targets`]) and start with the config that
//!   adds the job: the coordinator may send targets before the config.
//! - WAL appends are synchronous; on a multi-threaded runtime they run
//!   under `block_in_place` (an fsync-per-append WAL would otherwise stall
//!   a worker), on a current-thread runtime directly.
//!
//! The target set is replaceable from outside at any time
//! ([`ScrapeManager::set_targets`], or per target for the coordinator);
//! a config reload ([`ScrapeManager::set_config`]) keeps every loop whose
//! target did not change (no gap, no reset of staleness tracking).

mod job;
mod manager;
pub mod schedule;
mod scratch;
mod status;
mod target_loop;

use crate::series::AppendBatch;

pub use manager::{ManagerError, ScrapeManager};
pub use schedule::{SLOT_TOLERANCE_MS, next_slot_ms, scrape_timestamp, slot_offset};
pub use status::{Health, ScrapeStats, TargetStatus};

use promshard_promlib::targets::Target;

/// Where scrape loops append their batches (the WAL in production; a
/// collecting sink in tests).
pub trait BatchSink: Send + Sync + 'static {
    /// Appends one batch. `Err` with [`AppendError::UnknownSeries`] makes
    /// the loop define every series of the batch and retry once.
    fn append(&self, batch: &AppendBatch) -> Result<(), AppendError>;

    /// Whether an append may wait for the disk (an fsync) rather than
    /// only copy into the page cache. The loop runs such appends under
    /// `block_in_place`; handing the worker to another thread costs two
    /// thread wake-ups, which a page-cache write does not need.
    fn may_block(&self) -> bool {
        true
    }
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

    fn may_block(&self) -> bool {
        self.fsyncs_on_append()
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
