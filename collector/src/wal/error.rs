//! The WAL's error type.

use std::io;
use std::path::{Path, PathBuf};

/// An error of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "WAL append: sample refers to series ref {0}, which is neither defined in the batch nor known to the WAL (define it in the batch)"
    )]
    UnknownSeries(u64),
    #[error("WAL: invalid consumer name {0:?} (must be non-empty)")]
    InvalidConsumerName(String),
    #[error("WAL: unknown consumer {0:?}")]
    UnknownConsumer(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
