//! Weighted rendezvous (highest random weight) hashing.
//!
//! Every (target, shard) pair gets a pseudo-random number from xxh3 (stable
//! across hosts, runs and Rust versions, unlike `std::hash`); the score
//! `weight / -ln(u)` with `u` uniform in (0, 1) makes a shard win with
//! probability proportional to its weight, and adding or removing a shard
//! only changes the winner for targets that pick (or picked) that shard.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::model::{ShardId, TargetId};

/// A shard's hashing seed: xxh3 of its id.
pub fn shard_seed(shard: &ShardId) -> u64 {
    xxh3_64(shard.0.as_bytes())
}

/// The stable hash of (target, shard): xxh3 of the target id's little-endian
/// bytes, seeded with the shard's seed.
pub fn pair_hash(target: TargetId, seed: u64) -> u64 {
    xxh3_64_with_seed(&target.to_le_bytes(), seed)
}

/// The rendezvous score of a pair hash for a shard of `weight` (> 0); the
/// highest score wins.
pub fn score(hash: u64, weight: f64) -> f64 {
    // 52 random bits, centred in their interval so u is never 0 or 1 (with
    // 53 the top value would round to 1).
    let u = ((hash >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    weight / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // A changed hash would reshuffle every new placement across a
        // coordinator upgrade; pin the values.
        let seed = shard_seed(&ShardId::from("shard-0"));
        assert_eq!(seed, xxh3_64(b"shard-0"));
        assert_eq!(
            pair_hash(42, seed),
            xxh3_64_with_seed(&42u64.to_le_bytes(), seed)
        );
        assert_ne!(pair_hash(42, seed), pair_hash(43, seed));
    }

    #[test]
    fn weights_shift_wins_proportionally() {
        // Two shards, weight 3:1: the heavy one wins about 75% of targets.
        let a = shard_seed(&ShardId::from("a"));
        let b = shard_seed(&ShardId::from("b"));
        let wins = (0..20_000u64)
            .filter(|&t| score(pair_hash(t, a), 3.0) > score(pair_hash(t, b), 1.0))
            .count();
        let frac = wins as f64 / 20_000.0;
        assert!((0.73..0.77).contains(&frac), "heavy shard won {frac}");
    }

    #[test]
    fn score_is_finite_and_positive_at_the_extremes() {
        for h in [0u64, u64::MAX, 1 << 63] {
            let s = score(h, 1.0);
            assert!(s.is_finite() && s > 0.0, "{h}: {s}");
        }
    }
}
