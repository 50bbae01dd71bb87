//! `promshard loadtest compare`: one target set placed by promshard's
//! planner and by faithful re-implementations of its peers' sharding, with
//! the balance at N shards and the series moved going to N+1 and N-1.
//!
//! - [`promshard`]: the coordinator's planner, rounds until converged.
//! - [`hashmod`]: Prometheus Operator shards (hashmod of `__address__`).
//! - [`vmagent`]: vmagent 1.79 cluster mode (xxhash64 of the labels).
//! - [`otel`]: the OpenTelemetry Target Allocator's `consistent-hashing`
//!   (on [`ring`], buraksezer/consistent) and `least-weighted`.
//!
//! Everything is deterministic for a seed: no clock, no OS randomness, no
//! hash-map iteration order.

pub mod hashmod;
pub mod otel;
pub mod promshard;
pub mod ring;
pub mod table;
pub mod targets;
pub mod vmagent;

use clap::Args;
use promshard_coordinator::planner::PlanError;

use self::ring::RingVersion;
use self::targets::{CompareTarget, TargetSetConfig};

/// Why a comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("compare: {field} = {value}: {expected}")]
    Config {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("compare: promshard planner: {0}")]
    Planner(#[from] PlanError),
    #[error("compare: strategy {strategy}: {reason}")]
    Strategy {
        strategy: &'static str,
        reason: String,
    },
}

/// The result of changing the shard count.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescale {
    /// Shard of every target (target order) after the change.
    pub assignment: Vec<u32>,
    /// Series on targets that changed shard (summed over rounds).
    pub moved_series: u64,
    pub moved_targets: u64,
    /// Planning rounds that moved something (1 for one-shot strategies).
    pub rounds: usize,
    /// False when rounds stopped at a bound with moves still coming.
    pub converged: bool,
}

impl Rescale {
    /// A one-shot change from `current` to `assignment`: one round,
    /// converged, the moves counted by [`diff_moves`].
    pub fn one_shot(targets: &[CompareTarget], current: &[u32], assignment: Vec<u32>) -> Self {
        let (moved_series, moved_targets) = diff_moves(targets, current, &assignment);
        Rescale {
            assignment,
            moved_series,
            moved_targets,
            rounds: 1,
            converged: true,
        }
    }
}

/// A way of placing targets on shards `0..shards`.
pub trait Strategy {
    fn name(&self) -> &'static str;
    fn describe(&self) -> &'static str;
    /// The placement at `shards` shards from scratch (index = target index).
    fn place(&mut self, targets: &[CompareTarget], shards: usize)
    -> Result<Vec<u32>, CompareError>;
    /// Planning rounds the last [`Strategy::place`] took.
    fn initial_rounds(&self) -> usize {
        1
    }
    /// From `current` on `from` shards to `to` shards (scale-in removes the
    /// highest ones). The default suits stateless strategies: place anew and
    /// count the targets whose shard changed.
    fn rescale(
        &mut self,
        targets: &[CompareTarget],
        current: &[u32],
        _from: usize,
        to: usize,
    ) -> Result<Rescale, CompareError> {
        let assignment = self.place(targets, to)?;
        Ok(Rescale::one_shot(targets, current, assignment))
    }
}

/// (series, targets) on targets whose shard differs between `a` and `b`.
pub fn diff_moves(targets: &[CompareTarget], a: &[u32], b: &[u32]) -> (u64, u64) {
    targets
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x != y)
        .fold((0, 0), |(s, n), (t, _)| (s + t.series, n + 1))
}

/// How even a placement is.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Balance {
    pub shards: usize,
    pub max_series: u64,
    pub mean_series: f64,
    pub max_mean_series: f64,
    pub min_series: u64,
    pub max_targets: u64,
    pub mean_targets: f64,
    pub max_mean_targets: f64,
}

impl Balance {
    /// Over shards `0..shards` (an empty shard counts).
    pub fn of(targets: &[CompareTarget], assignment: &[u32], shards: usize) -> Balance {
        let mut series = vec![0u64; shards];
        let mut count = vec![0u64; shards];
        for (t, &s) in targets.iter().zip(assignment) {
            if let Some(x) = series.get_mut(s as usize) {
                *x += t.series;
                count[s as usize] += 1;
            }
        }
        let n = shards.max(1) as f64;
        let mean_series = series.iter().sum::<u64>() as f64 / n;
        let mean_targets = count.iter().sum::<u64>() as f64 / n;
        let max_series = series.iter().copied().max().unwrap_or(0);
        let max_targets = count.iter().copied().max().unwrap_or(0);
        let ratio = |max: u64, mean: f64| if mean > 0.0 { max as f64 / mean } else { 1.0 };
        Balance {
            shards,
            max_series,
            mean_series,
            max_mean_series: ratio(max_series, mean_series),
            min_series: series.iter().copied().min().unwrap_or(0),
            max_targets,
            mean_targets,
            max_mean_targets: ratio(max_targets, mean_targets),
        }
    }
}

/// One shard-count change.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub from_shards: usize,
    pub to_shards: usize,
    pub moved_series: u64,
    /// moved_series / all series.
    pub moved_series_fraction: f64,
    pub moved_targets: u64,
    pub moved_targets_fraction: f64,
    /// The least a placement that stays even must move: 1/(N+1) going out
    /// (the new shard's share), 1/N going in (the removed shard's share).
    pub ideal_fraction: f64,
    /// moved_series_fraction / ideal_fraction.
    pub moved_over_ideal: f64,
    pub rounds: usize,
    pub converged: bool,
    /// The balance after the change.
    pub after: Balance,
}

/// One strategy's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StrategyReport {
    pub name: String,
    pub description: String,
    pub balance: Balance,
    /// Rounds the initial placement took (promshard; 1 otherwise).
    pub initial_rounds: usize,
    pub scale_out: Change,
    pub scale_in: Option<Change>,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CompareReport {
    pub config: CompareConfig,
    pub total_series: u64,
    pub largest_target_series: u64,
    pub strategies: Vec<StrategyReport>,
}

impl CompareReport {
    /// The report of the strategy named `name`.
    pub fn strategy(&self, name: &str) -> Option<&StrategyReport> {
        self.strategies.iter().find(|s| s.name == name)
    }
}

/// What to compare.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CompareConfig {
    pub targets: TargetSetConfig,
    /// N.
    pub shards: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            targets: TargetSetConfig {
                targets: 10_000,
                jobs: 5,
                zipf: 1.0,
                series: 1000,
                seed: 1,
            },
            shards: 10,
        }
    }
}

impl CompareConfig {
    fn validate(&self) -> Result<(), CompareError> {
        let t = &self.targets;
        let bad = |field, value: String, expected| {
            Err(CompareError::Config {
                field,
                value,
                expected,
            })
        };
        if t.targets == 0 {
            return bad("targets", "0".into(), "expected at least 1");
        }
        if t.jobs == 0 {
            return bad("jobs", "0".into(), "expected at least 1");
        }
        if t.series == 0 {
            return bad("series", "0".into(), "expected at least 1");
        }
        if !(t.zipf.is_finite() && t.zipf >= 0.0) {
            return bad("zipf", t.zipf.to_string(), "expected a finite number >= 0");
        }
        if self.shards == 0 || self.shards > 10_000 {
            return bad("shards", self.shards.to_string(), "expected 1..=10000");
        }
        Ok(())
    }
}

/// Every strategy compared, promshard first.
pub fn strategies(targets: &[CompareTarget], cfg: &CompareConfig) -> Vec<Box<dyn Strategy>> {
    vec![
        Box::new(promshard::Promshard::sized_for(targets, cfg.shards)),
        Box::new(hashmod::Hashmod),
        Box::new(vmagent::Vmagent),
        Box::new(otel::ConsistentHashing {
            version: RingVersion::V0_10,
        }),
        Box::new(otel::ConsistentHashing {
            version: RingVersion::V1_0,
        }),
        Box::new(otel::LeastWeighted {
            seed: cfg.targets.seed,
        }),
    ]
}

/// Builds the set and runs every strategy on it.
pub fn run(cfg: &CompareConfig) -> Result<CompareReport, CompareError> {
    cfg.validate()?;
    let targets = targets::build(&cfg.targets);
    let mut reports = Vec::new();
    for mut s in strategies(&targets, cfg) {
        reports.push(run_strategy(s.as_mut(), &targets, cfg.shards)?);
    }
    Ok(CompareReport {
        config: cfg.clone(),
        total_series: targets.iter().map(|t| t.series).sum(),
        largest_target_series: targets.iter().map(|t| t.series).max().unwrap_or(0),
        strategies: reports,
    })
}

/// One strategy: place at `n`, then from that placement to `n+1` and to
/// `n-1` (when `n > 1`).
pub fn run_strategy(
    s: &mut dyn Strategy,
    targets: &[CompareTarget],
    n: usize,
) -> Result<StrategyReport, CompareError> {
    let at_n = s.place(targets, n)?;
    let initial_rounds = s.initial_rounds();
    let total: u64 = targets.iter().map(|t| t.series).sum();
    let change = |s: &mut dyn Strategy, to: usize| -> Result<Change, CompareError> {
        let r = s.rescale(targets, &at_n, n, to)?;
        let ideal = if to > n {
            1.0 / to as f64
        } else {
            1.0 / n as f64
        };
        let frac = r.moved_series as f64 / total.max(1) as f64;
        Ok(Change {
            from_shards: n,
            to_shards: to,
            moved_series: r.moved_series,
            moved_series_fraction: frac,
            moved_targets: r.moved_targets,
            moved_targets_fraction: r.moved_targets as f64 / targets.len().max(1) as f64,
            ideal_fraction: ideal,
            moved_over_ideal: frac / ideal,
            rounds: r.rounds,
            converged: r.converged,
            after: Balance::of(targets, &r.assignment, to),
        })
    };
    let scale_out = change(s, n + 1)?;
    let scale_in = if n > 1 { Some(change(s, n - 1)?) } else { None };
    Ok(StrategyReport {
        name: s.name().to_string(),
        description: s.describe().to_string(),
        balance: Balance::of(targets, &at_n, n),
        initial_rounds,
        scale_out,
        scale_in,
    })
}

/// `promshard loadtest compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Number of targets.
    #[arg(long, default_value_t = 10_000)]
    pub targets: usize,
    /// Number of jobs.
    #[arg(long, default_value_t = 5)]
    pub jobs: usize,
    /// Zipf exponent of the target sizes (0 = all the same).
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Mean series per target.
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// N: the shard count compared (then N+1 and N-1).
    #[arg(long, default_value_t = 10)]
    pub shards: usize,
    /// Seed of the target set (and of Go's map order where it matters).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the comparison and prints it to stdout.
pub fn run_cli(a: &CompareArgs) -> anyhow::Result<()> {
    let cfg = CompareConfig {
        targets: TargetSetConfig {
            targets: a.targets,
            jobs: a.jobs,
            zipf: a.zipf,
            series: a.series,
            seed: a.seed,
        },
        shards: a.shards,
    };
    let report = run(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table::render(&report));
    }
    Ok(())
}
