//! The stateful [`Planner`] against the pure [`plan`]: over sequences of
//! rounds (targets added, removed, with new loads; shards added, removed,
//! draining; the current assignment changing, moves taken or not), the
//! planner fed only the round's changes returns exactly the plan `plan`
//! returns for the whole input.

use std::collections::BTreeMap;

use promshard_coordinator::model::{Capacity, Load, ShardId, TargetId};
use promshard_coordinator::planner::{
    PlanError, PlanInput, PlanShard, PlanTarget, Planner, PlannerConfig, plan,
};
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

fn cap(series: u64) -> Capacity {
    Capacity {
        max_series: series,
        max_samples_per_second: series as f64 / 15.0,
    }
}

fn config(move_budget: f64) -> PlannerConfig {
    PlannerConfig {
        shard_capacity: cap(10_000),
        max_shards: 1000,
        move_budget,
        ..PlannerConfig::default()
    }
}

/// Ids from a small pool, so that removed targets come back.
fn id_of(k: u16) -> TargetId {
    xxh3_64(&k.to_le_bytes())
}

fn load(series: u64, interval: u8) -> Load {
    Load {
        series,
        samples_per_second: series as f64 / [15.0, 30.0, 60.0][interval as usize % 3],
    }
}

/// One change of a round.
#[derive(Clone, Debug)]
enum Op {
    /// Adds (or, for an id already there, reloads) a target.
    Upsert(u16, u64, u8),
    /// Removes the k-th target; `true`: its current entry goes too.
    Remove(prop::sample::Index, bool),
    /// A new load for the k-th target.
    Reload(prop::sample::Index, u64),
    AddShard(u64),
    RemoveShard(prop::sample::Index),
    Drain(prop::sample::Index, bool),
    /// The k-th target's current shard: a shard, a gone one, or none.
    SetCurrent(prop::sample::Index, Option<u8>),
    Budget(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..1500, 1u64..600, any::<u8>()).prop_map(|(k, s, i)| Op::Upsert(k, s, i)),
        4 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(k, c)| Op::Remove(k, c)),
        4 => (any::<prop::sample::Index>(), 1u64..3000).prop_map(|(k, s)| Op::Reload(k, s)),
        1 => (2_000u64..20_000).prop_map(Op::AddShard),
        1 => any::<prop::sample::Index>().prop_map(Op::RemoveShard),
        1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(k, d)| Op::Drain(k, d)),
        2 => (any::<prop::sample::Index>(), prop::option::of(any::<u8>()))
            .prop_map(|(k, s)| Op::SetCurrent(k, s)),
        1 => any::<bool>().prop_map(Op::Budget),
    ]
}

/// A round: its changes, then whether the plan's moves are taken.
#[derive(Clone, Debug)]
struct Round {
    ops: Vec<Op>,
    take_moves: bool,
}

/// Initial targets (id key, series, interval), shard capacities, rounds.
type Scenario = (Vec<(u16, u64, u8)>, Vec<u64>, Vec<Round>);

fn rounds() -> impl Strategy<Value = Scenario> {
    (
        // Up to 700 targets: several blocks of the planner's id index.
        prop::collection::vec((0u16..1500, 1u64..400, any::<u8>()), 0..700),
        prop::collection::vec(2_000u64..20_000, 0..6),
        prop::collection::vec(
            (prop::collection::vec(op(), 0..40), any::<bool>())
                .prop_map(|(ops, take_moves)| Round { ops, take_moves }),
            1..8,
        ),
    )
}

/// The whole input, as a caller of `plan` holds it.
struct Model {
    targets: BTreeMap<TargetId, Load>,
    shards: Vec<PlanShard>,
    current: BTreeMap<TargetId, ShardId>,
    config: PlannerConfig,
    next_shard: usize,
}

impl Model {
    fn plan(&self) -> Result<promshard_coordinator::planner::Plan, PlanError> {
        // Not in id order: `plan` sorts.
        let mut targets: Vec<PlanTarget> = self
            .targets
            .iter()
            .map(|(&id, &load)| PlanTarget {
                id,
                job: String::new(),
                load,
            })
            .collect();
        targets.reverse();
        plan(&PlanInput {
            targets: &targets,
            shards: &self.shards,
            current: &self.current,
            config: &self.config,
        })
    }

    fn nth_target(&self, k: &prop::sample::Index) -> Option<TargetId> {
        (!self.targets.is_empty()).then(|| {
            *self
                .targets
                .keys()
                .nth(k.index(self.targets.len()))
                .expect("in range")
        })
    }

    fn shard_name(&self, s: u8) -> ShardId {
        // Mostly existing shards, sometimes one that is gone.
        if !self.shards.is_empty() && !s.is_multiple_of(4) {
            self.shards[s as usize % self.shards.len()].id.clone()
        } else {
            ShardId(format!("gone-{}", s % 3))
        }
    }

    /// Applies `op` to the model and the planner alike.
    fn apply(&mut self, op: &Op, p: &mut Planner) {
        match op {
            Op::Upsert(k, series, interval) => {
                let (id, l) = (id_of(*k), load(*series, *interval));
                self.targets.insert(id, l);
                p.upsert_target(id, l).expect("valid load");
            }
            Op::Remove(k, clear) => {
                let Some(id) = self.nth_target(k) else { return };
                self.targets.remove(&id);
                p.remove_target(id);
                if *clear {
                    self.current.remove(&id);
                    p.set_current(id, None);
                }
            }
            Op::Reload(k, series) => {
                let Some(id) = self.nth_target(k) else { return };
                let l = load(*series, 0);
                self.targets.insert(id, l);
                p.upsert_target(id, l).expect("valid load");
            }
            Op::AddShard(c) => {
                self.shards.push(PlanShard {
                    id: ShardId(format!("shard-{}", self.next_shard)),
                    capacity: cap(*c),
                    draining: false,
                });
                self.next_shard += 1;
                p.set_shards(&self.shards).expect("valid shards");
            }
            Op::RemoveShard(k) => {
                if self.shards.is_empty() {
                    return;
                }
                self.shards.remove(k.index(self.shards.len()));
                p.set_shards(&self.shards).expect("valid shards");
            }
            Op::Drain(k, d) => {
                if self.shards.is_empty() {
                    return;
                }
                let n = self.shards.len();
                self.shards[k.index(n)].draining = *d;
                p.set_shards(&self.shards).expect("valid shards");
            }
            Op::SetCurrent(k, s) => {
                let Some(id) = self.nth_target(k) else { return };
                match s {
                    Some(s) => {
                        let name = self.shard_name(*s);
                        p.set_current(id, Some(&name));
                        self.current.insert(id, name);
                    }
                    None => {
                        self.current.remove(&id);
                        p.set_current(id, None);
                    }
                }
            }
            Op::Budget(on) => {
                self.config.move_budget = if *on { 0.1 } else { 0.0 };
                p.set_config(self.config.clone()).expect("valid config");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn planner_fed_changes_plans_like_plan_of_the_whole_input(
        (initial, caps, rounds) in rounds()
    ) {
        let mut m = Model {
            targets: BTreeMap::new(),
            shards: Vec::new(),
            current: BTreeMap::new(),
            config: config(0.1),
            next_shard: 0,
        };
        for (i, c) in caps.iter().enumerate() {
            m.shards.push(PlanShard {
                id: ShardId(format!("shard-{i}")),
                capacity: cap(*c),
                draining: false,
            });
            m.next_shard = i + 1;
        }
        for &(k, series, interval) in &initial {
            m.targets.insert(id_of(k), load(series, interval));
            // Half of them start somewhere (a quarter on gone shards).
            if series.is_multiple_of(2) {
                let name = m.shard_name(interval);
                m.current.insert(id_of(k), name);
            }
        }
        // The first round from the whole input, later ones from changes.
        let targets: Vec<PlanTarget> = m
            .targets
            .iter()
            .map(|(&id, &load)| PlanTarget { id, job: String::new(), load })
            .collect();
        let mut p = Planner::from_input(&PlanInput {
            targets: &targets,
            shards: &m.shards,
            current: &m.current,
            config: &m.config,
        })
        .expect("valid input");
        for (r, round) in rounds.iter().enumerate() {
            for op in &round.ops {
                m.apply(op, &mut p);
            }
            let want = m.plan().expect("valid input");
            let got = p.plan();
            prop_assert_eq!(&got, &want, "round {}", r);
            // The planner's state reads back as the model.
            let (t, s, c) = p.input_equivalent();
            prop_assert_eq!(t.len(), m.targets.len());
            prop_assert!(t.iter().all(|t| m.targets.get(&t.id) == Some(&t.load)));
            let mut shards = m.shards.clone();
            shards.sort_by(|a, b| a.id.cmp(&b.id));
            prop_assert_eq!(s, shards);
            prop_assert_eq!(&c, &m.current);
            if round.take_moves {
                for mv in &want.moves {
                    m.current.insert(mv.target, mv.to.clone());
                }
                p.apply_moves(&got);
            }
        }
    }
}

#[test]
fn from_input_refuses_what_plan_refuses_with_the_same_error() {
    let cfg = config(0.1);
    let shard = |id: &str, sps: f64| PlanShard {
        id: ShardId::from(id),
        capacity: Capacity {
            max_series: 1000,
            max_samples_per_second: sps,
        },
        draining: false,
    };
    let target = |id: TargetId, sps: f64| PlanTarget {
        id,
        job: String::new(),
        load: Load {
            series: 1,
            samples_per_second: sps,
        },
    };
    let empty = BTreeMap::new();
    let cases: Vec<(Vec<PlanTarget>, Vec<PlanShard>)> = vec![
        (vec![target(1, 1.0)], vec![shard("a", 1.0), shard("a", 2.0)]),
        (vec![target(1, 1.0)], vec![shard("a", f64::NAN)]),
        (vec![target(1, 1.0), target(1, 2.0)], vec![shard("a", 1.0)]),
        (
            vec![target(2, f64::INFINITY), target(1, -1.0)],
            vec![shard("a", 1.0)],
        ),
    ];
    for (targets, shards) in cases {
        let input = PlanInput {
            targets: &targets,
            shards: &shards,
            current: &empty,
            config: &cfg,
        };
        let want = plan(&input).expect_err("invalid input");
        let got = Planner::from_input(&input).expect_err("invalid input");
        // By message: NaN values compare unequal.
        assert_eq!(got.to_string(), want.to_string());
    }
    let bad = PlannerConfig {
        high_watermark: 2.0,
        ..cfg.clone()
    };
    assert!(matches!(
        Planner::new(bad.clone()),
        Err(PlanError::Config {
            field: "high_watermark",
            ..
        })
    ));
    let mut p = Planner::new(cfg.clone()).expect("valid config");
    assert!(p.set_config(bad).is_err());
    assert_eq!(p.config(), &cfg, "a refused config changes nothing");
    // A refused load or shard list changes nothing either.
    p.upsert_target(7, load(10, 0)).expect("valid load");
    let nan = Load {
        series: 1,
        samples_per_second: f64::NAN,
    };
    assert!(matches!(
        p.upsert_target(7, nan),
        Err(PlanError::TargetLoad { target: 7, .. })
    ));
    assert!(p.set_shards(&[shard("a", 1.0), shard("a", 1.0)]).is_err());
    let (t, s, _) = p.input_equivalent();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].load, load(10, 0));
    assert!(s.is_empty());
}

#[test]
fn a_round_without_changes_plans_the_same_again() {
    // 3000 targets over 12 blocks of the id index, 5 shards.
    let targets: Vec<PlanTarget> = (0..3000u16)
        .map(|k| PlanTarget {
            id: id_of(k),
            job: String::new(),
            load: load(1 + u64::from(k % 97), u8::from(k % 3 == 0)),
        })
        .collect();
    let shards: Vec<PlanShard> = (0..5)
        .map(|i| PlanShard {
            id: ShardId(format!("shard-{i}")),
            capacity: cap(200_000),
            draining: false,
        })
        .collect();
    let cfg = config(0.1);
    let mut p = Planner::from_input(&PlanInput {
        targets: &targets,
        shards: &shards,
        current: &BTreeMap::new(),
        config: &cfg,
    })
    .expect("valid input");
    let first = p.plan();
    assert_eq!(first.moves.len(), 3000, "all new");
    assert_eq!(p.plan(), first, "nothing taken, nothing changed");
    p.apply_moves(&first);
    let second = p.plan();
    assert!(second.moves.is_empty(), "{:?}", second.moves.first());
    assert_eq!(second.assignment, first.assignment);
    assert_eq!(p.len(), 3000);
}
