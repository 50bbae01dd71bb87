//! The planner's knobs and their validation.

use crate::model::Capacity;

use super::PlanError;

/// How the planner trades balance against movement.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannerConfig {
    /// The capacity of a typical (newly started) shard: the unit of
    /// `desired_shards`, and the yardstick that makes shards of different
    /// sizes comparable for hashing weights.
    pub shard_capacity: Capacity,
    /// A shard above this utilization sheds targets (0.9).
    pub high_watermark: f64,
    /// Rebalancing starts when max/mean utilization exceeds this (1.10), or
    /// when a shard falls under `2 - threshold` of the mean (an empty new
    /// shard).
    pub imbalance_threshold: f64,
    /// Once triggered, rebalancing aims this far inside the trigger band
    /// (imbalance under `threshold - hysteresis`, the hot shard under
    /// `high_watermark - hysteresis`), so that small load drift afterwards
    /// does not trigger again: no ping-pong.
    pub hysteresis: f64,
    /// At most this fraction of all series moved per round by rebalancing
    /// (0.1). Moves that are not optional (new targets, gone or draining
    /// shards, oversized targets, shards over their capacity) do not count.
    pub move_budget: f64,
    /// The utilization `desired_shards` is sized for (0.7).
    pub target_utilization: f64,
    pub min_shards: usize,
    pub max_shards: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            shard_capacity: Capacity {
                max_series: 1_000_000,
                max_samples_per_second: 100_000.0,
            },
            high_watermark: 0.9,
            imbalance_threshold: 1.10,
            hysteresis: 0.05,
            move_budget: 0.1,
            target_utilization: 0.7,
            min_shards: 1,
            max_shards: 64,
        }
    }
}

impl PlannerConfig {
    /// Checks every field's range; the error names the field and value.
    pub fn validate(&self) -> Result<(), PlanError> {
        fn check(
            field: &'static str,
            value: f64,
            ok: bool,
            expected: &'static str,
        ) -> Result<(), PlanError> {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(PlanError::Config {
                    field,
                    value: value.to_string(),
                    expected,
                })
            }
        }
        let c = self;
        let sps = c.shard_capacity.max_samples_per_second;
        check(
            "shard_capacity.max_samples_per_second",
            sps,
            sps >= 0.0,
            "a finite number >= 0",
        )?;
        let hw = c.high_watermark;
        check("high_watermark", hw, hw > 0.0 && hw <= 1.0, "in (0, 1]")?;
        let thr = c.imbalance_threshold;
        check(
            "imbalance_threshold",
            thr,
            (1.0..2.0).contains(&thr),
            "in [1, 2)",
        )?;
        let h = c.hysteresis;
        check(
            "hysteresis",
            h,
            (0.0..hw).contains(&h),
            "in [0, high_watermark)",
        )?;
        let b = c.move_budget;
        check("move_budget", b, (0.0..=1.0).contains(&b), "in [0, 1]")?;
        let tu = c.target_utilization;
        check("target_utilization", tu, tu > 0.0 && tu <= 1.0, "in (0, 1]")?;
        if c.max_shards == 0 || c.min_shards > c.max_shards {
            return Err(PlanError::Config {
                field: "min_shards/max_shards",
                value: format!("{}/{}", c.min_shards, c.max_shards),
                expected: "1 <= max_shards and min_shards <= max_shards",
            });
        }
        Ok(())
    }
}
