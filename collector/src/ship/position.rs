//! WAL positions as the remote-write queue's `u64` positions.
//!
//! `encode(p) = p.segment << 40 | p.offset`: monotonic in [`WalPosition`]'s
//! order as long as offsets stay below 2^40 (1 TiB; segments are closed at
//! `segment_size`, 64 MiB by default, plus one append) and segment numbers
//! below 2^24 (16.7 million segments, over a petabyte of WAL at the
//! default segment size). Positions outside that range are refused rather
//! than wrapped.

use crate::wal::WalPosition;

/// Bits of the offset in an encoded position.
pub const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// The queue position of a WAL position; `None` when it does not fit.
pub fn encode(p: WalPosition) -> Option<u64> {
    if p.offset > OFFSET_MASK || p.segment >> (64 - OFFSET_BITS) != 0 {
        return None;
    }
    Some(p.segment << OFFSET_BITS | p.offset)
}

/// The WAL position of a queue position made by [`encode`].
pub fn decode(v: u64) -> WalPosition {
    WalPosition {
        segment: v >> OFFSET_BITS,
        offset: v & OFFSET_MASK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segment: u64, offset: u64) -> WalPosition {
        WalPosition { segment, offset }
    }

    #[test]
    fn round_trips_and_keeps_order() {
        let ps = [
            p(0, 0),
            p(1, 0),
            p(1, 8),
            p(1, OFFSET_MASK),
            p(2, 8),
            p(77, 1 << 26),
        ];
        for w in ps.windows(2) {
            assert!(
                encode(w[0]).unwrap() < encode(w[1]).unwrap(),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        for x in ps {
            assert_eq!(decode(encode(x).unwrap()), x);
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(encode(p(1, 1 << OFFSET_BITS)), None);
        assert_eq!(encode(p(1 << 24, 0)), None);
        assert!(encode(p((1 << 24) - 1, OFFSET_MASK)).is_some());
    }
}
