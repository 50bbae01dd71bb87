//! The planner's working state: inputs sorted by id, the assignment being
//! built, shard loads, and the steps before and after rebalancing.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::model::{Capacity, Load, ShardId, TargetId};

use xxhash_rust::xxh3::xxh3_64;

use super::{
    Assignment, Move, MoveReason, Plan, PlanError, PlanInput, PlanShard, PlanTarget, PlannerConfig,
    hrw,
};

/// A target on a shard, with what the rebalancing scans read, inline: they
/// walk a shard's targets in an order unrelated to the target arrays'.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub i: u32,
    pub free: bool,
    pub load: Load,
}

/// Where a target is before this round (decoded from its code: a shard
/// index, [`NOWHERE`], or [`gone_code`] of an index into the gone names).
#[derive(Clone, Copy, Debug)]
pub(super) enum Current<'a> {
    Nowhere,
    Gone(&'a ShardId),
    On(usize),
}

/// The current-shard code of a target on no shard (and `assign` of an
/// unassigned one).
pub(super) const NOWHERE: u32 = u32::MAX;

/// The current-shard code of the `g`-th gone shard name.
pub(super) fn gone_code(g: usize) -> u32 {
    u32::MAX - 1 - g as u32
}

/// The per-target working arrays, kept by a [`super::Planner`] from one
/// round to the next: refilled, not reallocated (a million-target round
/// otherwise spends much of its time faulting in fresh pages).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    current: Vec<u32>,
    assign: Vec<u32>,
    free: Vec<bool>,
    reason: Vec<Option<MoveReason>>,
    oversized: Vec<bool>,
    pos: Vec<u32>,
    fpos: Vec<u32>,
    members: Vec<Vec<Member>>,
    free_members: Vec<Vec<Member>>,
}

impl Scratch {
    /// The buffer for the targets' current-shard codes (emptied).
    pub fn take_current(&mut self) -> Vec<u32> {
        let mut c = std::mem::take(&mut self.current);
        c.clear();
        c
    }
}

/// `v` emptied and filled with `n` copies of `x`, in its own memory.
fn refill<T: Clone>(mut v: Vec<T>, n: usize, x: T) -> Vec<T> {
    v.clear();
    v.resize(n, x);
    v
}

/// `lists` as `n` empty lists, each with room for `room(s)`.
fn relist(
    mut lists: Vec<Vec<Member>>,
    n: usize,
    room: impl Fn(usize) -> usize,
) -> Vec<Vec<Member>> {
    lists.resize_with(n, Vec::new);
    lists.truncate(n);
    for (s, l) in lists.iter_mut().enumerate() {
        l.clear();
        l.reserve(room(s));
    }
    lists
}

pub(super) struct Work<'a> {
    pub cfg: &'a PlannerConfig,
    pub shards: Vec<&'a PlanShard>,
    /// Target ids and loads, in id order (compact copies: the hot loops
    /// walk them in an order unrelated to the input's memory layout).
    pub tid: Cow<'a, [TargetId]>,
    pub tload: Cow<'a, [Load]>,
    /// Current-shard codes (see [`Current`]).
    current: Vec<u32>,
    gone: Vec<&'a ShardId>,
    /// The shard each target is on now (in this round's plan), NOWHERE.
    assign: Vec<u32>,
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

/// A shard's capacity as inverses: utilization by multiplication, for the
/// scans that check every (target, shard) pair (the same value as
/// [`Capacity::utilization`] up to rounding).
#[derive(Clone, Copy)]
pub(super) struct Inverse {
    series: f64,
    samples: f64,
}

impl Inverse {
    pub fn of(c: &Capacity) -> Inverse {
        let inv = |max: f64| if max > 0.0 { 1.0 / max } else { f64::INFINITY };
        Inverse {
            series: inv(c.max_series as f64),
            samples: inv(c.max_samples_per_second),
        }
    }

    pub fn utilization(&self, l: Load) -> f64 {
        fn ratio(used: f64, inv: f64) -> f64 {
            if inv.is_finite() {
                used * inv
            } else if used > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        }
        ratio(l.series as f64, self.series).max(ratio(l.samples_per_second, self.samples))
    }
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

/// The shards in id order, each capacity checked, no id twice.
pub(super) fn sorted_shards<'a>(
    shards: impl IntoIterator<Item = &'a PlanShard>,
) -> Result<Vec<&'a PlanShard>, PlanError> {
    let mut shards: Vec<&PlanShard> = shards.into_iter().collect();
    for s in &shards {
        check_capacity(s)?;
    }
    shards.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(w) = shards.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(PlanError::DuplicateShard(w[0].id.clone()));
    }
    Ok(shards)
}

/// A shard's samples/s capacity must be a finite number >= 0.
pub(super) fn check_capacity(s: &PlanShard) -> Result<(), PlanError> {
    let v = s.capacity.max_samples_per_second;
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(PlanError::ShardCapacity {
            shard: s.id.clone(),
            value: v,
        })
    }
}

/// A target's samples/s must be a finite number >= 0.
pub(super) fn check_load(id: TargetId, l: Load) -> Result<(), PlanError> {
    if l.samples_per_second.is_finite() && l.samples_per_second >= 0.0 {
        Ok(())
    } else {
        Err(PlanError::TargetLoad {
            target: id,
            value: l.samples_per_second,
        })
    }
}

/// The targets' ids and loads in id order (checked: no id twice, every
/// load valid; the first bad one in id order is reported).
pub(super) fn sorted_targets(
    targets: &[PlanTarget],
) -> Result<(Vec<TargetId>, Vec<Load>), PlanError> {
    // Already in id order (a caller iterating a sorted map): no sort.
    let sorted = targets.windows(2).all(|w| w[0].id < w[1].id);
    let (tid, tload): (Vec<TargetId>, Vec<Load>) = if sorted {
        targets.iter().map(|t| (t.id, t.load)).unzip()
    } else {
        // The loads travel with the ids: no random reads afterwards.
        let mut order: Vec<(TargetId, Load)> = targets.iter().map(|t| (t.id, t.load)).collect();
        radix_sort(&mut order);
        if let Some(w) = order.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PlanError::DuplicateTarget(w[0].0));
        }
        order.into_iter().unzip()
    };
    // Checked on the compact copy (the first bad one in id order).
    for (&id, &l) in tid.iter().zip(&tload) {
        check_load(id, l)?;
    }
    Ok((tid, tload))
}

/// What the algorithm starts from, in the form it works on: shards and
/// targets in id order, validated, and where each target is now. Built
/// from a [`PlanInput`] by [`Prepared::from_input`], or from the
/// [`super::Planner`]'s state (borrowing its arrays).
pub(super) struct Prepared<'a> {
    pub cfg: &'a PlannerConfig,
    pub shards: Vec<&'a PlanShard>,
    pub tid: Cow<'a, [TargetId]>,
    pub tload: Cow<'a, [Load]>,
    /// As long as `tid`: a shard index, [`NOWHERE`] or a [`gone_code`].
    pub current: Vec<u32>,
    /// The names of gone shards that `current` refers to.
    pub gone: Vec<&'a ShardId>,
    pub scratch: Scratch,
}

impl<'a> Prepared<'a> {
    pub fn from_input(input: &PlanInput<'a>) -> Result<Self, PlanError> {
        let shards = sorted_shards(input.shards)?;
        let (tid, tload) = sorted_targets(input.targets)?;
        let by_name = ShardLookup::new(&shards);
        // Merge the sorted targets with the sorted current assignment.
        let mut current = Vec::with_capacity(tid.len());
        let mut gone = Vec::new();
        let mut cur = input.current.iter().peekable();
        for &t in &tid {
            while cur.next_if(|(id, _)| **id < t).is_some() {}
            let c = match cur.next_if(|(id, _)| **id == t) {
                None => NOWHERE,
                Some((_, shard)) => match by_name.get(&shards, shard) {
                    Some(s) => s as u32,
                    None => {
                        gone.push(shard);
                        gone_code(gone.len() - 1)
                    }
                },
            };
            current.push(c);
        }
        Ok(Prepared {
            cfg: input.config,
            shards,
            tid: Cow::Owned(tid),
            tload: Cow::Owned(tload),
            current,
            gone,
            scratch: Scratch::default(),
        })
    }
}

impl<'a> Work<'a> {
    pub fn new(input: Prepared<'a>) -> Self {
        let Prepared {
            cfg,
            shards,
            tid,
            tload,
            current,
            gone,
            scratch,
        } = input;
        debug_assert_eq!(tid.len(), current.len());
        debug_assert_eq!(tid.len(), tload.len());

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
        let mut oversized = scratch.oversized;
        oversized.clear();
        oversized.extend(
            tload
                .iter()
                // utilization > 1 in either dimension, without the divisions.
                .map(|&l| {
                    !frontier.is_empty()
                        && frontier.iter().all(|c| {
                            l.series > c.max_series
                                || l.samples_per_second > c.max_samples_per_second
                        })
                }),
        );

        let n = tid.len();
        // Each shard's member list sized once (no regrowth of a million).
        let mut sticky = vec![0usize; shards.len()];
        for &c in &current {
            if let Some(k) = sticky.get_mut(c as usize) {
                *k += 1;
            }
        }
        let mut w = Work {
            cfg,
            current,
            gone,
            assign: refill(scratch.assign, n, NOWHERE),
            free: refill(scratch.free, n, true),
            reason: refill(scratch.reason, n, None),
            oversized,
            owner: vec![None; shards.len()],
            size,
            seed,
            load: vec![Load::default(); shards.len()],
            util: vec![0.0; shards.len()],
            members: relist(scratch.members, shards.len(), |s| sticky[s]),
            pos: refill(scratch.pos, n, 0),
            free_members: relist(scratch.free_members, shards.len(), |_| 0),
            fpos: refill(scratch.fpos, n, 0),
            displaced: Vec::new(),
            eligible,
            shards,
            tid,
            tload,
        };
        // Sticky targets in bulk: utilization once per shard at the end.
        for i in 0..n {
            match w.current(i) {
                Current::On(s) if w.eligible[s] => {
                    w.assign[i] = s as u32;
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
        w
    }

    /// Where target `i` was before this round.
    pub fn current(&self, i: usize) -> Current<'a> {
        let c = self.current[i];
        if c == NOWHERE {
            Current::Nowhere
        } else if (c as usize) < self.shards.len() {
            Current::On(c as usize)
        } else {
            Current::Gone(self.gone[(u32::MAX - 1 - c) as usize])
        }
    }

    /// The shard target `i` is on now (in this round's plan).
    pub fn on(&self, i: usize) -> Option<usize> {
        let s = self.assign[i];
        (s != NOWHERE).then_some(s as usize)
    }

    pub fn assign_to(&mut self, i: usize, s: usize) {
        self.attach(i, s);
        self.load[s] = self.load[s].add(self.tload[i]);
        self.util[s] = self.shards[s].capacity.utilization(self.load[s]);
    }

    /// [`Self::assign_to`] without the shard's load (already counted).
    fn attach(&mut self, i: usize, s: usize) {
        debug_assert!(self.on(i).is_none());
        self.assign[i] = s as u32;
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
        let Some(s) = self.on(i) else {
            return;
        };
        self.assign[i] = NOWHERE;
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
        if let Some(s) = self.on(i) {
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
            if let Some(s) = self.on(i)
                && self.owner[s].is_none()
            {
                self.owner[s] = Some(i);
            }
        }
        for &i in &list {
            if self.on(i).is_some_and(|s| self.owner[s] == Some(i)) {
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
            if self.on(i).is_some() {
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
        todo.retain(|&i| self.on(i).is_none());
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
        let inv: Vec<Inverse> = self
            .shards
            .iter()
            .map(|s| Inverse::of(&s.capacity))
            .collect();
        let ring = (cands.len() > hrw::CANDIDATES)
            .then(|| hrw::Ring::new(cands.iter().map(|&s| (self.seed[s], s))));
        let mut near = Vec::with_capacity(hrw::CANDIDATES);
        // Decide in size order, touching only the shards' state; then
        // record the choices in target order (sequential memory, where the
        // size order jumps around a million-entry arrays).
        let mut choice: Vec<(u32, u32)> = Vec::with_capacity(order.len());
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
                choice.push((i as u32, s as u32));
            }
        }
        drop(order);
        if choice.len() > self.tid.len() / 16 {
            // Many (a cold start): a table in target order, no sort.
            let mut on = vec![u32::MAX; self.tid.len()];
            for (i, s) in choice {
                on[i as usize] = s;
            }
            for i in todo {
                if on[i] != u32::MAX {
                    self.attach(i, on[i] as usize);
                }
            }
        } else {
            // Few: no table of a million entries for them.
            choice.sort_unstable();
            for (i, s) in choice {
                self.attach(i as usize, s as usize);
            }
        }
    }

    /// The utilization of shard `s` with a target of load `t` added.
    fn util_with(&self, s: usize, t: Load, inv: &[Inverse]) -> f64 {
        inv[s].utilization(self.load[s].add(t))
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
        inv: &[Inverse],
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
        inv: &[Inverse],
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

    /// The plan, and the working arrays for the next round.
    pub fn into_plan(self, budget_exhausted: bool) -> (Plan, Scratch) {
        let cfg = self.cfg;
        // Sized first: a cold plan's million moves without regrowth.
        let n_moves = (0..self.tid.len())
            .filter(|&i| match (self.on(i), self.current(i)) {
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
        for (i, (&id, &load)) in self.tid.iter().zip(self.tload.iter()).enumerate() {
            if self.oversized[i] {
                oversized.insert(id);
                n_oversized += 1;
            } else {
                rest = rest.add(load);
            }
            let Some(s) = self.on(i) else {
                unassigned.push(id);
                continue;
            };
            loads[s] = loads[s].add(load);
            on.push(s as u32);
            let from = match self.current(i) {
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
            self.tid.into_owned()
        } else {
            self.tid
                .iter()
                .zip(&self.assign)
                .filter(|(_, a)| **a != NOWHERE)
                .map(|(&t, _)| t)
                .collect()
        };
        let ids = self.shards.iter().map(|s| s.id.clone()).collect();
        let assignment = Assignment::new(ids, assigned, on);
        let plan = Plan {
            assignment,
            moves,
            oversized,
            unassigned,
            shard_loads,
            desired_shards,
            imbalance,
            budget_exhausted,
        };
        let scratch = Scratch {
            current: self.current,
            assign: self.assign,
            free: self.free,
            reason: self.reason,
            oversized: self.oversized,
            pos: self.pos,
            fpos: self.fpos,
            members: self.members,
            free_members: self.free_members,
        };
        (plan, scratch)
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
