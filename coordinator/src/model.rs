//! The coordinator's vocabulary, shared by the registry, the planner and
//! the shard hub.

use std::fmt;

/// A target's stable id: [`promshard_promlib::labels::target_id`] of its job
/// name and final labels (the same on every host and every run).
pub type TargetId = u64;

/// A shard's stable identity (a StatefulSet pod name, `shard-3`, ...).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub String);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ShardId {
    fn from(s: &str) -> Self {
        ShardId(s.to_string())
    }
}

/// How heavy a target (or a shard) is.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// Active series.
    pub series: u64,
    /// Samples per second (series per scrape / scrape interval).
    pub samples_per_second: f64,
}

impl Load {
    #[allow(clippy::should_implement_trait)] // by value, no operator needed
    pub fn add(self, other: Load) -> Load {
        Load {
            series: self.series + other.series,
            samples_per_second: self.samples_per_second + other.samples_per_second,
        }
    }
}

/// What one shard can hold.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub max_series: u64,
    pub max_samples_per_second: f64,
}

impl Capacity {
    /// The larger of the two ratios load/capacity (0 for a zero capacity
    /// dimension that carries no load; infinite when it carries some).
    pub fn utilization(&self, load: Load) -> f64 {
        fn ratio(used: f64, max: f64) -> f64 {
            if max > 0.0 {
                used / max
            } else if used > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        }
        ratio(load.series as f64, self.max_series as f64)
            .max(ratio(load.samples_per_second, self.max_samples_per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_the_larger_ratio() {
        let c = Capacity {
            max_series: 1000,
            max_samples_per_second: 100.0,
        };
        let l = Load {
            series: 500,
            samples_per_second: 80.0,
        };
        assert!((c.utilization(l) - 0.8).abs() < 1e-12);
        let zero = Capacity {
            max_series: 0,
            max_samples_per_second: 100.0,
        };
        assert_eq!(zero.utilization(l), f64::INFINITY);
        assert_eq!(zero.utilization(Load::default()), 0.0);
    }
}
