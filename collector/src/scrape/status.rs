//! What the loops report: per-target status and counters of all loops.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use promshard_promlib::targets::Target;

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
    /// Scrapes attempted (successful or not).
    pub scrapes: AtomicU64,
    /// Scrapes that ended with up=0 (transport error, timeout, HTTP status,
    /// parse error, exceeded limit).
    pub scrape_failures: AtomicU64,
    /// Samples the sink accepted (synthetic series and stale markers
    /// included).
    pub samples_appended: AtomicU64,
    /// Batches the sink refused (after the UnknownSeries retry); their
    /// samples are lost.
    pub append_failures: AtomicU64,
    /// Slots skipped because the previous scrape of the same target was
    /// still running (or the runtime woke the loop too late).
    pub missed_slots: AtomicU64,
}
