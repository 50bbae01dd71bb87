//! Counters and a snapshot of the WAL's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::position::WalPosition;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appended_samples: AtomicU64,
    pub appended_series: AtomicU64,
    pub appended_metadata: AtomicU64,
    pub appended_bytes: AtomicU64,
    pub dropped_segments: AtomicU64,
    pub dropped_samples: AtomicU64,
    pub deleted_segments: AtomicU64,
    pub truncated_tails: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A snapshot of the WAL's state and counters (counters since open).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalStats {
    /// Bytes of all segment files.
    pub bytes_on_disk: u64,
    /// Segment files, including the one being written.
    pub segments: u64,
    /// Samples, series definitions (as given by the pipeline, not the
    /// WAL's own repetitions) and metadata entries appended.
    pub appended_samples: u64,
    pub appended_series: u64,
    pub appended_metadata: u64,
    pub appended_bytes: u64,
    /// Segments deleted because every consumer had passed them.
    pub deleted_segments: u64,
    /// Segments deleted by the size/age bounds before every consumer had
    /// passed them, and the samples they held (all of a segment's samples,
    /// also any before a consumer's checkpoint inside it: an upper bound).
    pub dropped_segments: u64,
    pub dropped_samples: u64,
    /// Torn or corrupt segment tails cut off when the WAL was opened.
    pub truncated_tails: u64,
    /// Time since the oldest segment was last written.
    pub oldest_segment_age: Option<Duration>,
    /// Where appends are.
    pub head: WalPosition,
    pub consumers: Vec<ConsumerStats>,
}

/// One registered consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStats {
    pub name: String,
    pub checkpoint: WalPosition,
    /// Bytes between its checkpoint and the head.
    pub backlog_bytes: u64,
}
