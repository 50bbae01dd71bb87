//! The collector's write-ahead log: what the scrape pipeline appended and
//! the remote-write queues have not yet delivered survives a crash.
//!
//! On disk, a directory of numbered segments (`00000001.seg`, ...), each a
//! magic header then CRC32-framed records ([`codec`]), plus
//! `consumers/<name>.ckpt`, one checkpoint per consumer (remote-write
//! queue), written atomically.
//!
//! - Appends ([`Wal::append`]) are encoded outside the lock and written
//!   with one `write` each; the fsync policy ([`FsyncPolicy`]) decides
//!   what survives a machine crash (a process crash loses nothing that
//!   `append` returned for).
//! - Series resolution: every segment defines each series its samples use
//!   before the first such sample, so a reader starting at any segment
//!   resolves every ref. The writer only remembers which refs the current
//!   segment defines (no labels): an append whose sample uses a ref the
//!   segment does not define fails with [`WalError::UnknownSeries`] and the
//!   caller appends again with the definitions (the scrape pipeline keeps
//!   the labels anyway), so each series' labels live once in memory.
//! - Restart: [`Wal::open`] validates every segment, truncates a torn or
//!   corrupt tail (warning), starts a new segment and reports
//!   [`Wal::next_series_ref`], one above every ref on disk.
//! - Readers ([`Wal::reader`]) start at their consumer's checkpoint and
//!   [`WalReader::commit`] moves it; a segment is deleted once every
//!   registered consumer passed it. The size and age bounds delete the
//!   oldest segments even if undelivered, counted in [`WalStats`] and
//!   logged.

pub mod checkpoint;
pub mod codec;
mod error;
mod handle;
mod options;
mod position;
mod reader;
pub mod segment;
mod stats;

pub use codec::WalRecord;
pub use error::WalError;
pub use handle::Wal;
pub use options::{FsyncPolicy, WalOptions};
pub use position::WalPosition;
pub use reader::{RawEntry, WalEntry, WalReader};
pub use stats::{ConsumerStats, WalStats};
