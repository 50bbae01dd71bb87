//! [`Planner`]: the planner with its working state kept between rounds.
//!
//! [`super::plan`] starts from a [`PlanInput`] every time: it sorts the
//! targets, walks the current assignment (a map with a shard-id string per
//! target) and looks every shard name up. At a million targets that is
//! most of a round. A [`Planner`] keeps the targets in id order with their
//! load and current shard (an index into its table of shard names), and
//! takes the round's changes as deltas: targets added, removed or with a
//! new load, the current assignment's changes, the shard list. A round
//! then costs the changes (O(log n) each, a merge pass when targets were
//! added or removed) plus the algorithm's own passes.
//!
//! The plan is exactly the one [`super::plan`] returns for the same
//! input (same steps on the same id-ordered data; a property test checks
//! it over sequences of rounds); [`Planner::input_equivalent`] rebuilds
//! that input.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::model::{Load, ShardId, TargetId};

use super::work::{self, NOWHERE, Prepared, Scratch};
use super::{Plan, PlanError, PlanInput, PlanShard, PlanTarget, PlannerConfig};

/// The planner's inputs, kept between rounds. See the module docs.
#[derive(Clone, Debug)]
pub struct Planner {
    config: PlannerConfig,
    /// In id order, validated.
    shards: Vec<PlanShard>,
    /// Targets in id order, each once.
    tid: Vec<TargetId>,
    /// `tload[k]`: the load of `tid[k]` (validated).
    tload: Vec<Load>,
    /// `cur[k]`: where `tid[k]` is now, an index into `names`, or NOWHERE.
    cur: Vec<u32>,
    /// Shard names the current assignment uses (interned; names no longer
    /// used are dropped once there are more than twice the shards plus 64, see
    /// [`Self::compact_names`]).
    names: Vec<ShardId>,
    name_index: HashMap<ShardId, u32>,
    /// Target set changes not merged into the arrays yet: `Some(load)` for
    /// an id not in `tid` (added), `None` for an id in it (removed).
    pending: BTreeMap<TargetId, Option<Load>>,
    /// Current shards of ids not in `tid` (the input's `current` may name
    /// targets that are not planned; one added later starts there).
    orphans: BTreeMap<TargetId, u32>,
    scratch: Reused,
    /// `tid[k * FENCE]` for every k (see [`Self::find`]).
    fence: Vec<TargetId>,
}

/// Ids per block of the fence index.
const FENCE: usize = 256;

/// `v[from..].partition_point(|t| t < id) + from` for sorted `v`, by
/// steps of growing length from `from`: O(log distance), touching memory
/// near `from` only.
fn gallop_forward(v: &[TargetId], from: usize, id: TargetId) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < v.len() && v[hi] < id {
        lo = hi + 1;
        hi = from + step;
        step *= 2;
    }
    let hi = hi.min(v.len());
    lo + v[lo..hi].partition_point(|&t| t < id)
}

/// `v[..end].partition_point(|t| t < id)` for sorted `v`, by steps of
/// growing length back from `end`.
fn gallop_back(v: &[TargetId], end: usize, id: TargetId) -> usize {
    let (mut hi, mut step) = (end, 1);
    loop {
        let lo = hi.saturating_sub(step);
        if lo == 0 || v[lo] < id {
            return lo + v[lo..hi].partition_point(|&t| t < id);
        }
        hi = lo;
        step *= 2;
    }
}

/// The algorithm's per-target arrays, reused from round to round; a clone
/// starts without them.
#[derive(Debug, Default)]
struct Reused(Scratch);

impl Clone for Reused {
    fn clone(&self) -> Self {
        Reused::default()
    }
}

impl Planner {
    /// An empty planner (no target, no shard).
    pub fn new(config: PlannerConfig) -> Result<Self, PlanError> {
        config.validate()?;
        Ok(Planner {
            config,
            shards: Vec::new(),
            tid: Vec::new(),
            tload: Vec::new(),
            cur: Vec::new(),
            names: Vec::new(),
            name_index: HashMap::new(),
            pending: BTreeMap::new(),
            orphans: BTreeMap::new(),
            scratch: Reused::default(),
            fence: Vec::new(),
        })
    }

    /// A planner holding exactly `input` (O(n log n), like one
    /// [`super::plan`] pass); the same errors as [`super::plan`].
    pub fn from_input(input: &PlanInput<'_>) -> Result<Self, PlanError> {
        let mut p = Planner::new(input.config.clone())?;
        p.set_shards(input.shards)?;
        let (tid, tload) = work::sorted_targets(input.targets)?;
        p.cur = vec![NOWHERE; tid.len()];
        p.tid = tid;
        p.tload = tload;
        p.rebuild_fence();
        for (&t, s) in input.current {
            p.set_current(t, Some(s));
        }
        Ok(p)
    }

    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Replaces the config (checked first; on error nothing changes).
    pub fn set_config(&mut self, config: PlannerConfig) -> Result<(), PlanError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Replaces the shard list (checked first; on error nothing changes).
    /// O(S log S): a round may pass the whole list every time.
    pub fn set_shards(&mut self, shards: &[PlanShard]) -> Result<(), PlanError> {
        let sorted = work::sorted_shards(shards)?;
        let same = sorted.len() == self.shards.len()
            && sorted.iter().zip(&self.shards).all(|(a, b)| *a == b);
        if !same {
            self.shards = sorted.into_iter().cloned().collect();
        }
        Ok(())
    }

    /// Adds a target, or sets the load of one already there. A load whose
    /// samples/s is not a finite number >= 0 is refused (nothing changes).
    pub fn upsert_target(&mut self, id: TargetId, load: Load) -> Result<(), PlanError> {
        work::check_load(id, load)?;
        match self.find(id) {
            Ok(k) => {
                self.tload[k] = load;
                // Removed earlier this round: it stays after all.
                self.pending.remove(&id);
            }
            Err(_) => {
                self.pending.insert(id, Some(load));
            }
        }
        Ok(())
    }

    /// Removes a target (nothing when it is not there). Its current shard
    /// is kept until [`Self::set_current`] clears it, as an entry of a
    /// [`PlanInput::current`] map would be.
    pub fn remove_target(&mut self, id: TargetId) {
        match self.find(id) {
            Ok(_) => {
                self.pending.insert(id, None);
            }
            Err(_) => {
                self.pending.remove(&id);
            }
        }
    }

    /// Sets (or clears, with `None`) where a target is now: the entry of
    /// [`PlanInput::current`]. A target need not be planned to have one.
    pub fn set_current(&mut self, id: TargetId, shard: Option<&ShardId>) {
        let code = match shard {
            Some(s) => self.intern(s),
            None => NOWHERE,
        };
        match self.find(id) {
            Ok(k) => self.cur[k] = code,
            Err(_) if code == NOWHERE => {
                self.orphans.remove(&id);
            }
            Err(_) => {
                self.orphans.insert(id, code);
            }
        }
    }

    /// Takes a plan's moves as done: every moved target's current shard
    /// becomes its new one (O(moves)).
    pub fn apply_moves(&mut self, plan: &Plan) {
        for m in &plan.moves {
            self.set_current(m.target, Some(&m.to));
        }
    }

    /// How many targets are planned (after this round's changes).
    pub fn len(&mut self) -> usize {
        self.merge_pending();
        self.tid.len()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Plans this round: the same [`Plan`] as [`super::plan`] of
    /// [`Self::input_equivalent`]. The state stays as it is (apply the
    /// moves that happen with [`Self::set_current`] or
    /// [`Self::apply_moves`]).
    pub fn plan(&mut self) -> Plan {
        self.merge_pending();
        if self.names.len() > 2 * self.shards.len() + 64 {
            self.compact_names();
        }
        let mut scratch = std::mem::take(&mut self.scratch.0);
        // Interned name -> this round's code (shard index or gone name).
        let mut gone = Vec::new();
        let code_of: Vec<u32> = self
            .names
            .iter()
            .map(|n| match self.shards.binary_search_by(|s| s.id.cmp(n)) {
                Ok(s) => s as u32,
                Err(_) => {
                    gone.push(n);
                    work::gone_code(gone.len() - 1)
                }
            })
            .collect();
        let mut current = scratch.take_current();
        current.extend(self.cur.iter().map(|&c| {
            if c == NOWHERE {
                work::NOWHERE
            } else {
                code_of[c as usize]
            }
        }));
        let (plan, scratch) = super::run(Prepared {
            cfg: &self.config,
            shards: self.shards.iter().collect(),
            tid: Cow::Borrowed(&self.tid),
            tload: Cow::Borrowed(&self.tload),
            current,
            gone,
            scratch,
        });
        self.scratch.0 = scratch;
        plan
    }

    /// The [`PlanInput`] parts this planner holds: targets (in id order,
    /// `job` empty), shards and the current assignment (O(n), for tests
    /// and comparisons).
    pub fn input_equivalent(
        &mut self,
    ) -> (Vec<PlanTarget>, Vec<PlanShard>, BTreeMap<TargetId, ShardId>) {
        self.merge_pending();
        let targets = self
            .tid
            .iter()
            .zip(&self.tload)
            .map(|(&id, &load)| PlanTarget {
                id,
                job: String::new(),
                load,
            })
            .collect();
        let mut current: BTreeMap<TargetId, ShardId> = self
            .tid
            .iter()
            .zip(&self.cur)
            .filter(|(_, c)| **c != NOWHERE)
            .map(|(&t, &c)| (t, self.names[c as usize].clone()))
            .collect();
        for (&t, &c) in &self.orphans {
            current.insert(t, self.names[c as usize].clone());
        }
        (targets, self.shards.clone(), current)
    }

    /// Drops the interned names no target's current shard uses (shard ids
    /// come and go over a long run): O(n), in the rare round that finds
    /// more names than twice the shards plus 64.
    fn compact_names(&mut self) {
        let mut used = vec![false; self.names.len()];
        for &c in self.cur.iter().chain(self.orphans.values()) {
            if c != NOWHERE {
                used[c as usize] = true;
            }
        }
        let mut remap = vec![NOWHERE; self.names.len()];
        let mut names = Vec::new();
        for (k, n) in std::mem::take(&mut self.names).into_iter().enumerate() {
            if used[k] {
                remap[k] = names.len() as u32;
                names.push(n);
            }
        }
        for c in self.cur.iter_mut().chain(self.orphans.values_mut()) {
            if *c != NOWHERE {
                *c = remap[*c as usize];
            }
        }
        self.name_index = names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.clone(), k as u32))
            .collect();
        self.names = names;
    }

    fn intern(&mut self, shard: &ShardId) -> u32 {
        if let Some(&k) = self.name_index.get(shard) {
            return k;
        }
        let k = self.names.len() as u32;
        self.names.push(shard.clone());
        self.name_index.insert(shard.clone(), k);
        k
    }

    /// Merges the added and removed targets into the id-ordered arrays,
    /// in place (memory already in use, no fresh pages): one compacting
    /// pass for the removals, one backward pass for the additions; only in
    /// a round that added or removed targets.
    fn merge_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut adds: Vec<(TargetId, Load)> = Vec::new();
        let mut gone: Vec<usize> = Vec::new();
        let mut from = 0;
        for (id, change) in pending {
            match change {
                Some(load) => adds.push((id, load)),
                None => {
                    // Only ids in the table are pending removal.
                    let k = gallop_forward(&self.tid, from, id);
                    debug_assert_eq!(self.tid.get(k), Some(&id));
                    gone.push(k);
                    from = k + 1;
                }
            }
        }
        for &k in &gone {
            if self.cur[k] != NOWHERE {
                self.orphans.insert(self.tid[k], self.cur[k]);
            }
        }
        self.remove_at(&gone);
        self.insert_sorted(&adds);
        self.rebuild_fence();
    }

    /// Every [`FENCE`]th id, for [`Self::find`].
    fn rebuild_fence(&mut self) {
        self.fence.clear();
        self.fence.extend(self.tid.iter().step_by(FENCE).copied());
    }

    /// `tid.binary_search(&id)`, through the fence: a small array that
    /// stays in cache, then one block, instead of about 20 cache misses
    /// over the whole id array.
    fn find(&self, id: TargetId) -> Result<usize, usize> {
        let b = self.fence.partition_point(|&f| f <= id);
        if b == 0 {
            return Err(0);
        }
        let start = (b - 1) * FENCE;
        let end = (start + FENCE).min(self.tid.len());
        match self.tid[start..end].binary_search(&id) {
            Ok(k) => Ok(start + k),
            Err(k) => Err(start + k),
        }
    }

    /// Removes the entries at `gone` (ascending indexes).
    fn remove_at(&mut self, gone: &[usize]) {
        let Some(&first) = gone.first() else { return };
        let mut write = first;
        for (j, &k) in gone.iter().enumerate() {
            let end = gone.get(j + 1).copied().unwrap_or(self.tid.len());
            let run = k + 1..end;
            let len = run.len();
            self.tid.copy_within(run.clone(), write);
            self.tload.copy_within(run.clone(), write);
            self.cur.copy_within(run, write);
            write += len;
        }
        self.tid.truncate(write);
        self.tload.truncate(write);
        self.cur.truncate(write);
    }

    /// Inserts `adds` (ascending ids, none in the table) in id order.
    fn insert_sorted(&mut self, adds: &[(TargetId, Load)]) {
        if adds.is_empty() {
            return;
        }
        let old = self.tid.len();
        let new = old + adds.len();
        self.tid.resize(new, 0);
        self.tload.resize(new, Load::default());
        self.cur.resize(new, NOWHERE);
        // From the back: the run of old entries after each addition moves
        // up by the number of additions up to and including it.
        let mut end = old;
        for (j, &(id, load)) in adds.iter().enumerate().rev() {
            let p = gallop_back(&self.tid, end, id);
            let shift = j + 1;
            self.tid.copy_within(p..end, p + shift);
            self.tload.copy_within(p..end, p + shift);
            self.cur.copy_within(p..end, p + shift);
            let at = p + j;
            self.tid[at] = id;
            self.tload[at] = load;
            self.cur[at] = self.orphans.remove(&id).unwrap_or(NOWHERE);
            end = p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Capacity;

    fn shard(name: &str) -> PlanShard {
        PlanShard {
            id: ShardId::from(name),
            capacity: Capacity {
                max_series: 10_000,
                max_samples_per_second: 1000.0,
            },
            draining: false,
        }
    }

    #[test]
    fn names_of_shards_long_gone_are_dropped_and_plans_stay_the_same() {
        let mut p = Planner::new(PlannerConfig::default()).expect("valid config");
        for t in 0..50u64 {
            p.upsert_target(
                t,
                Load {
                    series: 10,
                    samples_per_second: 1.0,
                },
            )
            .expect("valid load");
        }
        // 300 generations of one shard each, targets following along.
        for g in 0..300 {
            let s = shard(&format!("pod-{g}"));
            p.set_shards(std::slice::from_ref(&s))
                .expect("valid shards");
            let plan = p.plan();
            let (targets, shards, current) = p.input_equivalent();
            let want = super::super::plan(&PlanInput {
                targets: &targets,
                shards: &shards,
                current: &current,
                config: p.config(),
            })
            .expect("valid input");
            assert_eq!(plan, want, "generation {g}");
            // Target 0 stays behind on the first shard, gone from the
            // second generation on: its name must survive compaction.
            for m in plan.moves.iter().filter(|m| m.target != 0 || g == 0) {
                p.set_current(m.target, Some(&m.to));
            }
        }
        assert!(
            p.names.len() <= 2 * p.shards.len() + 64 + 1,
            "{}",
            p.names.len()
        );
        assert_eq!(p.names.len(), p.name_index.len());
        let (_, _, current) = p.input_equivalent();
        assert_eq!(current.len(), 50);
        assert_eq!(current[&0].0, "pod-0");
        assert!(current.iter().all(|(t, s)| *t == 0 || s.0 == "pod-299"));
    }
}
