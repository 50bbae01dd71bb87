//! Planner timings: 100,000 Zipf-sized targets (50 jobs) on 100 shards.
//! - cold: no current assignment (everything placed from scratch);
//! - warm: the converged assignment on 100 shards, one empty shard added;
//! - steady: the converged assignment, nothing changed (no moves).
//!
//! `cargo bench -p promshard-coordinator --bench planner -- --quick`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use promshard_coordinator::model::{Capacity, Load, ShardId, TargetId};
use promshard_coordinator::planner::{PlanInput, PlanShard, PlanTarget, PlannerConfig, plan};
use xxhash_rust::xxh3::xxh3_64;

/// The allocator of the `promshard` binary the planner runs in: the plan's
/// assignment map holds one shard-id string per target.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGETS: usize = 100_000;
const SHARDS: usize = 100;

fn targets() -> Vec<PlanTarget> {
    // Zipf(s = 1, offset 10) sizes; mean about 250 series.
    let h: f64 = (0..TARGETS).map(|r| 1.0 / (r as f64 + 10.0)).sum();
    let scale = 250.0 * TARGETS as f64 / h;
    (0..TARGETS)
        .map(|r| {
            let series = (scale / (r as f64 + 10.0)).round().max(1.0) as u64;
            PlanTarget {
                id: xxh3_64(&(r as u64).to_le_bytes()),
                job: format!("job-{}", r % 50),
                load: Load {
                    series,
                    samples_per_second: series as f64 / [15.0, 30.0, 60.0][r % 3],
                },
            }
        })
        .collect()
}

fn setup() -> (Vec<PlanTarget>, Vec<PlanShard>, PlannerConfig) {
    let targets = targets();
    let total: u64 = targets.iter().map(|t| t.load.series).sum();
    // About 50% utilization on 100 shards.
    let per_shard = total / SHARDS as u64 * 2;
    let capacity = Capacity {
        max_series: per_shard,
        max_samples_per_second: per_shard as f64 / 15.0,
    };
    let shards = (0..=SHARDS)
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
    (targets, shards, config)
}

fn converge(
    targets: &[PlanTarget],
    shards: &[PlanShard],
    config: &PlannerConfig,
) -> BTreeMap<TargetId, ShardId> {
    let mut current = BTreeMap::new();
    for _ in 0..30 {
        let p = plan(&PlanInput {
            targets,
            shards,
            current: &current,
            config,
        })
        .expect("valid bench input");
        if p.moves.is_empty() {
            return current;
        }
        current = p.assignment;
    }
    panic!("no convergence in 30 rounds");
}

fn bench(c: &mut Criterion) {
    let (targets, shards, config) = setup();
    let empty = BTreeMap::new();
    let converged = converge(&targets, &shards[..SHARDS], &config);
    let mut g = c.benchmark_group("planner_100k_targets_100_shards");
    g.sample_size(10);
    g.bench_function("cold", |b| {
        b.iter(|| {
            plan(black_box(&PlanInput {
                targets: &targets,
                shards: &shards[..SHARDS],
                current: &empty,
                config: &config,
            }))
        })
    });
    g.bench_function("warm_one_shard_added", |b| {
        b.iter(|| {
            plan(black_box(&PlanInput {
                targets: &targets,
                shards: &shards,
                current: &converged,
                config: &config,
            }))
        })
    });
    g.bench_function("steady_no_change", |b| {
        b.iter(|| {
            plan(black_box(&PlanInput {
                targets: &targets,
                shards: &shards[..SHARDS],
                current: &converged,
                config: &config,
            }))
        })
    });
    g.finish();

    // What the warm pass does, for the record.
    let p = plan(&PlanInput {
        targets: &targets,
        shards: &shards,
        current: &converged,
        config: &config,
    })
    .expect("valid bench input");
    let total: u64 = targets.iter().map(|t| t.load.series).sum();
    println!(
        "warm pass: {} moves, {} of {} series ({:.2}%, budget exhausted: {}), imbalance {:.3}",
        p.moves.len(),
        p.moved_series(),
        total,
        100.0 * p.moved_series() as f64 / total as f64,
        p.budget_exhausted,
        p.imbalance
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
