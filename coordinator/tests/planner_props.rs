//! Property tests of the planner (see `promshard_coordinator::planner`).

use std::collections::{BTreeMap, BTreeSet};

use promshard_coordinator::model::{Capacity, Load, ShardId, TargetId};
use promshard_coordinator::planner::{
    MoveReason, Plan, PlanInput, PlanShard, PlanTarget, PlannerConfig, plan,
};
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

const CAP: u64 = 100_000;

fn cap(series: u64) -> Capacity {
    // Samples/s never dominate: targets scrape every 15 s or slower.
    Capacity {
        max_series: series,
        max_samples_per_second: series as f64 / 15.0,
    }
}

fn config() -> PlannerConfig {
    PlannerConfig {
        shard_capacity: cap(CAP),
        max_shards: 1000,
        ..PlannerConfig::default()
    }
}

fn shard(i: usize, capacity: u64) -> PlanShard {
    PlanShard {
        id: ShardId(format!("shard-{i}")),
        capacity: cap(capacity),
        draining: false,
    }
}

fn target(id: TargetId, series: u64, interval: u32) -> PlanTarget {
    PlanTarget {
        id,
        job: format!("job-{}", id % 5),
        load: Load {
            series,
            samples_per_second: series as f64 / interval as f64,
        },
    }
}

fn run(
    targets: &[PlanTarget],
    shards: &[PlanShard],
    current: &BTreeMap<TargetId, ShardId>,
    config: &PlannerConfig,
) -> Plan {
    plan(&PlanInput {
        targets,
        shards,
        current,
        config,
    })
    .expect("valid input")
}

/// Applies plans until one has no moves; the series moved over all rounds.
fn converge(
    targets: &[PlanTarget],
    shards: &[PlanShard],
    start: &BTreeMap<TargetId, ShardId>,
    config: &PlannerConfig,
    max_rounds: usize,
) -> (Plan, u64, usize) {
    let mut cur = start.clone();
    let mut moved = 0;
    for round in 1..=max_rounds {
        let p = run(targets, shards, &cur, config);
        if p.moves.is_empty() {
            return (p, moved, round);
        }
        moved += p.moved_series();
        cur = p.assignment.to_map();
    }
    panic!("no convergence in {max_rounds} rounds");
}

/// Zipf-like sizes: series of rank r = scale / (r + q)^s, ids hashed so
/// that size and id order are unrelated.
fn zipf_targets(n: usize, s: f64, q: f64, scale: f64, seed: u64) -> Vec<PlanTarget> {
    (0..n)
        .map(|r| {
            let series = (scale / (r as f64 + q).powf(s)).round().max(1.0) as u64;
            let id = xxh3_64_with_seed(&(r as u64).to_le_bytes(), seed);
            target(id, series, [15, 30, 60][r % 3])
        })
        .collect()
}

/// [`zipf_targets`] with the scale that makes their series come to about
/// `total` (before rounding).
fn zipf_targets_totalling(n: usize, s: f64, q: f64, total: f64, seed: u64) -> Vec<PlanTarget> {
    let h: f64 = (0..n).map(|r| 1.0 / (r as f64 + q).powf(s)).sum();
    zipf_targets(n, s, q, total / h, seed)
}

fn utils(p: &Plan, shards: &[PlanShard]) -> Vec<f64> {
    shards
        .iter()
        .map(|s| s.capacity.utilization(p.shard_loads[&s.id]))
        .collect()
}

/// Feasible input: total load <= 70% of total capacity, every target <=
/// 1/4 of the smallest shard, an arbitrary current assignment (some on
/// shards that are gone).
#[derive(Debug, Clone)]
struct Feasible {
    targets: Vec<PlanTarget>,
    shards: Vec<PlanShard>,
    current: BTreeMap<TargetId, ShardId>,
}

fn feasible() -> impl Strategy<Value = Feasible> {
    (
        prop::collection::vec(20_000u64..=100_000, 1..8),
        prop::collection::vec((1u64..=1000, 0usize..3, 0usize..12), 0..300),
        any::<u64>(),
    )
        .prop_map(|(caps, raw, seed)| {
            let shards: Vec<PlanShard> =
                caps.iter().enumerate().map(|(i, &c)| shard(i, c)).collect();
            let min_cap = *caps.iter().min().expect("one shard at least");
            let total_cap: u64 = caps.iter().sum();
            let raw_total: u64 = raw.iter().map(|r| r.0).sum::<u64>().max(1);
            // Scale sizes so the total is at most 70% of capacity and no
            // target exceeds a quarter of the smallest shard.
            let budget = total_cap as f64 * 0.7;
            let scale = (budget / raw_total as f64).min(min_cap as f64 / 4.0 / 1000.0);
            let mut targets = Vec::new();
            let mut current = BTreeMap::new();
            for (k, &(size, interval, place)) in raw.iter().enumerate() {
                let id = xxh3_64_with_seed(&(k as u64).to_le_bytes(), seed);
                let series = ((size as f64 * scale).floor() as u64).max(1);
                targets.push(target(id, series, [15, 30, 60][interval]));
                if place < shards.len() {
                    current.insert(id, shards[place].id.clone());
                } else if place < 10 {
                    current.insert(id, ShardId(format!("gone-{place}")));
                }
            }
            Feasible {
                targets,
                shards,
                current,
            }
        })
}

fn check_assignment(f: &Feasible, p: &Plan) -> Result<(), TestCaseError> {
    let ids: BTreeSet<TargetId> = f.targets.iter().map(|t| t.id).collect();
    let assigned: BTreeSet<TargetId> = p.assignment.keys().copied().collect();
    prop_assert_eq!(&assigned, &ids, "every target on exactly one shard");
    let shard_ids: BTreeSet<&ShardId> = f.shards.iter().map(|s| &s.id).collect();
    for s in p.assignment.values() {
        prop_assert!(shard_ids.contains(s), "{s} is not a shard");
    }
    prop_assert!(p.unassigned.is_empty());
    // The moves are exactly the differences from the current assignment.
    let mut diff = Vec::new();
    for (t, to) in &p.assignment {
        let from = f.current.get(t);
        if from != Some(to) {
            diff.push((*t, from.cloned(), to.clone()));
        }
    }
    let moves: Vec<_> = p
        .moves
        .iter()
        .map(|m| (m.target, m.from.clone(), m.to.clone()))
        .collect();
    prop_assert_eq!(moves, diff);
    // Every move says why: new placements are `New`, moves off a gone
    // shard `ShardGone`.
    let series: BTreeMap<TargetId, u64> = f.targets.iter().map(|t| (t.id, t.load.series)).collect();
    for m in &p.moves {
        prop_assert_eq!(m.from.is_none(), m.reason == MoveReason::New, "{:?}", m);
        if m.from.as_ref().is_some_and(|s| s.0.starts_with("gone-")) {
            prop_assert_eq!(m.reason, MoveReason::ShardGone);
        }
        prop_assert_eq!(m.series, series[&m.target]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_target_on_exactly_one_existing_shard(f in feasible(), drain in any::<u8>()) {
        let mut f = f;
        // Some shards draining (bits of `drain`), still all targets placed.
        for (i, s) in f.shards.iter_mut().enumerate() {
            s.draining = drain & (1 << i) != 0;
        }
        let p = run(&f.targets, &f.shards, &f.current, &config());
        check_assignment(&f, &p)?;
    }

    #[test]
    fn no_shard_over_capacity_while_capacity_suffices(f in feasible(), budget in prop::sample::select(vec![0.0, 0.1])) {
        // Even with no rebalancing budget: relieving a shard over its
        // capacity is not optional.
        let mut cfg = config();
        cfg.move_budget = budget;
        let p = run(&f.targets, &f.shards, &f.current, &cfg);
        check_assignment(&f, &p)?;
        for (s, u) in f.shards.iter().zip(utils(&p, &f.shards)) {
            prop_assert!(u <= 1.0 + 1e-9, "{} at {u}: {:?}", s.id, p.shard_loads);
        }
    }

    #[test]
    fn same_input_same_output(f in feasible(), rot in 0usize..50) {
        let cfg = config();
        let a = run(&f.targets, &f.shards, &f.current, &cfg);
        let b = run(&f.targets, &f.shards, &f.current, &cfg);
        prop_assert_eq!(&a, &b);
        // Input order does not matter either.
        let mut t = f.targets.clone();
        if !t.is_empty() {
            let k = rot % t.len();
            t.rotate_left(k);
        }
        let mut s = f.shards.clone();
        s.reverse();
        prop_assert_eq!(&a, &run(&t, &s, &f.current, &cfg));
    }

    #[test]
    fn no_moves_when_nothing_changed(f in feasible()) {
        // Without a budget cut, one round reaches the plan's fixed point.
        let mut cfg = config();
        cfg.move_budget = 1.0;
        let first = run(&f.targets, &f.shards, &f.current, &cfg);
        let second = run(&f.targets, &f.shards, &first.assignment.to_map(), &cfg);
        prop_assert!(second.moves.is_empty(), "{:?}", second.moves);
        // With the default budget: no moves once converged.
        let cfg = config();
        let (p, _, _) = converge(&f.targets, &f.shards, &f.current, &cfg, 30);
        let again = run(&f.targets, &f.shards, &p.assignment.to_map(), &cfg);
        prop_assert!(again.moves.is_empty());
    }

    #[test]
    fn draining_shard_ends_empty(f in feasible(), which in any::<prop::sample::Index>()) {
        let mut f = f;
        prop_assume!(f.shards.len() >= 2);
        let d = which.index(f.shards.len());
        f.shards[d].draining = true;
        let p = run(&f.targets, &f.shards, &f.current, &config());
        check_assignment(&f, &p)?;
        prop_assert_eq!(p.shard_loads[&f.shards[d].id].series, 0);
        for m in &p.moves {
            if m.from.as_ref() == Some(&f.shards[d].id) {
                prop_assert_eq!(m.reason, MoveReason::Draining);
            }
        }
    }

    #[test]
    fn oversized_targets_flagged_and_alone(
        f in feasible(),
        big in prop::collection::vec(1.01f64..3.0, 1..4),
    ) {
        let mut f = f;
        prop_assume!(f.shards.len() > big.len());
        // What the ordinary targets need in typical shards at 70%.
        let rest: u64 = f.targets.iter().map(|t| t.load.series).sum();
        let others = ((rest as f64 / CAP as f64 / 0.7).ceil() as usize).max(usize::from(rest > 0));
        let max_cap = f.shards.iter().map(|s| s.capacity.max_series).max().unwrap_or(0);
        let mut want = BTreeSet::new();
        for (k, factor) in big.iter().enumerate() {
            let id = u64::MAX - k as u64;
            f.targets.push(target(id, (max_cap as f64 * factor) as u64, 60));
            want.insert(id);
        }
        let p = run(&f.targets, &f.shards, &f.current, &config());
        check_assignment(&f, &p)?;
        prop_assert_eq!(&p.oversized, &want);
        for id in &want {
            let s = &p.assignment[id];
            let neighbours = p.assignment.iter().filter(|(t, o)| *o == s && *t != id).count();
            prop_assert_eq!(neighbours, 0, "oversized {} shares {}", id, s);
        }
        // One shard each for them plus what the rest needs.
        prop_assert_eq!(p.desired_shards, want.len() + others);
    }

    /// Removing a shard moves all of its targets (reason `ShardGone`) and,
    /// when that leaves the rest out of balance, at most the round's move
    /// budget of other series (rebalancing, with a rebalancing reason).
    #[test]
    fn removing_a_shard_moves_its_targets_and_at_most_a_budget_of_others(
        n in 2usize..8,
        gone in any::<prop::sample::Index>(),
        seed in any::<u64>(),
        s in 0.6f64..1.0,
    ) {
        let cfg = config();
        let shards: Vec<_> = (0..n).map(|i| shard(i, CAP)).collect();
        let targets = zipf_targets(60 * n, s, 20.0, 0.5 * CAP as f64 * n as f64 / 12.0, seed);
        let (p, _, _) = converge(&targets, &shards, &BTreeMap::new(), &cfg, 30);
        let g = gone.index(n);
        let rest: Vec<_> = shards.iter().enumerate().filter(|(i, _)| *i != g).map(|(_, s)| s.clone()).collect();
        let after = run(&targets, &rest, &p.assignment.to_map(), &cfg);
        let on_gone: BTreeSet<TargetId> = p
            .assignment
            .iter()
            .filter(|(_, s)| **s == shards[g].id)
            .map(|(t, _)| *t)
            .collect();
        let moved_off_gone: BTreeSet<TargetId> = after
            .moves
            .iter()
            .filter(|m| m.from.as_ref() == Some(&shards[g].id))
            .map(|m| m.target)
            .collect();
        prop_assert_eq!(&moved_off_gone, &on_gone, "every target of the gone shard moves");
        let total: u64 = targets.iter().map(|t| t.load.series).sum();
        let mut others = 0u64;
        for m in &after.moves {
            if m.from.as_ref() == Some(&shards[g].id) {
                prop_assert_eq!(m.reason, MoveReason::ShardGone, "{:?}", m);
            } else {
                prop_assert!(
                    matches!(m.reason, MoveReason::Rebalance | MoveReason::OverWatermark),
                    "{:?}", m
                );
                others += m.series;
            }
        }
        prop_assert!(
            others as f64 <= cfg.move_budget * total as f64 + 1.0,
            "{} series of other shards moved, budget {}", others, cfg.move_budget * total as f64
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// From the planner's own converged assignment on N shards, adding one
    /// empty shard moves at most 1.2x the ideal total/(N+1) series (summed
    /// over every round until no more moves), and fills the new shard.
    #[test]
    fn scale_out_moves_at_most_1_2x_the_ideal(
        n in 2usize..9,
        seed in any::<u64>(),
        s in 0.7f64..1.1,
        per_shard in 60usize..120,
    ) {
        let cfg = config();
        let shards: Vec<_> = (0..=n).map(|i| shard(i, CAP)).collect();
        // About 50% utilization on N+1 shards.
        let count = per_shard * n;
        let targets = zipf_targets_totalling(count, s, 10.0, 0.5 * CAP as f64 * (n + 1) as f64, seed);
        let total: u64 = targets.iter().map(|t| t.load.series).sum();
        let (before, _, _) = converge(&targets, &shards[..n], &BTreeMap::new(), &cfg, 30);
        prop_assert!(before.imbalance <= 1.10, "N: {}", before.imbalance);
        let (after, moved, rounds) = converge(&targets, &shards, &before.assignment.to_map(), &cfg, 30);
        let ideal = total as f64 / (n + 1) as f64;
        prop_assert!(after.imbalance <= 1.10, "N+1: {} after {rounds} rounds", after.imbalance);
        prop_assert!(after.shard_loads[&shards[n].id].series > 0);
        prop_assert!(
            moved as f64 <= 1.2 * ideal,
            "moved {moved} of {total}, ideal {ideal:.0} ({:.2}x) in {rounds} rounds",
            moved as f64 / ideal
        );
    }

    /// Skewed (Zipf) targets converge to max/mean <= 1.10 from scratch and
    /// from an arbitrary start, in a few rounds.
    #[test]
    fn converges_to_the_imbalance_threshold(
        n in 2usize..12,
        seed in any::<u64>(),
        s in 0.7f64..1.2,
        util in 0.3f64..0.8,
        scatter in any::<bool>(),
    ) {
        let cfg = config();
        let shards: Vec<_> = (0..n).map(|i| shard(i, CAP)).collect();
        let count = 80 * n;
        let targets = zipf_targets_totalling(count, s, 10.0, util * CAP as f64 * n as f64, seed);
        let start: BTreeMap<TargetId, ShardId> = if scatter {
            // Everything on the first shard: a worst case to recover from.
            targets.iter().map(|t| (t.id, shards[0].id.clone())).collect()
        } else {
            BTreeMap::new()
        };
        let (p, _, rounds) = converge(&targets, &shards, &start, &cfg, 30);
        prop_assert!(p.imbalance <= 1.10, "{} after {rounds} rounds", p.imbalance);
        prop_assert!(rounds <= 12, "{rounds} rounds");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// More shards than a target's rendezvous candidates (the candidate
    /// ring): every target placed on an existing shard, none over its
    /// capacity, the same output whatever the input order, and no moves
    /// once the plan is applied.
    #[test]
    fn many_shards_place_every_target_within_capacity_deterministically(
        n in 17usize..48,
        seed in any::<u64>(),
        s in 0.6f64..1.1,
        util in 0.3f64..0.8,
        rot in 0usize..1000,
    ) {
        let mut cfg = config();
        cfg.move_budget = 1.0;
        let shards: Vec<_> = (0..n).map(|i| shard(i, CAP / 2 + (i as u64 % 3) * CAP / 4)).collect();
        let total_cap: u64 = shards.iter().map(|s| s.capacity.max_series).sum();
        let count = 30 * n;
        let targets = zipf_targets_totalling(count, s, 40.0, util * total_cap as f64, seed);
        let f = Feasible { targets, shards, current: BTreeMap::new() };
        let p = run(&f.targets, &f.shards, &f.current, &cfg);
        check_assignment(&f, &p)?;
        for (sh, u) in f.shards.iter().zip(utils(&p, &f.shards)) {
            prop_assert!(u <= 1.0 + 1e-9, "{} at {u}", sh.id);
        }
        let mut t = f.targets.clone();
        let k = rot % t.len();
        t.rotate_left(k);
        let mut sh = f.shards.clone();
        sh.reverse();
        prop_assert_eq!(&p, &run(&t, &sh, &f.current, &cfg));
        let again = run(&f.targets, &f.shards, &p.assignment.to_map(), &cfg);
        prop_assert!(again.moves.is_empty(), "{:?}", again.moves);
    }
}
