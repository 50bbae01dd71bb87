//! Weighted rendezvous (highest random weight) hashing.
//!
//! Every (target, shard) pair gets a pseudo-random number from xxh3 (stable
//! across hosts, runs and Rust versions, unlike `std::hash`); the score
//! `weight / -ln(u)` with `u` uniform in (0, 1) makes a shard win with
//! probability proportional to its weight, and adding or removing a shard
//! only changes the winner for targets that pick (or picked) that shard.
//!
//! With many shards, a target looks only at its [`CANDIDATES`] candidates
//! on a [`Ring`] (O(k), not O(shards), per target); a new shard then also
//! pushes one old candidate out of about `k / S` of the candidate sets,
//! which moves the targets that candidate had won (about `1 / S` of those).

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

/// Points per shard on the candidate [`Ring`].
pub const RING_POINTS: u64 = 32;

/// How many shards a target's rendezvous hashing looks at: the first this
/// many distinct shards clockwise from it on the [`Ring`].
pub const CANDIDATES: usize = 8;

/// A target's position on the [`Ring`]: xxh3 of its id's little-endian
/// bytes, unseeded (pair hashes are seeded with a shard's seed).
pub fn ring_position(target: TargetId) -> u64 {
    xxh3_64(&target.to_le_bytes())
}

/// The candidate ring: [`RING_POINTS`] points per shard at
/// `xxh3(point number, seed = shard seed)`. A target's candidates are the
/// first `k` distinct shards clockwise from [`ring_position`].
///
/// So a target's candidates depend only on its id and the set of shards
/// (no loads, no other targets), and adding a shard changes them only for
/// the targets that find one of its points among their first `k`, where it
/// takes the place of the last candidate: about `k / S` of all targets.
/// Rendezvous hashing over `k` candidates instead of all `S` shards makes
/// placement O(k) per target.
#[derive(Debug)]
pub struct Ring {
    /// (position, shard index), sorted.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// `shards`: (seed, index) of the shards that may take targets.
    pub fn new(shards: impl IntoIterator<Item = (u64, usize)>) -> Ring {
        let mut points = Vec::new();
        for (seed, s) in shards {
            for v in 0..RING_POINTS {
                points.push((xxh3_64_with_seed(&v.to_le_bytes(), seed), s as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Fills `out` with the first `k` distinct shards clockwise from the
    /// target (fewer when the ring has fewer shards).
    pub fn candidates(&self, target: TargetId, k: usize, out: &mut Vec<usize>) {
        out.clear();
        let pos = ring_position(target);
        let start = self.points.partition_point(|p| p.0 < pos);
        let (tail, head) = self.points.split_at(start);
        for &(_, s) in head.iter().chain(tail) {
            let s = s as usize;
            if !out.contains(&s) {
                out.push(s);
                if out.len() == k {
                    return;
                }
            }
        }
    }
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

    fn ring_of(n: usize) -> (Vec<ShardId>, Ring) {
        let ids: Vec<ShardId> = (0..n).map(|i| ShardId(format!("shard-{i}"))).collect();
        let ring = Ring::new(ids.iter().enumerate().map(|(i, s)| (shard_seed(s), i)));
        (ids, ring)
    }

    #[test]
    fn ring_candidates_are_distinct_and_bounded() {
        let (_, ring) = ring_of(50);
        let mut out = Vec::new();
        for t in 0..1000u64 {
            ring.candidates(t, CANDIDATES, &mut out);
            assert_eq!(out.len(), CANDIDATES);
            let mut d = out.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), CANDIDATES, "{out:?}");
        }
        let (_, small) = ring_of(3);
        small.candidates(7, CANDIDATES, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn adding_a_shard_changes_few_candidate_sets_and_only_by_itself() {
        let (ids, before) = ring_of(100);
        let (ids2, after) = ring_of(101);
        assert_eq!(ids[..], ids2[..100]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut changed = 0;
        let n = 20_000u64;
        for t in 0..n {
            before.candidates(t, CANDIDATES, &mut a);
            after.candidates(t, CANDIDATES, &mut b);
            if a != b {
                changed += 1;
                // The new shard joins; the old last candidate leaves.
                assert!(b.contains(&100), "{a:?} -> {b:?}");
                let kept: Vec<usize> = b.iter().copied().filter(|&s| s != 100).collect();
                assert_eq!(kept[..], a[..CANDIDATES - 1]);
            }
        }
        // About k/S = 8% of targets see the new shard.
        let frac = changed as f64 / n as f64;
        assert!((0.05..0.11).contains(&frac), "{frac}");
    }

    #[test]
    fn every_shard_is_a_candidate_about_equally_often() {
        let (_, ring) = ring_of(200);
        let mut seen = vec![0usize; 200];
        let mut out = Vec::new();
        let n = 50_000u64;
        for t in 0..n {
            ring.candidates(t, CANDIDATES, &mut out);
            for &s in &out {
                seen[s] += 1;
            }
        }
        let mean = (n as usize * CANDIDATES) as f64 / 200.0;
        let (lo, hi) = (
            *seen.iter().min().expect("shards") as f64,
            *seen.iter().max().expect("shards") as f64,
        );
        assert!(lo > 0.75 * mean && hi < 1.25 * mean, "{lo} {hi} of {mean}");
    }
}
