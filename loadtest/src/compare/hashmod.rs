//! Prometheus Operator sharding: every shard runs the same config with two
//! rules appended to each job's `relabel_configs`
//! (`generateAddressShardingRelabelingRules` in prometheus-operator's
//! `pkg/prometheus/promcfg.go`):
//!
//! ```yaml
//! - source_labels: [__address__]
//!   target_label: __tmp_hash
//!   modulus: N
//!   action: hashmod
//! - source_labels: [__tmp_hash]
//!   regex: $(SHARD)
//!   action: keep
//! ```
//!
//! so a target lands on shard `hashmod(__address__, N)`: Prometheus'
//! hashmod (md5, low 8 bytes big-endian, mod N), here through promlib's
//! relabeling, not a copy of it.

use promshard_promlib::relabel::{Action, Regex, RelabelConfig, process};

use super::targets::CompareTarget;
use super::{CompareError, Strategy};

/// The label the operator's rule writes.
pub const TMP_HASH: &str = "__tmp_hash";

/// The operator's hashmod rule for `shards` shards.
pub fn hashmod_rule(shards: u64) -> RelabelConfig {
    RelabelConfig {
        source_labels: vec!["__address__".to_string()],
        target_label: TMP_HASH.to_string(),
        modulus: shards,
        action: Action::HashMod,
        ..RelabelConfig::default()
    }
}

/// Both rules as shard `shard` of `shards` runs them.
pub fn operator_rules(shards: u64, shard: u64) -> Result<Vec<RelabelConfig>, CompareError> {
    let regex = Regex::new(&shard.to_string()).map_err(|e| CompareError::Strategy {
        strategy: "hashmod",
        reason: format!("keep regex for shard {shard}: {e}"),
    })?;
    Ok(vec![
        hashmod_rule(shards),
        RelabelConfig {
            source_labels: vec![TMP_HASH.to_string()],
            regex,
            action: Action::Keep,
            ..RelabelConfig::default()
        },
    ])
}

/// The shard of one target: the value relabeling writes to `__tmp_hash`.
pub fn shard_of(target: &CompareTarget, shards: u64) -> Result<u32, CompareError> {
    let fail = |reason: String| CompareError::Strategy {
        strategy: "hashmod",
        reason: format!("target {}: {reason}", target.address),
    };
    if shards == 0 {
        return Err(fail("0 shards".into()));
    }
    let out = process(&target.relabeled, &[hashmod_rule(shards)])
        .ok_or_else(|| fail("hashmod dropped the target".into()))?;
    let v = out
        .get(TMP_HASH)
        .ok_or_else(|| fail(format!("no {TMP_HASH} after relabeling")))?;
    v.parse::<u32>()
        .map_err(|e| fail(format!("{TMP_HASH}={v:?} is not a shard number: {e}")))
}

/// Stateless: a scale change recomputes every target.
pub struct Hashmod;

impl Strategy for Hashmod {
    fn name(&self) -> &'static str {
        "hashmod"
    }

    fn describe(&self) -> &'static str {
        "Prometheus Operator shards: hashmod(md5) of __address__ mod N"
    }

    fn place(
        &mut self,
        targets: &[CompareTarget],
        shards: usize,
    ) -> Result<Vec<u32>, CompareError> {
        targets.iter().map(|t| shard_of(t, shards as u64)).collect()
    }
}
