//! Planner timings and memory on Zipf-sized targets (50 jobs).
//!
//! Two sizes: 100,000 targets on 100 shards, and issue 4's goal size,
//! 1,000,000 targets on 200 shards (a full pass <= 1 s and <= 1 KiB of
//! memory per target; an incremental pass, 1% of targets changed, <= 50 ms).
//! - cold: no current assignment (everything placed from scratch);
//! - steady_no_change: the converged assignment, nothing changed;
//! - changed_1pct: the converged assignment, 1% of targets changed (a third
//!   new, a third removed, a third with a different load);
//! - one_shard_added: the converged assignment, one empty shard added.
//!
//!
//! Each case twice: `plan` (the pure function, from a ready [`PlanInput`])
//! and `stateful/...`, a [`Planner`] kept between rounds that is given the
//! round's changes (what a control loop feeding it would pay per round:
//! the deltas applied, then the plan; cold = loading the whole input).
//! `input_build` is what building a [`PlanInput`] costs a caller that has
//! its targets and assignment in other structures (here: cloning the
//! target list and the assignment map; the control loop's real input
//! building also looks each target up in its registry and load model).
//!
//! Before the timings, each case's peak heap growth during one planning
//! pass is printed (a counting allocator around mimalloc), per target.
//!
//! `cargo bench -p promshard-coordinator --bench planner -- --quick`
//! (`-- --quick 1m` for the goal size only).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use promshard_coordinator::model::{Capacity, Load, ShardId, TargetId};
use promshard_coordinator::planner::{
    Plan, PlanInput, PlanShard, PlanTarget, Planner, PlannerConfig, plan,
};
use xxhash_rust::xxh3::xxh3_64;

/// The allocator of the `promshard` binary the planner runs in, counting
/// live bytes and their peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            grow(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grow(new_size as isize - layout.size() as isize);
        }
        p
    }
}

fn grow(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Setup {
    targets: Vec<PlanTarget>,
    shards: Vec<PlanShard>,
    config: PlannerConfig,
}

fn zipf_target(r: usize, scale: f64) -> PlanTarget {
    let series = (scale / (r as f64 + 10.0)).round().max(1.0) as u64;
    PlanTarget {
        id: xxh3_64(&(r as u64).to_le_bytes()),
        job: format!("job-{}", r % 50),
        load: Load {
            series,
            samples_per_second: series as f64 / [15.0, 30.0, 60.0][r % 3],
        },
    }
}

/// The [`zipf_target`] scale of `n` targets with a mean of about 250 series.
fn zipf_scale(n: usize) -> f64 {
    let h: f64 = (0..n).map(|r| 1.0 / (r as f64 + 10.0)).sum();
    250.0 * n as f64 / h
}

/// `n` Zipf(s = 1, offset 10) targets with a mean of about 250 series, and
/// `shards + 1` shards sized for about 50% utilization on `shards`.
fn setup(n: usize, shards: usize) -> Setup {
    let scale = zipf_scale(n);
    let targets: Vec<PlanTarget> = (0..n).map(|r| zipf_target(r, scale)).collect();
    let total: u64 = targets.iter().map(|t| t.load.series).sum();
    let per_shard = total / shards as u64 * 2;
    let capacity = Capacity {
        max_series: per_shard,
        max_samples_per_second: per_shard as f64 / 15.0,
    };
    let shards = (0..=shards)
        .map(|i| PlanShard {
            id: ShardId(format!("shard-{i}")),
            capacity,
            draining: false,
        })
        .collect();
    let config = PlannerConfig {
        shard_capacity: capacity,
        max_shards: 1000,
        ..PlannerConfig::default()
    };
    Setup {
        targets,
        shards,
        config,
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
    .expect("valid bench input")
}

fn converge(
    targets: &[PlanTarget],
    shards: &[PlanShard],
    config: &PlannerConfig,
) -> BTreeMap<TargetId, ShardId> {
    let mut current = BTreeMap::new();
    for _ in 0..30 {
        let p = run(targets, shards, &current, config);
        if p.moves.is_empty() {
            return current;
        }
        current = p.assignment.to_map();
    }
    panic!("no convergence in 30 rounds");
}

/// 1% of the targets changed: every 100th rank replaced by a new target,
/// removed, or given twice the load, in turn.
fn changed_1pct(targets: &[PlanTarget], scale_rank: usize) -> Vec<PlanTarget> {
    let n = targets.len();
    let scale = zipf_scale(n);
    let mut out = Vec::with_capacity(n);
    for (r, t) in targets.iter().enumerate() {
        if r % 100 != 37 {
            out.push(t.clone());
            continue;
        }
        match (r / 100) % 3 {
            0 => out.push(zipf_target(scale_rank + r, scale)),
            1 => {}
            _ => {
                let mut t = t.clone();
                t.load.series *= 2;
                t.load.samples_per_second *= 2.0;
                out.push(t);
            }
        }
    }
    out
}

/// One target change a control loop passes on.
enum Delta {
    Upsert(TargetId, Load),
    Remove(TargetId),
}

/// What changed from `before` to `after` (ids and loads).
fn deltas_of(before: &[PlanTarget], after: &[PlanTarget]) -> Vec<Delta> {
    let old: BTreeMap<TargetId, Load> = before.iter().map(|t| (t.id, t.load)).collect();
    let new: BTreeMap<TargetId, Load> = after.iter().map(|t| (t.id, t.load)).collect();
    let mut out: Vec<Delta> = old
        .keys()
        .filter(|id| !new.contains_key(id))
        .map(|&id| Delta::Remove(id))
        .collect();
    out.extend(
        new.iter()
            .filter(|(id, l)| old.get(id) != Some(l))
            .map(|(&id, &l)| Delta::Upsert(id, l)),
    );
    out
}

/// Peak heap growth of one planning pass (the plan kept until the end, as
/// a caller would), in bytes per target.
fn peak_per_target(name: &str, n: usize, f: impl FnOnce() -> Plan) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let p = f();
    let took = start.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let kept = LIVE.load(Ordering::Relaxed) - base;
    println!(
        "{name}: one pass {:.1} ms, peak heap growth {:.1} MiB = {:.0} B/target, plan kept {:.0} B/target, {} moves",
        took.as_secs_f64() * 1e3,
        peak as f64 / (1 << 20) as f64,
        peak as f64 / n as f64,
        kept as f64 / n as f64,
        p.moves.len()
    );
    drop(p);
}

fn group(c: &mut Criterion, name: &str, n: usize, shards: usize) {
    let s = setup(n, shards);
    let (targets, config) = (&s.targets, &s.config);
    let (some, all) = (&s.shards[..shards], &s.shards[..]);
    let empty = BTreeMap::new();
    let converged = converge(targets, some, config);
    let changed = changed_1pct(targets, n);

    peak_per_target(&format!("{name}/cold"), n, || {
        run(targets, some, &empty, config)
    });
    peak_per_target(&format!("{name}/steady_no_change"), n, || {
        run(targets, some, &converged, config)
    });
    peak_per_target(&format!("{name}/changed_1pct"), n, || {
        run(&changed, some, &converged, config)
    });
    peak_per_target(&format!("{name}/one_shard_added"), n, || {
        run(targets, all, &converged, config)
    });
    // What the scale-out pass does, for the record.
    let p = run(targets, all, &converged, config);
    let total: u64 = targets.iter().map(|t| t.load.series).sum();
    println!(
        "{name}/one_shard_added: {} moves, {} of {} series ({:.2}%, budget exhausted: {}), imbalance {:.3}",
        p.moves.len(),
        p.moved_series(),
        total,
        100.0 * p.moved_series() as f64 / total as f64,
        p.budget_exhausted,
        p.imbalance
    );
    let cold = run(targets, some, &empty, config);
    println!(
        "{name}/cold: imbalance {:.3}, {} moves",
        cold.imbalance,
        cold.moves.len()
    );

    // The stateful planner: converged state, and this round's deltas.
    let converged_planner = Planner::from_input(&PlanInput {
        targets,
        shards: some,
        current: &converged,
        config,
    })
    .expect("valid bench input");
    let deltas = deltas_of(targets, &changed);
    let apply = |p: &mut Planner| {
        for d in &deltas {
            match *d {
                Delta::Upsert(id, load) => p.upsert_target(id, load).expect("valid load"),
                Delta::Remove(id) => {
                    p.remove_target(id);
                    p.set_current(id, None);
                }
            }
        }
    };
    // Same plans as the pure function, case by case.
    {
        let mut p = converged_planner.clone();
        assert_eq!(p.plan(), run(targets, some, &converged, config), "steady");
        apply(&mut p);
        assert_eq!(p.plan(), run(&changed, some, &converged, config), "1%");
        let mut p = converged_planner.clone();
        p.set_shards(all).expect("valid shards");
        assert_eq!(p.plan(), run(targets, all, &converged, config), "+1");
    }
    let state = {
        let base = LIVE.load(Ordering::Relaxed);
        let p = converged_planner.clone();
        let kept = LIVE.load(Ordering::Relaxed) - base;
        drop(p);
        kept
    };
    println!(
        "{name}/stateful: state kept between rounds {:.0} B/target",
        state as f64 / n as f64
    );
    peak_per_target(&format!("{name}/stateful/cold"), n, || {
        Planner::from_input(&PlanInput {
            targets,
            shards: some,
            current: &empty,
            config,
        })
        .expect("valid bench input")
        .plan()
    });
    let mut steady = converged_planner.clone();
    peak_per_target(&format!("{name}/stateful/steady_no_change"), n, || {
        steady.plan()
    });
    let mut p = converged_planner.clone();
    peak_per_target(&format!("{name}/stateful/changed_1pct"), n, || {
        apply(&mut p);
        p.plan()
    });
    drop(p);

    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.bench_function("input_build", |b| {
        b.iter(|| (black_box(targets).clone(), black_box(&converged).clone()))
    });
    g.bench_function("stateful/cold", |b| {
        b.iter(|| {
            Planner::from_input(&PlanInput {
                targets: black_box(targets),
                shards: some,
                current: &empty,
                config,
            })
            .expect("valid bench input")
            .plan()
        })
    });
    g.bench_function("stateful/steady_no_change", |b| b.iter(|| steady.plan()));
    // One planner kept across iterations, as a control loop keeps it
    // (its working arrays reused): each iteration undoes the last one's
    // changes untimed, then times a round: the changes applied, the plan,
    // and its moves taken as done (the next round's current assignment).
    let undo = deltas_of(&changed, targets);
    let restore = |p: &mut Planner| {
        for d in &undo {
            match *d {
                Delta::Upsert(id, load) => {
                    p.upsert_target(id, load).expect("valid load");
                    p.set_current(id, converged.get(&id));
                }
                Delta::Remove(id) => p.remove_target(id),
            }
        }
        p.len(); // merges the changes, untimed
    };
    let unmove = |p: &mut Planner, plan: &Plan| {
        for m in &plan.moves {
            p.set_current(m.target, converged.get(&m.target));
        }
    };
    let mut kept = converged_planner.clone();
    kept.plan();
    g.bench_function("stateful/changed_1pct", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                restore(&mut kept);
                let start = Instant::now();
                apply(&mut kept);
                let plan = kept.plan();
                kept.apply_moves(&plan);
                took += start.elapsed();
                unmove(&mut kept, &plan);
                drop(black_box(plan));
            }
            took
        })
    });
    restore(&mut kept);
    g.bench_function("stateful/one_shard_added", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                kept.set_shards(some).expect("valid shards");
                let start = Instant::now();
                kept.set_shards(all).expect("valid shards");
                let plan = kept.plan();
                kept.apply_moves(&plan);
                took += start.elapsed();
                unmove(&mut kept, &plan);
                drop(black_box(plan));
            }
            took
        })
    });
    // Still the converged state: the rounds were undone.
    kept.set_shards(some).expect("valid shards");
    assert_eq!(kept.plan(), run(targets, some, &converged, config));
    g.bench_function("cold", |b| {
        b.iter(|| run(black_box(targets), some, &empty, config))
    });
    g.bench_function("steady_no_change", |b| {
        b.iter(|| run(black_box(targets), some, &converged, config))
    });
    g.bench_function("changed_1pct", |b| {
        b.iter(|| run(black_box(&changed), some, &converged, config))
    });
    g.bench_function("one_shard_added", |b| {
        b.iter(|| run(black_box(targets), all, &converged, config))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    // A filter argument (`-- 1m`) skips the other group's setup too.
    // (Not a flag's number, as in `--profile-time 10`.)
    let filter = std::env::args()
        .skip(1)
        .rfind(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    for (name, n, shards) in [
        ("planner_100k_targets_100_shards", 100_000, 100),
        ("planner_1m_targets_200_shards", 1_000_000, 200),
    ] {
        if filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()) || f.contains(name))
        {
            group(c, name, n, shards);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
