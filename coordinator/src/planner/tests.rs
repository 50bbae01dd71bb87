//! Unit tests, one or more per rule of the module docs.

use std::collections::BTreeMap;

use super::*;

const CAP: u64 = 10_000;

fn cfg() -> PlannerConfig {
    PlannerConfig {
        shard_capacity: cap(CAP),
        max_shards: 100,
        ..PlannerConfig::default()
    }
}

fn cap(series: u64) -> Capacity {
    Capacity {
        max_series: series,
        max_samples_per_second: series as f64 / 10.0,
    }
}

fn shard(id: &str) -> PlanShard {
    PlanShard {
        id: ShardId::from(id),
        capacity: cap(CAP),
        draining: false,
    }
}

fn target(id: TargetId, series: u64) -> PlanTarget {
    PlanTarget {
        id,
        job: format!("job{}", id % 3),
        load: Load {
            series,
            samples_per_second: series as f64 / 15.0,
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

fn assign(pairs: &[(TargetId, &str)]) -> BTreeMap<TargetId, ShardId> {
    pairs.iter().map(|&(t, s)| (t, ShardId::from(s))).collect()
}

/// `n` targets of `series` each on every (shard, n), ids 0, 1, ... in
/// that order: the targets and their current assignment.
fn on_shards(
    counts: &[(&str, u64)],
    series: u64,
) -> (Vec<PlanTarget>, BTreeMap<TargetId, ShardId>) {
    let mut targets = Vec::new();
    let mut cur = BTreeMap::new();
    for &(s, n) in counts {
        for _ in 0..n {
            let id = targets.len() as u64;
            targets.push(target(id, series));
            cur.insert(id, ShardId::from(s));
        }
    }
    (targets, cur)
}

fn util(p: &Plan, s: &str) -> f64 {
    cap(CAP).utilization(p.shard_loads[&ShardId::from(s)])
}

fn reasons(p: &Plan) -> Vec<MoveReason> {
    p.moves.iter().map(|m| m.reason).collect()
}

#[test]
fn sticky_targets_stay_when_within_thresholds() {
    let shards = [shard("a"), shard("b")];
    let targets: Vec<_> = (0..4).map(|i| target(i, 1000)).collect();
    // a: 3000 (0.3), b: 1000 (0.1): imbalance 1.5 would trigger, so make
    // it balanced but not in hash order: a gets {0,1}, b gets {2,3}.
    let cur = assign(&[(0, "b"), (1, "b"), (2, "a"), (3, "a")]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert_eq!(p.assignment, cur);
    assert!((p.imbalance - 1.0).abs() < 1e-12);
}

#[test]
fn new_targets_go_where_rendezvous_hashing_says_and_only_to_shards_with_room() {
    let shards = [shard("a"), shard("b"), shard("c")];
    // c is at 0.88: a 500-series target would put it over the 0.9 mark.
    let mut targets = vec![target(1, 8800)];
    let cur = assign(&[(1, "c")]);
    targets.extend((100..120).map(|i| target(i, 500)));
    let p = run(&targets, &shards, &cur, &cfg());
    for m in &p.moves {
        assert_eq!(m.reason, MoveReason::New);
        assert_eq!(m.from, None);
        assert_ne!(m.to, ShardId::from("c"), "c has no room");
    }
    assert_eq!(p.moves.len(), 20);
    // Both a and b get a share (hashing spreads, weights follow room).
    assert!(
        util(&p, "a") >= 0.3 && util(&p, "b") >= 0.3,
        "{:?}",
        p.shard_loads
    );
}

#[test]
fn one_new_target_on_empty_shards_follows_the_weighted_hash() {
    let shards = [shard("a"), shard("b"), shard("c")];
    let p = run(&[target(7, 10)], &shards, &BTreeMap::new(), &cfg());
    let want = ["a", "b", "c"]
        .into_iter()
        .max_by(|x, y| {
            let sx = hrw::score(hrw::pair_hash(7, hrw::shard_seed(&ShardId::from(*x))), 1.0);
            let sy = hrw::score(hrw::pair_hash(7, hrw::shard_seed(&ShardId::from(*y))), 1.0);
            sx.total_cmp(&sy)
        })
        .expect("three shards");
    assert_eq!(p.assignment[&7], ShardId::from(want));
}

#[test]
fn without_room_anywhere_the_least_utilized_shard_takes_it() {
    let shards = [shard("a"), shard("b")];
    let targets = [target(1, 8900), target(2, 8700), target(3, 2000)];
    let cur = assign(&[(1, "a"), (2, "b")]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert_eq!(p.assignment[&3], ShardId::from("b"));
    assert!(p.unassigned.is_empty());
}

#[test]
fn gone_shard_moves_only_its_targets() {
    let shards = [shard("a"), shard("b")];
    let targets: Vec<_> = (0..6).map(|i| target(i, 1000)).collect();
    let cur = assign(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "x"), (5, "x")]);
    let p = run(&targets, &shards, &cur, &cfg());
    let moved: Vec<_> = p.moves.iter().map(|m| m.target).collect();
    assert_eq!(moved, vec![4, 5]);
    assert!(
        p.moves
            .iter()
            .all(|m| m.reason == MoveReason::ShardGone && m.from == Some(ShardId::from("x")))
    );
    // One each: with equal room, the weights keep both sides even.
    assert_eq!(p.shard_loads[&ShardId::from("a")].series, 3000);
}

#[test]
fn draining_shard_ends_empty_and_takes_nothing_new() {
    let mut shards = [shard("a"), shard("b"), shard("c")];
    shards[2].draining = true;
    let mut targets: Vec<_> = (0..9).map(|i| target(i, 500)).collect();
    targets.push(target(99, 500));
    let cur = assign(&[
        (0, "a"),
        (1, "a"),
        (2, "a"),
        (3, "b"),
        (4, "b"),
        (5, "b"),
        (6, "c"),
        (7, "c"),
        (8, "c"),
    ]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert_eq!(p.shard_loads[&ShardId::from("c")].series, 0);
    assert!(p.assignment.values().all(|s| s.0 != "c"));
    for m in &p.moves {
        let want = if m.target == 99 {
            MoveReason::New
        } else {
            MoveReason::Draining
        };
        assert_eq!(m.reason, want);
    }
    assert_eq!(p.moves.len(), 4);
}

#[test]
fn all_shards_draining_still_scrapes_everything() {
    let mut shards = [shard("a")];
    shards[0].draining = true;
    let targets = [target(1, 10), target(2, 10)];
    let p = run(&targets, &shards, &assign(&[(1, "a")]), &cfg());
    assert_eq!(p.assignment.len(), 2);
    assert_eq!(p.moves.len(), 1);
}

#[test]
fn no_shards_means_unassigned_not_dropped() {
    let targets = [target(2, 10), target(1, 10)];
    let p = run(&targets, &[], &assign(&[(1, "gone")]), &cfg());
    assert_eq!(p.unassigned, vec![1, 2]);
    assert!(p.assignment.is_empty() && p.moves.is_empty());
    assert_eq!(p.desired_shards, 1);
}

#[test]
fn over_watermark_sheds_with_that_reason_and_ends_under_it() {
    let shards = [shard("a"), shard("b"), shard("c")];
    // a: 9500 (0.95), b and c: 8000 (0.8): mean 0.85, max/mean 1.12;
    // both rules fire, a is above the watermark.
    let (targets, cur) = on_shards(&[("a", 19), ("b", 16), ("c", 16)], 500);
    let mut config = cfg();
    config.move_budget = 1.0;
    let p = run(&targets, &shards, &cur, &config);
    assert!(!p.moves.is_empty());
    assert!(
        p.moves
            .iter()
            .all(|m| m.reason == MoveReason::OverWatermark)
    );
    assert!(p.moves.iter().all(|m| m.from == Some(ShardId::from("a"))));
    // Relieved down to the watermark's goal, 0.9 - 0.05.
    assert!(util(&p, "a") <= 0.85 + 1e-9, "{:?}", p.shard_loads);
}

#[test]
fn imbalance_over_threshold_rebalances_to_the_goal_band() {
    let shards = [shard("a"), shard("b")];
    // a: 6000, b: 4000 -> mean 0.5, max/mean 1.2 > 1.1.
    let (targets, cur) = on_shards(&[("a", 60), ("b", 40)], 100);
    let p = run(&targets, &shards, &cur, &cfg());
    assert!(reasons(&p).iter().all(|&r| r == MoveReason::Rebalance));
    // Goal band: max/mean <= 1.05; fewest series: no more than needed.
    assert!(p.imbalance <= 1.05 + 1e-9, "{}", p.imbalance);
    assert!(p.moved_series() <= 1000, "{}", p.moved_series());
    assert!(p.moves.iter().all(|m| m.from == Some(ShardId::from("a"))));
}

#[test]
fn hysteresis_no_moves_just_under_the_threshold() {
    let shards = [shard("a"), shard("b")];
    // a: 5400, b: 4600 -> max/mean 1.08: inside the trigger band.
    let (targets, cur) = on_shards(&[("a", 54), ("b", 46)], 100);
    let p = run(&targets, &shards, &cur, &cfg());
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert!((p.imbalance - 1.08).abs() < 1e-9);
}

#[test]
fn move_budget_limits_rebalancing_and_says_so() {
    let shards = [shard("a"), shard("b")];
    let (targets, cur) = on_shards(&[("a", 80)], 100);
    let mut config = cfg();
    config.move_budget = 0.1; // 800 series of 8000
    let p = run(&targets, &shards, &cur, &config);
    assert_eq!(p.moved_series(), 800);
    assert!(p.budget_exhausted);
    config.move_budget = 1.0;
    let p = run(&targets, &shards, &cur, &config);
    assert!(!p.budget_exhausted);
    assert!(p.imbalance <= 1.05 + 1e-9);
}

#[test]
fn moves_to_relieve_a_shard_over_capacity_ignore_the_budget() {
    let shards = [shard("a"), shard("b")];
    let (targets, cur) = on_shards(&[("a", 12)], 1000); // a: 12000 = 1.2
    let mut config = cfg();
    config.move_budget = 0.0;
    let p = run(&targets, &shards, &cur, &config);
    assert!(util(&p, "a") <= 1.0, "{:?}", p.shard_loads);
    assert!(p.moves.iter().all(|m| m.reason == MoveReason::OverCapacity));
}

#[test]
fn oversized_target_is_flagged_and_gets_an_empty_shard() {
    let shards = [shard("a"), shard("b"), shard("c")];
    let targets = [target(1, 25_000), target(2, 100), target(3, 100)];
    let cur = assign(&[(2, "a"), (3, "b")]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert_eq!(p.oversized.iter().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(p.assignment[&1], ShardId::from("c"));
    assert_eq!(p.moves.len(), 1);
    // desired: 1 for the oversized target, 1 for the rest.
    assert_eq!(p.desired_shards, 2);
}

#[test]
fn oversized_target_evicts_its_neighbours_when_no_shard_is_empty() {
    let shards = [shard("a"), shard("b")];
    let targets = [
        target(1, 25_000),
        target(2, 100),
        target(3, 100),
        target(4, 200),
    ];
    let cur = assign(&[(1, "a"), (2, "a"), (3, "b"), (4, "a")]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert_eq!(p.assignment[&1], ShardId::from("a"));
    for t in [2, 3, 4] {
        assert_eq!(p.assignment[&t], ShardId::from("b"));
    }
    assert_eq!(
        reasons(&p),
        vec![MoveReason::Oversized, MoveReason::Oversized]
    );
}

#[test]
fn two_oversized_targets_never_share_while_shards_last() {
    let shards = [shard("a"), shard("b"), shard("c")];
    let targets = [target(1, 25_000), target(2, 30_000), target(3, 50)];
    let cur = assign(&[(1, "a"), (2, "a")]);
    let p = run(&targets, &shards, &cur, &cfg());
    assert_ne!(p.assignment[&1], p.assignment[&2]);
    assert_eq!(
        p.assignment[&2],
        ShardId::from("a"),
        "the larger one keeps its shard"
    );
    let t3 = &p.assignment[&3];
    assert!(t3 != &p.assignment[&1] && t3 != &p.assignment[&2]);
    // More oversized targets than shards: they share, none is dropped.
    let p = run(&targets, &shards[..1], &cur, &cfg());
    assert_eq!(p.assignment.len(), 3);
}

#[test]
fn a_big_shard_is_not_oversized_territory() {
    let mut shards = [shard("a"), shard("b")];
    shards[1].capacity = cap(4 * CAP);
    let targets = [target(1, 25_000)];
    let p = run(&targets, &shards, &BTreeMap::new(), &cfg());
    assert!(p.oversized.is_empty());
    assert_eq!(p.assignment[&1], ShardId::from("b"));
}

#[test]
fn desired_shards_from_the_larger_dimension_clamped() {
    let mut config = cfg();
    // 21000 series = 2.1 shards; sps = 21000/15 = 1400 = 1.4 shards.
    let targets: Vec<_> = (0..21).map(|i| target(i, 1000)).collect();
    let p = run(&targets, &[shard("a")], &BTreeMap::new(), &config);
    assert_eq!(p.desired_shards, 3); // ceil(2.1 / 0.7)
    // Make samples/s the larger one: 1000 series at 1 s interval each.
    let fast: Vec<_> = (0..21)
        .map(|i| PlanTarget {
            load: Load {
                series: 100,
                samples_per_second: 100.0,
            },
            ..target(i, 0)
        })
        .collect();
    let p = run(&fast, &[shard("a")], &BTreeMap::new(), &config);
    // 2100 samples/s of 1000 = 2.1 shards.
    assert_eq!(p.desired_shards, 3);
    config.max_shards = 2;
    let p = run(&targets, &[shard("a")], &BTreeMap::new(), &config);
    assert_eq!(p.desired_shards, 2);
    config.min_shards = 2;
    let p = run(&[], &[shard("a")], &BTreeMap::new(), &config);
    assert_eq!(p.desired_shards, 2);
}

#[test]
fn output_does_not_depend_on_input_order() {
    let shards = [shard("a"), shard("b"), shard("c")];
    let targets: Vec<_> = (0..50)
        .map(|i| target(i * 7919 % 1000, 10 + i * 13))
        .collect();
    let cur = assign(&[(0, "a"), (7, "b"), (14, "gone")]);
    let p1 = run(&targets, &shards, &cur, &cfg());
    let mut rev_t = targets.clone();
    rev_t.reverse();
    let mut rev_s = shards.clone();
    rev_s.reverse();
    let p2 = run(&rev_t, &rev_s, &cur, &cfg());
    assert_eq!(p1, p2);
}

#[test]
fn bad_input_is_a_clear_error() {
    let shards = [shard("a"), shard("a")];
    let err = plan(&PlanInput {
        targets: &[],
        shards: &shards,
        current: &BTreeMap::new(),
        config: &cfg(),
    })
    .unwrap_err();
    assert_eq!(err, PlanError::DuplicateShard(ShardId::from("a")));
    assert!(err.to_string().contains("shard a is listed more than once"));

    let targets = [target(5, 1), target(5, 2)];
    let err = plan(&PlanInput {
        targets: &targets,
        shards: &shards[..1],
        current: &BTreeMap::new(),
        config: &cfg(),
    })
    .unwrap_err();
    assert_eq!(err, PlanError::DuplicateTarget(5));

    let mut nan = target(5, 1);
    nan.load.samples_per_second = f64::NAN;
    let err = plan(&PlanInput {
        targets: &[nan],
        shards: &shards[..1],
        current: &BTreeMap::new(),
        config: &cfg(),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("target 5 has samples_per_second = NaN"),
        "{err}"
    );

    let mut bad = shard("b");
    bad.capacity.max_samples_per_second = -1.0;
    let err = plan(&PlanInput {
        targets: &[],
        shards: &[bad],
        current: &BTreeMap::new(),
        config: &cfg(),
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::ShardCapacity { .. }));

    let mut config = cfg();
    config.high_watermark = 1.5;
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("high_watermark = 1.5"), "{err}");
    config = cfg();
    config.min_shards = 5;
    config.max_shards = 4;
    assert!(config.validate().is_err());
    config = cfg();
    config.imbalance_threshold = f64::NAN;
    assert!(config.validate().is_err());
}

#[test]
fn moves_carry_series_and_reason_names_are_stable() {
    let p = run(&[target(1, 123)], &[shard("a")], &BTreeMap::new(), &cfg());
    assert_eq!(p.moves[0].series, 123);
    assert_eq!(MoveReason::OverWatermark.as_str(), "over_watermark");
    assert_eq!(MoveReason::ShardGone.to_string(), "shard_gone");
}

#[test]
fn current_entries_of_unknown_targets_are_ignored() {
    let cur = assign(&[(1, "a"), (2, "a"), (3, "b")]);
    let p = run(&[target(2, 10)], &[shard("a"), shard("b")], &cur, &cfg());
    assert_eq!(p.assignment, assign(&[(2, "a")]));
    assert!(p.moves.is_empty());
}
