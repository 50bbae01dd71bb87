//! Step 4 of the module docs: rebalancing between the balanced shards.

use super::MoveReason;
use super::work::{Inverse, Work, sub};

const EPS: f64 = 1e-9;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Only moves that cost nothing or must happen.
    Necessary,
    /// Sticky targets too, within the budget.
    Optional,
}

/// The utilization range a shard should be in.
#[derive(Clone, Copy, Debug)]
struct Band {
    lo: f64,
    hi: f64,
}

impl Band {
    fn new(mean: f64, threshold: f64, watermark: f64) -> Band {
        let hi = (threshold * mean).min(watermark);
        let lo = ((2.0 - threshold) * mean).min(hi);
        Band { lo, hi }
    }

    fn violation(&self, u: f64) -> f64 {
        (u - self.hi).max(0.0) + (self.lo - u).max(0.0)
    }
}

struct Budget {
    left: u64,
    exhausted: bool,
}

fn mean_util(w: &Work<'_>, shards: &[usize]) -> f64 {
    shards.iter().map(|&s| w.util[s]).sum::<f64>() / shards.len() as f64
}

/// Runs both phases; returns whether the move budget stopped rebalancing.
pub(super) fn rebalance(w: &mut Work<'_>) -> bool {
    let shards = w.balanced_shards();
    if shards.len() < 2 {
        return false;
    }
    let cfg = w.cfg;
    let total_series: u64 = w.tload.iter().map(|l| l.series).sum();
    let mut budget = Budget {
        left: (cfg.move_budget * total_series as f64).floor() as u64,
        exhausted: false,
    };
    run(w, &shards, Phase::Necessary, &mut budget);
    let trigger = Band::new(
        mean_util(w, &shards),
        cfg.imbalance_threshold,
        cfg.high_watermark,
    );
    if shards.iter().any(|&s| trigger.violation(w.util[s]) > EPS) {
        run(w, &shards, Phase::Optional, &mut budget);
    }
    budget.exhausted
}

fn run(w: &mut Work<'_>, shards: &[usize], phase: Phase, budget: &mut Budget) {
    let cfg = w.cfg;
    let goal_thr = (cfg.imbalance_threshold - cfg.hysteresis).max(1.0);
    let goal_hw = cfg.high_watermark - cfg.hysteresis;
    let max_steps = 4 * w.tid.len() + 64;
    let mut donors = Vec::with_capacity(shards.len());
    for _ in 0..max_steps {
        let m = mean_util(w, shards);
        let goal = Band::new(m, goal_thr, goal_hw);
        if shards.iter().all(|&s| goal.violation(w.util[s]) <= EPS) {
            return;
        }
        let Some(&cold) = shards
            .iter()
            .min_by(|&&a, &&b| w.util[a].total_cmp(&w.util[b]).then(a.cmp(&b)))
        else {
            return;
        };
        donors.clear();
        donors.extend(
            shards
                .iter()
                .copied()
                .filter(|&s| s != cold && w.util[s] > m + EPS),
        );
        // Hottest first, then the lower index: picked one at a time, as the
        // first donor usually has a move (a sort per step cost more than
        // the step's scan at 200 shards).
        let hotter = |a: usize, b: usize| w.util[a].total_cmp(&w.util[b]).then(b.cmp(&a));
        let mut refused = false;
        let mut chosen = None;
        while let Some(k) = (0..donors.len()).max_by(|&x, &y| hotter(donors[x], donors[y])) {
            let d = donors.swap_remove(k);
            if let Some(i) = best_move(w, d, cold, m, goal, phase, budget, &mut refused) {
                chosen = Some((i, d));
                break;
            }
        }
        let Some((i, d)) = chosen else {
            budget.exhausted |= refused;
            return;
        };
        let donor_util = w.util[d];
        let sticky = !w.free[i];
        w.unassign(i);
        w.assign_to(i, cold);
        if sticky {
            w.make_free(i);
            w.reason[i] = Some(if donor_util > 1.0 + EPS {
                MoveReason::OverCapacity
            } else if donor_util > goal_hw + EPS {
                MoveReason::OverWatermark
            } else {
                MoveReason::Rebalance
            });
            if donor_util <= 1.0 + EPS {
                budget.left = budget.left.saturating_sub(w.tload[i].series);
            }
        }
    }
}

/// A candidate move's merit: one that overshoots the mean on neither side
/// first (such a move is never undone later), then larger `gain`, then
/// fewer series, then the lower target index (= lower id).
#[derive(Clone, Copy)]
struct Candidate {
    overshoots: bool,
    gain: f64,
    series: u64,
    index: usize,
}

impl Candidate {
    fn better_than(&self, o: &Candidate) -> bool {
        o.overshoots
            .cmp(&self.overshoots)
            .then(self.gain.total_cmp(&o.gain))
            .then(o.series.cmp(&self.series))
            .then(o.index.cmp(&self.index))
            .is_gt()
    }
}

/// The target on `donor` whose move to `cold` most reduces the deviation
/// from the mean `m` (free targets preferred), if any helps.
#[allow(clippy::too_many_arguments)]
fn best_move(
    w: &Work<'_>,
    donor: usize,
    cold: usize,
    m: f64,
    goal: Band,
    phase: Phase,
    budget: &Budget,
    refused: &mut bool,
) -> Option<usize> {
    let inv_d = Inverse::of(&w.shards[donor].capacity);
    let inv_c = Inverse::of(&w.shards[cold].capacity);
    let (ud, uc) = (w.util[donor], w.util[cold]);
    let (ld, lc) = (w.load[donor], w.load[cold]);
    let over_capacity = ud > 1.0 + EPS;
    let before_dev = (ud - m).abs() + (uc - m).abs();
    let before_viol = goal.violation(ud) + goal.violation(uc);
    let mut best_free: Option<Candidate> = None;
    let mut best_sticky: Option<Candidate> = None;
    // Phase 1 off a shard within its capacity: the free targets only.
    let pool = if phase == Phase::Necessary && !over_capacity {
        &w.free_members[donor]
    } else {
        &w.members[donor]
    };
    for mem in pool {
        let (i, free, t) = (mem.i as usize, mem.free, mem.load);
        if !free && !over_capacity && phase == Phase::Necessary {
            continue;
        }
        let ud2 = inv_d.utilization(sub(ld, t));
        let uc2 = inv_c.utilization(lc.add(t));
        if uc2 > 1.0 + EPS || uc2 >= ud - EPS {
            continue;
        }
        let gain = before_dev - (ud2 - m).abs() - (uc2 - m).abs();
        if gain <= EPS || goal.violation(ud2) + goal.violation(uc2) > before_viol + EPS {
            continue;
        }
        if !free && !over_capacity && t.series > budget.left {
            *refused = true;
            continue;
        }
        let c = Candidate {
            overshoots: ud2 < m - EPS || uc2 > m + EPS,
            gain,
            series: t.series,
            index: i,
        };
        let slot = if free {
            &mut best_free
        } else {
            &mut best_sticky
        };
        if slot.is_none_or(|b| c.better_than(&b)) {
            *slot = Some(c);
        }
    }
    best_free.or(best_sticky).map(|c| c.index)
}
