//! Counters of one remote-write queue, updated with atomics by the queue
//! and read by `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why samples were dropped instead of delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `write_relabel_configs` dropped the series.
    Relabel,
    /// The sample refers to a series ref never defined.
    UnknownSeries,
    /// The series has no `__name__` after relabeling.
    NoMetricName,
    /// The receiver answered with a 4xx other than 429.
    ClientError,
}

/// Counters of one `remote_write` entry. All fields only grow, except
/// `current_shards` and `pending_samples` (gauges).
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Samples the receiver acknowledged (2xx).
    pub samples_sent: AtomicU64,
    /// Sample sends retried (samples x attempts).
    pub samples_retried: AtomicU64,
    pub dropped_relabel: AtomicU64,
    pub dropped_unknown_series: AtomicU64,
    pub dropped_no_metric_name: AtomicU64,
    pub dropped_client_error: AtomicU64,
    /// Compressed request bytes sent (every attempt).
    pub bytes_sent: AtomicU64,
    /// Sample requests acknowledged or dropped (one per batch).
    pub batches_sent: AtomicU64,
    /// Failed attempts (network error, timeout, non-2xx).
    pub failed_requests: AtomicU64,
    pub metadata_sent: AtomicU64,
    pub metadata_failed: AtomicU64,
    pub current_shards: AtomicU64,
    /// Shards currently retrying a batch (blocked).
    pub retrying_shards: AtomicU64,
    /// Samples taken as input and neither delivered nor dropped yet.
    pub pending_samples: AtomicU64,
    /// Highest sample timestamp (ms) the receiver acknowledged; i64::MIN
    /// before the first.
    pub highest_sent_timestamp_ms: AtomicI64,
}

impl RemoteStats {
    pub fn new() -> Self {
        RemoteStats {
            highest_sent_timestamp_ms: AtomicI64::new(i64::MIN),
            ..Default::default()
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drop_counter(reason).load(Ordering::Relaxed)
    }

    /// Samples dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        [
            DropReason::Relabel,
            DropReason::UnknownSeries,
            DropReason::NoMetricName,
            DropReason::ClientError,
        ]
        .iter()
        .map(|r| self.dropped(*r))
        .sum()
    }

    pub(crate) fn add_dropped(&self, reason: DropReason, n: u64) {
        self.drop_counter(reason).fetch_add(n, Ordering::Relaxed);
    }

    fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
        match reason {
            DropReason::Relabel => &self.dropped_relabel,
            DropReason::UnknownSeries => &self.dropped_unknown_series,
            DropReason::NoMetricName => &self.dropped_no_metric_name,
            DropReason::ClientError => &self.dropped_client_error,
        }
    }

    pub(crate) fn sub_pending(&self, n: u64) {
        // Saturating: never wraps even if accounting were off by one.
        let _ = self
            .pending_samples
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }

    pub(crate) fn note_sent_timestamp(&self, ts: i64) {
        self.highest_sent_timestamp_ms
            .fetch_max(ts, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
