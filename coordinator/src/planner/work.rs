//! The planner's working state: inputs sorted by id, the assignment being
//! built, shard loads, and the steps before and after rebalancing.

use std::collections::BTreeSet;

use crate::model::{Capacity, Load, ShardId, TargetId};

use xxhash_rust::xxh3::xxh3_64;

use super::{
    Assignment, Move, MoveReason, Plan, PlanError, PlanInput, PlanShard, PlannerConfig, hrw,
};

/// A target on a shard, with what the rebalancing scans read, inline: they
/// walk a shard's targets in an order unrelated to the target arrays'.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub i: u32,
    pub free: bool,
    pub load: Load,
}

/// Where a target is before this round.
#[derive(Clone, Copy, Debug)]
pub(super) enum Current<'a> {
    Nowhere,
    Gone(&'a ShardId),
    On(usize),
}

pub(super) struct Work<'a> {
    pub cfg: &'a PlannerConfig,
    pub shards: Vec<&'a PlanShard>,
    /// Target ids and loads, in id order (compact copies: the hot loops
    /// walk them in an order unrelated to the input's memory layout).
    pub tid: Vec<TargetId>,
    pub tload: Vec<Load>,
    pub current: Vec<Current<'a>>,
    /// The shard each target is on now (in this round's plan).
    pub assign: Vec<Option<usize>>,
    /// Moving it costs nothing: placed this round, or already moved once.
    pub free: Vec<bool>,
    pub reason: Vec<Option<MoveReason>>,
    pub oversized: Vec<bool>,
    pub eligible: Vec<bool>,
    /// The oversized target a shard is reserved for.
    pub owner: Vec<Option<usize>>,
    /// Capacity relative to the config's typical shard.
    pub size: Vec<f64>,
    pub seed: Vec<u64>,
    pub load: Vec<Load>,
    pub util: Vec<f64>,
    pub members: Vec<Vec<Member>>,
    /// A target's index in its shard's `members`.
    pub pos: Vec<u32>,
    /// The free targets among `members` (phase 1 of rebalancing looks at
    /// no other), and a free target's index there.
    pub free_members: Vec<Vec<Member>>,
    fpos: Vec<u32>,
    displaced: Vec<usize>,
}

/// Shard id -> index, for the current assignment's one lookup per target:
/// open addressing on xxh3 of the id (a short string hashes in a few ns).
struct ShardLookup {
    mask: usize,
    /// Shard index + 1; 0 is an empty slot.
    slots: Vec<u32>,
}

impl ShardLookup {
    fn new(shards: &[&PlanShard]) -> Self {
        let size = (shards.len() * 4).next_power_of_two().max(8);
        let mut slots = vec![0u32; size];
        let mask = size - 1;
        for (i, s) in shards.iter().enumerate() {
            let mut k = xxh3_64(s.id.0.as_bytes()) as usize & mask;
            while slots[k] != 0 {
                k = (k + 1) & mask;
            }
            slots[k] = i as u32 + 1;
        }
        ShardLookup { mask, slots }
    }

    fn get(&self, shards: &[&PlanShard], id: &ShardId) -> Option<usize> {
        let mut k = xxh3_64(id.0.as_bytes()) as usize & self.mask;
        loop {
            match self.slots[k] {
                0 => return None,
                s if shards[s as usize - 1].id == *id => return Some(s as usize - 1),
                _ => k = (k + 1) & self.mask,
            }
        }
    }
}

/// Sorts (key, index) pairs by key, equal keys in their given order: one
/// counting-sort pass on the 16 highest bits in which keys differ, then a
/// small sort per bucket. Target ids are hashes, spread evenly: a million
/// of them sort in a few ms, where a comparison sort takes tens (keys that
/// crowd into few buckets only fall back to that).
fn radix_sort<T: Copy + Default>(v: &mut Vec<(u64, T)>) {
    const BITS: u32 = 16;
    if v.len() < 4096 {
        v.sort_by_key(|e| e.0);
        return;
    }
    let (mut or, mut and) = (0u64, u64::MAX);
    for &(k, _) in v.iter() {
        or |= k;
        and &= k;
    }
    let top = 64 - (or ^ and).leading_zeros();
    if top == 0 {
        return; // one key
    }
    let shift = top.saturating_sub(BITS);
    let buckets = 1usize << (top - shift);
    let bucket = |k: u64| ((k >> shift) as usize) & (buckets - 1);
    let mut start = vec![0usize; buckets + 1];
    for &(k, _) in v.iter() {
        start[bucket(k) + 1] += 1;
    }
    for b in 1..=buckets {
        start[b] += start[b - 1];
    }
    let mut next = start.clone();
    let mut buf = vec![(0u64, T::default()); v.len()];
    for &e in v.iter() {
        let b = bucket(e.0);
        buf[next[b]] = e;
        next[b] += 1;
    }
    for w in start.windows(2) {
        if w[1] - w[0] > 1 {
            buf[w[0]..w[1]].sort_by_key(|e| e.0);
        }
    }
    *v = buf;
}

/// `a - b`, never below zero (float drift on samples/s).
pub(super) fn sub(a: Load, b: Load) -> Load {
    Load {
        series: a.series.saturating_sub(b.series),
        samples_per_second: (a.samples_per_second - b.samples_per_second).max(0.0),
    }
}

/// A target's size in typical shards (sort key: largest first).
fn typical_util(cfg: &PlannerConfig, load: Load) -> f64 {
    let u = cfg.shard_capacity.utilization(load);
    if u.is_nan() { 0.0 } else { u }
}

impl<'a> Work<'a> {
    pub fn new(input: &PlanInput<'a>) -> Result<Self, PlanError> {
        let cfg = input.config;
        let mut shards: Vec<&PlanShard> = input.shards.iter().collect();
        for s in &shards {
            let v = s.capacity.max_samples_per_second;
            if !(v.is_finite() && v >= 0.0) {
                return Err(PlanError::ShardCapacity {
                    shard: s.id.clone(),
                    value: v,
                });
            }
        }
        shards.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(w) = shards.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(PlanError::DuplicateShard(w[0].id.clone()));
        }
        // Already in id order (a caller iterating a sorted map): no sort.
        let sorted = input.targets.windows(2).all(|w| w[0].id < w[1].id);
        let (tid, tload): (Vec<TargetId>, Vec<Load>) = if sorted {
            input.targets.iter().map(|t| (t.id, t.load)).unzip()
        } else {
            // The loads travel with the ids: no random reads afterwards.
            let mut order: Vec<(TargetId, Load)> =
                input.targets.iter().map(|t| (t.id, t.load)).collect();
            radix_sort(&mut order);
            if let Some(w) = order.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(PlanError::DuplicateTarget(w[0].0));
            }
            order.into_iter().unzip()
        };
        // Checked on the compact copy (the first bad one in id order).
        if let Some(k) = tload
            .iter()
            .position(|l| !(l.samples_per_second.is_finite() && l.samples_per_second >= 0.0))
        {
            return Err(PlanError::TargetLoad {
                target: tid[k],
                value: tload[k].samples_per_second,
            });
        }

        let by_name = ShardLookup::new(&shards);
        // Merge the sorted targets with the sorted current assignment.
        let mut current = Vec::with_capacity(tid.len());
        let mut cur = input.current.iter().peekable();
        for &t in &tid {
            while cur.next_if(|(id, _)| **id < t).is_some() {}
            let c = match cur.next_if(|(id, _)| **id == t) {
                None => Current::Nowhere,
                Some((_, shard)) => match by_name.get(&shards, shard) {
                    Some(s) => Current::On(s),
                    None => Current::Gone(shard),
                },
            };
            current.push(c);
        }

        let mut eligible: Vec<bool> = shards.iter().map(|s| !s.draining).collect();
        if !eligible.iter().any(|&e| e) {
            // Every shard drains: keep using them rather than scrape nothing.
            eligible.iter_mut().for_each(|e| *e = true);
        }
        let unit = Load {
            series: cfg.shard_capacity.max_series,
            samples_per_second: cfg.shard_capacity.max_samples_per_second,
        };
        let size = shards
            .iter()
            .map(|s| {
                let u = s.capacity.utilization(unit);
                if u > 0.0 && u.is_finite() {
                    1.0 / u
                } else if u == 0.0 {
                    1.0
                } else {
                    1e-9
                }
            })
            .collect();
        let seed = shards.iter().map(|s| hrw::shard_seed(&s.id)).collect();

        // Oversized: fits on no eligible shard. Only the capacities no other
        // eligible shard dominates need checking.
        let mut frontier: Vec<Capacity> = Vec::new();
        for (s, sh) in shards.iter().enumerate() {
            if !eligible[s] {
                continue;
            }
            let c = sh.capacity;
            let dominated = |o: &Capacity| {
                o.max_series >= c.max_series && o.max_samples_per_second >= c.max_samples_per_second
            };
            if frontier.iter().any(dominated) {
                continue;
            }
            frontier.retain(|o| {
                !(c.max_series >= o.max_series
                    && c.max_samples_per_second >= o.max_samples_per_second)
            });
            frontier.push(c);
        }
        let oversized = tload
            .iter()
            // utilization > 1 in either dimension, without the divisions.
            .map(|&l| {
                !frontier.is_empty()
                    && frontier.iter().all(|c| {
                        l.series > c.max_series || l.samples_per_second > c.max_samples_per_second
                    })
            })
            .collect();

        let n = tid.len();
        let mut w = Work {
            cfg,
            current,
            assign: vec![None; n],
            free: vec![true; n],
            reason: vec![None; n],
            oversized,
            owner: vec![None; shards.len()],
            size,
            seed,
            load: vec![Load::default(); shards.len()],
            util: vec![0.0; shards.len()],
            members: vec![Vec::new(); shards.len()],
            pos: vec![0; n],
            free_members: vec![Vec::new(); shards.len()],
            fpos: vec![0; n],
            displaced: Vec::new(),
            eligible,
            shards,
            tid,
            tload,
        };
        // Sticky targets in bulk: utilization once per shard at the end.
        for i in 0..n {
            match w.current[i] {
                Current::On(s) if w.eligible[s] => {
                    w.assign[i] = Some(s);
                    w.pos[i] = w.members[s].len() as u32;
                    w.members[s].push(Member {
                        i: i as u32,
                        free: false,
                        load: w.tload[i],
                    });
                    w.load[s] = w.load[s].add(w.tload[i]);
                    w.free[i] = false;
                }
                Current::On(_) => w.displace(i, MoveReason::Draining),
                Current::Gone(_) => w.displace(i, MoveReason::ShardGone),
                Current::Nowhere => w.displace(i, MoveReason::New),
            }
        }
        for s in 0..w.shards.len() {
            w.util[s] = w.shards[s].capacity.utilization(w.load[s]);
        }
        Ok(w)
    }

    pub fn assign_to(&mut self, i: usize, s: usize) {
        self.attach(i, s);
        self.load[s] = self.load[s].add(self.tload[i]);
        self.util[s] = self.shards[s].capacity.utilization(self.load[s]);
    }

    /// [`Self::assign_to`] without the shard's load (already counted).
    fn attach(&mut self, i: usize, s: usize) {
        debug_assert!(self.assign[i].is_none());
        self.assign[i] = Some(s);
        let m = Member {
            i: i as u32,
            free: self.free[i],
            load: self.tload[i],
        };
        self.pos[i] = self.members[s].len() as u32;
        self.members[s].push(m);
        if m.free {
            self.fpos[i] = self.free_members[s].len() as u32;
            self.free_members[s].push(m);
        }
    }

    pub fn unassign(&mut self, i: usize) {
        let Some(s) = self.assign[i].take() else {
            return;
        };
        let p = self.pos[i] as usize;
        self.members[s].swap_remove(p);
        if let Some(moved) = self.members[s].get(p) {
            self.pos[moved.i as usize] = p as u32;
        }
        if self.free[i] {
            let f = self.fpos[i] as usize;
            self.free_members[s].swap_remove(f);
            if let Some(moved) = self.free_members[s].get(f) {
                self.fpos[moved.i as usize] = f as u32;
            }
        }
        self.load[s] = sub(self.load[s], self.tload[i]);
        self.util[s] = self.shards[s].capacity.utilization(self.load[s]);
    }

    /// Marks a target free (moving it again costs nothing).
    pub fn make_free(&mut self, i: usize) {
        if self.free[i] {
            return;
        }
        self.free[i] = true;
        if let Some(s) = self.assign[i] {
            let m = &mut self.members[s][self.pos[i] as usize];
            m.free = true;
            let m = *m;
            self.fpos[i] = self.free_members[s].len() as u32;
            self.free_members[s].push(m);
        }
    }

    /// Takes a target off its shard (if any) for placement later.
    fn displace(&mut self, i: usize, reason: MoveReason) {
        self.unassign(i);
        self.reason[i].get_or_insert(reason);
        self.free[i] = true;
        self.displaced.push(i);
    }

    /// Step 2 of the module docs: a shard of its own per oversized target.
    pub fn claim_for_oversized(&mut self) {
        let mut list: Vec<usize> = (0..self.tid.len()).filter(|&i| self.oversized[i]).collect();
        if list.is_empty() {
            return;
        }
        let cfg = self.cfg;
        list.sort_by(|&a, &b| {
            let (la, lb) = (self.tload[a], self.tload[b]);
            typical_util(cfg, lb)
                .total_cmp(&typical_util(cfg, la))
                .then(a.cmp(&b))
        });
        for &i in &list {
            if let Some(s) = self.assign[i]
                && self.owner[s].is_none()
            {
                self.owner[s] = Some(i);
            }
        }
        for &i in &list {
            if self.assign[i].is_some_and(|s| self.owner[s] == Some(i)) {
                continue;
            }
            let unclaimed = |w: &Self, s: usize| w.eligible[s] && w.owner[s].is_none();
            let tid = self.tid[i];
            let empty = (0..self.shards.len())
                .filter(|&s| unclaimed(self, s) && self.members[s].is_empty())
                .map(|s| {
                    (
                        hrw::score(hrw::pair_hash(tid, self.seed[s]), self.size[s]),
                        s,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, s)| s);
            let choice = empty.or_else(|| {
                (0..self.shards.len())
                    .filter(|&s| unclaimed(self, s))
                    .min_by(|&a, &b| self.util[a].total_cmp(&self.util[b]).then(a.cmp(&b)))
            });
            let Some(s) = choice else { break };
            if self.assign[i].is_some() {
                self.unassign(i);
                self.reason[i] = Some(MoveReason::Oversized);
                self.free[i] = true;
            }
            self.owner[s] = Some(i);
            self.assign_to(i, s);
        }
        // Clear the claimed shards, when someone else can take the rest.
        if (0..self.shards.len()).any(|s| self.eligible[s] && self.owner[s].is_none()) {
            for s in 0..self.shards.len() {
                let Some(o) = self.owner[s] else { continue };
                let others: Vec<usize> = self.members[s]
                    .iter()
                    .map(|m| m.i as usize)
                    .filter(|&i| i != o)
                    .collect();
                for i in others {
                    self.displace(i, MoveReason::Oversized);
                }
            }
        }
    }

    /// Step 3: displaced targets by weighted rendezvous among their
    /// candidate shards with room, else among all shards with room, else
    /// the least utilized.
    pub fn place_displaced(&mut self) {
        let mut todo = std::mem::take(&mut self.displaced);
        todo.retain(|&i| self.assign[i].is_none());
        if !todo.is_sorted() {
            todo.sort_unstable();
        }
        todo.dedup();
        if todo.is_empty() || !self.eligible.iter().any(|&e| e) {
            return;
        }
        let cfg = self.cfg;
        // Largest first, then lower id: the key is the size's bits, which
        // order like the size for sizes >= 0, inverted.
        // Id and load travel with the sort key: the loop below then reads
        // sequentially, not at random in the target arrays.
        let mut order: Vec<(u64, (u32, TargetId, Load))> = todo
            .iter()
            .map(|&i| {
                let load = self.tload[i];
                (
                    u64::MAX - typical_util(cfg, load).to_bits(),
                    (i as u32, self.tid[i], load),
                )
            })
            .collect();
        radix_sort(&mut order);
        let mut cands: Vec<usize> = (0..self.shards.len())
            .filter(|&s| self.eligible[s] && self.owner[s].is_none())
            .collect();
        if cands.is_empty() {
            cands = (0..self.shards.len())
                .filter(|&s| self.eligible[s])
                .collect();
        }
        // Inverse capacities per shard: the room check runs for every
        // (target, candidate) pair, multiplications instead of divisions.
        let inv: Vec<(f64, f64)> = self
            .shards
            .iter()
            .map(|s| {
                let c = &s.capacity;
                (1.0 / c.max_series as f64, 1.0 / c.max_samples_per_second)
            })
            .collect();
        let ring = (cands.len() > hrw::CANDIDATES)
            .then(|| hrw::Ring::new(cands.iter().map(|&s| (self.seed[s], s))));
        let mut near = Vec::with_capacity(hrw::CANDIDATES);
        // Decide in size order, touching only the shards' state; then
        // record the choices in target order (sequential memory, where the
        // size order jumps around a million-entry arrays).
        let mut choice = vec![u32::MAX; self.tid.len()];
        for &(_, (i, id, load)) in &order {
            let i = i as usize;
            let s = match &ring {
                Some(ring) => {
                    ring.candidates(id, hrw::CANDIDATES, &mut near);
                    self.rendezvous(id, load, &near, &inv)
                        .or_else(|| self.rendezvous_or_least(id, load, &cands, &inv))
                }
                None => self.rendezvous_or_least(id, load, &cands, &inv),
            };
            if let Some(s) = s {
                self.load[s] = self.load[s].add(load);
                self.util[s] = self.shards[s].capacity.utilization(self.load[s]);
                choice[i] = s as u32;
            }
        }
        drop(order);
        for i in todo {
            if choice[i] != u32::MAX {
                self.attach(i, choice[i] as usize);
            }
        }
    }

    /// The utilization of shard `s` with target `i` added.
    fn util_with(&self, s: usize, t: Load, inv: &[(f64, f64)]) -> f64 {
        fn ratio(used: f64, inv: f64) -> f64 {
            if inv.is_finite() {
                used * inv
            } else if used > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        }
        let l = &self.load[s];
        let (inv_s, inv_r) = inv[s];
        ratio((l.series + t.series) as f64, inv_s)
            .max(ratio(l.samples_per_second + t.samples_per_second, inv_r))
    }

    /// Weighted rendezvous hashing of target `i` among the `shards` that
    /// stay under the rebalancing goal (`high_watermark - hysteresis`) with
    /// it: a placement must not leave a shard that rebalancing would relieve
    /// in the same round.
    fn rendezvous(
        &self,
        id: TargetId,
        load: Load,
        shards: &[usize],
        inv: &[(f64, f64)],
    ) -> Option<usize> {
        let hw = self.cfg.high_watermark - self.cfg.hysteresis;
        let mut best: Option<(f64, usize)> = None;
        for &s in shards {
            if self.util_with(s, load, inv) <= hw {
                let weight = self.size[s] * (1.0 - self.util[s]).max(1e-6);
                let score = hrw::score(hrw::pair_hash(id, self.seed[s]), weight);
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, s));
                }
            }
        }
        best.map(|(_, s)| s)
    }

    /// [`Self::rendezvous`] over `shards`, else the one of them least
    /// utilized with target `i`.
    fn rendezvous_or_least(
        &self,
        id: TargetId,
        load: Load,
        shards: &[usize],
        inv: &[(f64, f64)],
    ) -> Option<usize> {
        self.rendezvous(id, load, shards, inv).or_else(|| {
            let mut least: Option<(f64, usize)> = None;
            for &s in shards {
                let after = self.util_with(s, load, inv);
                if least.is_none_or(|(u, _)| after < u) {
                    least = Some((after, s));
                }
            }
            least.map(|(_, s)| s)
        })
    }

    /// The shards rebalancing works on: eligible, not held by an oversized
    /// target.
    pub fn balanced_shards(&self) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&s| self.eligible[s] && self.owner[s].is_none())
            .collect()
    }

    pub fn into_plan(self, budget_exhausted: bool) -> Plan {
        let cfg = self.cfg;
        // Sized first: a cold plan's million moves without regrowth.
        let n_moves = (0..self.tid.len())
            .filter(|&i| match (self.assign[i], self.current[i]) {
                (None, _) => false,
                (Some(s), Current::On(c)) => s != c,
                _ => true,
            })
            .count();
        let mut moves = Vec::with_capacity(n_moves);
        let mut unassigned = Vec::new();
        let mut loads = vec![Load::default(); self.shards.len()];
        let mut rest = Load::default();
        let mut n_oversized = 0usize;
        let mut oversized = BTreeSet::new();
        let mut on = Vec::with_capacity(self.tid.len());
        for (i, (&id, &load)) in self.tid.iter().zip(&self.tload).enumerate() {
            if self.oversized[i] {
                oversized.insert(id);
                n_oversized += 1;
            } else {
                rest = rest.add(load);
            }
            let Some(s) = self.assign[i] else {
                unassigned.push(id);
                continue;
            };
            loads[s] = loads[s].add(load);
            on.push(s as u32);
            let from = match self.current[i] {
                Current::On(c) if c == s => continue,
                Current::On(c) => Some(self.shards[c].id.clone()),
                Current::Gone(g) => Some(g.clone()),
                Current::Nowhere => None,
            };
            moves.push(Move {
                target: id,
                from,
                to: self.shards[s].id.clone(),
                series: load.series,
                reason: self.reason[i].unwrap_or(MoveReason::Rebalance),
            });
        }
        let balanced = self.balanced_shards();
        let utils: Vec<f64> = balanced
            .iter()
            .map(|&s| self.shards[s].capacity.utilization(loads[s]))
            .collect();
        let mean = utils.iter().sum::<f64>() / utils.len().max(1) as f64;
        let max = utils.iter().copied().fold(0.0, f64::max);
        let imbalance = if mean > 0.0 && mean.is_finite() {
            max / mean
        } else {
            1.0
        };

        let u = cfg.shard_capacity.utilization(rest) / cfg.target_utilization;
        let wanted = if u.is_finite() {
            n_oversized.saturating_add((u - 1e-9).ceil().max(0.0) as usize)
        } else {
            cfg.max_shards
        };
        let wanted = if self.tid.is_empty() {
            wanted
        } else {
            wanted.max(1)
        };
        let desired_shards = wanted.clamp(cfg.min_shards, cfg.max_shards);

        let shard_loads = self
            .shards
            .iter()
            .zip(loads)
            .map(|(s, l)| (s.id.clone(), l))
            .collect();
        // Either every target is assigned or none (no shard at all).
        let assigned = if unassigned.is_empty() {
            self.tid
        } else {
            self.tid
                .iter()
                .zip(&self.assign)
                .filter(|(_, a)| a.is_some())
                .map(|(&t, _)| t)
                .collect()
        };
        let ids = self.shards.iter().map(|s| s.id.clone()).collect();
        let assignment = Assignment::new(ids, assigned, on);
        Plan {
            assignment,
            moves,
            oversized,
            unassigned,
            shard_loads,
            desired_shards,
            imbalance,
            budget_exhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::radix_sort;

    #[test]
    fn radix_sort_orders_by_key_and_keeps_ties_in_order() {
        for n in [0usize, 5, 5000, 70_000] {
            let mut v: Vec<(u64, u32)> = (0..n as u32)
                .map(|k| {
                    let key = xxhash_rust::xxh3::xxh3_64(&(k / 3).to_le_bytes());
                    // Some keys small (shared high digits), some repeated.
                    (if k % 7 == 0 { key >> 40 } else { key }, k)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|e| e.0);
            radix_sort(&mut v);
            assert_eq!(v, want, "n = {n}");
        }
    }
}
