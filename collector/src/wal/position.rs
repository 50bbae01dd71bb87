//! Positions in the WAL.

use std::fmt;

/// A position in the WAL: a segment number and a byte offset in it. The
/// position of a record is the offset just past its end, so committing a
/// record's position means "this record and everything before it".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition {
    pub segment: u64,
    pub offset: u64,
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}
