//! promshard's own planner, run round after round as the control loop runs
//! it: each round's assignment is the next round's `current`, until a round
//! moves nothing.
//!
//! Scale-out adds `shard-N`; scale-in first drains the highest shard
//! (`draining: true`) until converged, then removes it and runs until
//! converged again. Series moved are summed over every round (a target
//! moved twice counts twice).

use std::collections::BTreeMap;

use promshard_coordinator::model::{Capacity, Load, ShardId, TargetId};
use promshard_coordinator::planner::{PlanInput, PlanShard, PlanTarget, PlannerConfig, plan};

use super::targets::CompareTarget;
use super::{CompareError, Rescale, Strategy};

/// The most rounds one scale step may take before it counts as not
/// converged.
pub const MAX_ROUNDS: usize = 64;

/// The planner with shard capacities sized for the target set.
pub struct Promshard {
    pub config: PlannerConfig,
    /// Rounds the initial placement took.
    pub initial_rounds: usize,
}

impl Promshard {
    /// Capacities such that the set fills `shards` shards to the planner's
    /// `target_utilization` (0.7) in series; samples per second get twice
    /// that headroom, so series are the binding dimension (the figures
    /// compared are series). Everything else is [`PlannerConfig::default`].
    pub fn sized_for(targets: &[CompareTarget], shards: usize) -> Self {
        let mut config = PlannerConfig::default();
        let n = shards.max(1) as f64;
        let series: u64 = targets.iter().map(|t| t.series).sum();
        let sps: f64 = targets.iter().map(|t| t.samples_per_second).sum();
        let tu = config.target_utilization;
        config.shard_capacity = Capacity {
            max_series: ((series as f64 / (n * tu)).ceil() as u64).max(1),
            max_samples_per_second: (2.0 * sps / (n * tu)).max(1.0),
        };
        config.max_shards = config.max_shards.max(shards + 1);
        Promshard {
            config,
            initial_rounds: 0,
        }
    }

    fn plan_targets(targets: &[CompareTarget]) -> Vec<PlanTarget> {
        targets
            .iter()
            .map(|t| PlanTarget {
                id: t.id,
                job: t.job.clone(),
                load: Load {
                    series: t.series,
                    samples_per_second: t.samples_per_second,
                },
            })
            .collect()
    }

    fn shards(&self, n: usize, draining_from: usize) -> Vec<PlanShard> {
        (0..n)
            .map(|i| PlanShard {
                id: shard_id(i),
                capacity: self.config.shard_capacity,
                draining: i >= draining_from,
            })
            .collect()
    }

    /// Rounds until one moves nothing (true) or [`MAX_ROUNDS`] (false).
    fn converge(
        &self,
        plan_targets: &[PlanTarget],
        shards: &[PlanShard],
        current: &mut BTreeMap<TargetId, ShardId>,
        acc: &mut Rounds,
    ) -> Result<bool, CompareError> {
        for _ in 0..MAX_ROUNDS {
            let p = plan(&PlanInput {
                targets: plan_targets,
                shards,
                current,
                config: &self.config,
            })?;
            if !p.unassigned.is_empty() {
                return Err(CompareError::Strategy {
                    strategy: "promshard",
                    reason: format!("{} targets unassigned", p.unassigned.len()),
                });
            }
            if p.moves.is_empty() {
                return Ok(true);
            }
            acc.rounds += 1;
            for m in p.moves.iter().filter(|m| m.from.is_some()) {
                acc.moved_series += m.series;
                acc.moved_targets += 1;
            }
            *current = p.assignment.to_map();
        }
        Ok(false)
    }

    fn to_vec(
        targets: &[CompareTarget],
        map: &BTreeMap<TargetId, ShardId>,
    ) -> Result<Vec<u32>, CompareError> {
        targets
            .iter()
            .map(|t| {
                map.get(&t.id)
                    .and_then(shard_index)
                    .ok_or_else(|| CompareError::Strategy {
                        strategy: "promshard",
                        reason: format!("target {} has no shard", t.address),
                    })
            })
            .collect()
    }

    fn to_map(targets: &[CompareTarget], v: &[u32]) -> BTreeMap<TargetId, ShardId> {
        targets
            .iter()
            .zip(v)
            .map(|(t, &s)| (t.id, shard_id(s as usize)))
            .collect()
    }
}

#[derive(Default)]
struct Rounds {
    rounds: usize,
    moved_series: u64,
    moved_targets: u64,
}

/// `shard-<i>`.
pub fn shard_id(i: usize) -> ShardId {
    ShardId(format!("shard-{i}"))
}

fn shard_index(id: &ShardId) -> Option<u32> {
    id.0.strip_prefix("shard-")?.parse().ok()
}

impl Strategy for Promshard {
    fn name(&self) -> &'static str {
        "promshard"
    }

    fn describe(&self) -> &'static str {
        "promshard planner (sticky HRW placement + bounded rebalancing), rounds until converged"
    }

    fn initial_rounds(&self) -> usize {
        self.initial_rounds
    }

    fn place(
        &mut self,
        targets: &[CompareTarget],
        shards: usize,
    ) -> Result<Vec<u32>, CompareError> {
        let pts = Self::plan_targets(targets);
        let mut current = BTreeMap::new();
        let mut acc = Rounds::default();
        // Not converging shows as initial_rounds = MAX_ROUNDS.
        self.converge(&pts, &self.shards(shards, shards), &mut current, &mut acc)?;
        self.initial_rounds = acc.rounds;
        Self::to_vec(targets, &current)
    }

    fn rescale(
        &mut self,
        targets: &[CompareTarget],
        current: &[u32],
        from: usize,
        to: usize,
    ) -> Result<Rescale, CompareError> {
        let pts = Self::plan_targets(targets);
        let mut map = Self::to_map(targets, current);
        let mut acc = Rounds::default();
        let drained =
            to >= from || self.converge(&pts, &self.shards(from, to), &mut map, &mut acc)?;
        let settled = self.converge(&pts, &self.shards(to, to), &mut map, &mut acc)?;
        Ok(Rescale {
            assignment: Self::to_vec(targets, &map)?,
            moved_series: acc.moved_series,
            moved_targets: acc.moved_targets,
            rounds: acc.rounds,
            converged: drained && settled,
        })
    }
}
