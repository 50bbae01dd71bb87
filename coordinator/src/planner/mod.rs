//! The planner: a pure, deterministic function from (targets with their
//! load, shards with their capacity, the current assignment, a config) to a
//! new assignment, the moves that get there (each with its reason), flags,
//! and the number of shards the fleet should have.
//!
//! No clocks, no randomness, no hash-map iteration order: the same input
//! gives the same [`Plan`], bit for bit, whatever the order of the input
//! slices (targets and shards are sorted by id first).
//!
//! # Algorithm
//!
//! Utilization of a shard is the larger of series/max_series and
//! samples/max_samples ([`Capacity::utilization`]). "Eligible" shards are the
//! ones not draining (if every shard drains, all of them stay eligible, so
//! no target is left unscraped).
//!
//! 1. **Sticky start.** Every target whose current shard still exists and is
//!    eligible stays there. The others are *displaced*: `New` (no current
//!    shard), `ShardGone` (its shard is not in the input), `Draining`.
//! 2. **Oversized targets** (larger than every eligible shard's capacity)
//!    each get a shard of their own, processed largest first: the shard they
//!    are on when no other oversized target claimed it, else an empty
//!    eligible shard (chosen by rendezvous hashing), else the least loaded
//!    unclaimed shard. Every other target on a claimed shard is displaced
//!    (`Oversized`) when an unclaimed eligible shard exists to take it. With
//!    more oversized targets than shards, the rest share like normal targets.
//!    They are flagged in [`Plan::oversized`].
//! 3. **Placement** of displaced targets, largest first: weighted rendezvous
//!    hashing ([`hrw`]) among the target's *candidates* that stay under the
//!    high watermark with the target, weight = free capacity
//!    (`1 - utilization`) x shard size (its capacity relative to
//!    [`PlannerConfig::shard_capacity`]). The candidates are the unclaimed
//!    eligible shards when there are at most [`hrw::CANDIDATES`] of them,
//!    else the first [`hrw::CANDIDATES`] distinct ones clockwise from the
//!    target on a hash ring ([`hrw::Ring`]): they depend only on the
//!    target's id and the set of shards, and a new shard joins about
//!    `CANDIDATES / S` of the candidate sets. When no candidate has room:
//!    rendezvous among all unclaimed eligible shards with room; when no
//!    shard has room: the shard with the least utilization after placing
//!    it. Only with no shard at all is a target [`Plan::unassigned`].
//! 4. **Rebalancing** over the unclaimed eligible shards, with `m` the mean
//!    utilization. The *trigger band* is `[(2 - thr) m, min(thr m, hw)]`
//!    (`thr` = imbalance threshold, `hw` = high watermark); the *goal band*
//!    is the same with `thr - hysteresis` and `hw - hysteresis`. The lower
//!    edge makes a shard far below the mean (a new, empty one) trigger too,
//!    not only a hot one: otherwise a scale-out from N >= 10 shards would
//!    leave the new shard empty (max/mean <= (N+1)/N). A step moves
//!    one target from a shard above the mean (hottest first) to the coldest
//!    shard. Among the donor's targets it prefers one whose move leaves
//!    neither shard past the mean (donor stays >= m, receiver <= m), then
//!    the one that most reduces the total deviation from the mean
//!    (`sum |u - m|`), then fewer series, then the lower id. So load is not
//!    moved past where it is needed (a donor pushed below the mean would
//!    become a receiver next round): the series moved stay close to the
//!    minimum that balances. A receiver never goes over its capacity, never
//!    ends as hot as the donor was, and a move must not widen the goal-band
//!    violation.
//!    - Phase 1 (always): moves that cost nothing or must happen: displaced
//!      targets (just placed this round, not yet moved on any shard) and
//!      targets on shards over 100% capacity. Runs until the goal band holds.
//!    - Phase 2 (only if the trigger band is violated after phase 1): sticky
//!      targets too, until the goal band holds, within the move budget
//!      (`move_budget` x total series; a target moved once is free after;
//!      moves off a shard over 100% do not count).
//!      Moves get reason `OverWatermark` when the donor is above the
//!      watermark's goal (`hw - hysteresis`), else `Rebalance`
//!      (`OverCapacity` above 100%).
//!
//!    Trigger at `thr`, stop at `thr - hysteresis`: after a round nothing
//!    moves again until the imbalance drifts past the trigger.
//! 5. **Outputs**: the assignment, the moves (target order), loads per
//!    shard, the imbalance (max/mean utilization over the balanced shards)
//!    and `desired_shards` = oversized targets + `ceil(u / target_utilization)`
//!    where `u` is the other targets' load in typical shards (the larger of
//!    the series and samples ratios), clamped to `[min_shards, max_shards]`.
//!
//! Cost: sorting the targets by id is a radix sort (none when the input is
//! already sorted); placement is O(k) per displaced target with `k` =
//! [`hrw::CANDIDATES`] (O(S) only for a target none of whose candidates
//! has room); each rebalancing step is O(S log S) plus one scan of a
//! donor's targets (its free targets only, in phase 1). The output
//! [`Assignment`] holds a 4-byte shard index per target, no string; moves
//! carry shard ids. Figures: `coordinator/benches/planner.rs`.
//!
//! # Between rounds: [`Planner`]
//!
//! [`plan`] starts from scratch every call: at a million targets, sorting
//! them, walking the `current` map and looking up a shard-id string per
//! target cost more than the algorithm. A [`Planner`] keeps the targets in
//! id order with their load and current shard, and the algorithm's
//! per-target arrays, from one round to the next; it is told the round's
//! changes (`upsert_target`, `remove_target`, `set_current`/`apply_moves`,
//! `set_shards`, `set_config`) and [`Planner::plan`] returns exactly what
//! [`plan`] returns for the same whole input (same code after the input is
//! in id order; `tests/planner_incremental.rs` checks it over sequences of
//! rounds). A round then costs its changes (O(log n) each, one in-place
//! merge when targets came or went) plus the algorithm's linear passes
//! over compact arrays (no sort, no map, no string per target).

mod assignment;
mod balance;
mod config;
pub mod hrw;
mod incremental;
mod work;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{Capacity, Load, ShardId, TargetId};

pub use assignment::Assignment;
pub use config::PlannerConfig;
pub use incremental::Planner;

/// A target as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanTarget {
    pub id: TargetId,
    /// Carried for callers; placement does not depend on it.
    pub job: String,
    pub load: Load,
}

/// A shard as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanShard {
    pub id: ShardId,
    pub capacity: Capacity,
    /// A draining shard takes nothing new and everything moves off it.
    pub draining: bool,
}

/// Everything the planner decides from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    pub targets: &'a [PlanTarget],
    pub shards: &'a [PlanShard],
    /// Where targets are now. Entries for targets not in `targets` are
    /// ignored; entries naming shards not in `shards` mean the shard is gone.
    pub current: &'a BTreeMap<TargetId, ShardId>,
    pub config: &'a PlannerConfig,
}

/// Why a target moves (or is placed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// A target without a current shard.
    New,
    /// Its shard is no longer among the shards.
    ShardGone,
    /// Its shard is draining.
    Draining,
    /// Its shard was over 100% of its capacity.
    OverCapacity,
    /// Its shard was over the high watermark (or still above
    /// `high_watermark - hysteresis` while relieving it).
    OverWatermark,
    /// max/mean utilization exceeded the imbalance threshold.
    Rebalance,
    /// An oversized target moved to a shard of its own, or a target made
    /// room for one.
    Oversized,
}

impl MoveReason {
    /// A stable snake_case name (metric labels, API).
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::New => "new",
            MoveReason::ShardGone => "shard_gone",
            MoveReason::Draining => "draining",
            MoveReason::OverCapacity => "over_capacity",
            MoveReason::OverWatermark => "over_watermark",
            MoveReason::Rebalance => "rebalance",
            MoveReason::Oversized => "oversized",
        }
    }
}

impl fmt::Display for MoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One placement change.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Move {
    pub target: TargetId,
    /// `None`: a new placement. A gone shard is still named here.
    pub from: Option<ShardId>,
    pub to: ShardId,
    pub series: u64,
    pub reason: MoveReason,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Every target on exactly one shard (none only when there is no shard);
    /// reads like a `BTreeMap<TargetId, ShardId>`, `to_map()` builds one.
    pub assignment: Assignment,
    /// The differences from the current assignment, in target order.
    pub moves: Vec<Move>,
    /// Targets larger than any eligible shard's capacity.
    pub oversized: BTreeSet<TargetId>,
    /// Targets on no shard: only when the input has no shard at all.
    pub unassigned: Vec<TargetId>,
    /// Load per shard under the new assignment (every input shard).
    pub shard_loads: BTreeMap<ShardId, Load>,
    /// How many shards the load asks for, clamped to the config's range.
    pub desired_shards: usize,
    /// max/mean utilization over the balanced shards (eligible, not held by
    /// an oversized target); 1.0 when there is nothing to compare.
    pub imbalance: f64,
    /// Rebalancing stopped because the move budget ran out.
    pub budget_exhausted: bool,
}

impl Plan {
    /// Series on targets that change shard (new placements excluded).
    pub fn moved_series(&self) -> u64 {
        self.moves
            .iter()
            .filter(|m| m.from.is_some())
            .map(|m| m.series)
            .sum()
    }
}

/// Input the planner cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("planner config: {field} = {value} is out of range, expected {expected}")]
    Config {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("planner input: target {0} is listed more than once")]
    DuplicateTarget(TargetId),
    #[error("planner input: shard {0} is listed more than once")]
    DuplicateShard(ShardId),
    #[error(
        "planner input: target {target} has samples_per_second = {value}, expected a finite number >= 0"
    )]
    TargetLoad { target: TargetId, value: f64 },
    #[error(
        "planner input: shard {shard} has max_samples_per_second = {value}, expected a finite number >= 0"
    )]
    ShardCapacity { shard: ShardId, value: f64 },
}

/// Plans: see the module docs for the algorithm.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    input.config.validate()?;
    Ok(run(work::Prepared::from_input(input)?).0)
}

/// Steps 2-5 on validated, id-ordered input.
fn run(input: work::Prepared<'_>) -> (Plan, work::Scratch) {
    let mut work = work::Work::new(input);
    work.claim_for_oversized();
    work.place_displaced();
    let budget_exhausted = balance::rebalance(&mut work);
    work.into_plan(budget_exhausted)
}

#[cfg(test)]
mod tests;
