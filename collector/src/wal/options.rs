//! WAL configuration.

use std::time::Duration;

/// When appended data is fsynced.
///
/// Every append is written to the segment file with one `write` call before
/// `append` returns, so whatever policy is chosen, a *process* crash
/// (SIGKILL, panic, OOM kill) loses nothing that `append` returned for: the
/// data is in the kernel's page cache. The policies differ on a *machine*
/// crash (power loss, kernel panic):
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `append` returns only after the data is fsynced (fdatasync). Appends
    /// that run concurrently share one fsync (group commit). Survives a
    /// machine crash; costs one disk flush per append (or group).
    Always,
    /// A background thread fsyncs the current segment at this interval when
    /// it has unsynced data; segments are also fsynced when closed. A
    /// machine crash loses at most about the last interval of appends.
    Interval(Duration),
    /// Never fsync; the OS writes back when it likes (Linux: typically
    /// within 30 s). A machine crash can lose any data not yet written back,
    /// including closed segments.
    Never,
}

/// Options of [`super::Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it reaches this size
    /// (a segment may exceed it by one append). Default 64 MiB.
    pub segment_size: u64,
    /// Default `Interval(1s)`.
    pub fsync: FsyncPolicy,
    /// Bound on the bytes of all segments. Over it the oldest closed
    /// segments are deleted even if undelivered (counted in
    /// [`super::WalStats::dropped_segments`]). `None`: no bound.
    pub max_bytes: Option<u64>,
    /// Bound on age: a closed segment last written longer ago than this is
    /// deleted even if undelivered (counted). `None`: no bound.
    pub max_age: Option<Duration>,
    /// How often the background thread checks the fsync interval and the
    /// size/age bounds. Default 1 s.
    pub maintenance_interval: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            max_bytes: None,
            max_age: None,
            maintenance_interval: Duration::from_secs(1),
        }
    }
}
