//! The OpenTelemetry Target Allocator's strategies, as
//! opentelemetry-operator's `cmd/otel-allocator/internal/allocation/`
//! (`allocator.go`, `consistent_hashing.go`, `least_weighted.go`; the same
//! in release v0.158.0 and on main) runs them.
//!
//! Collectors are the collector StatefulSet's pods, `otel-collector-<i>`;
//! scaling in removes the highest ordinal. A target is a `target.Item` with
//! `JobName` and `TargetURL` = the discovered `__address__`.
//!
//! On a collector change (`SetCollectors` -> `handleCollectors`) the
//! allocator drops removed collectors (their targets lose their collector),
//! adds new ones with zero targets, rebuilds the strategy's state, and runs
//! every target through `GetCollectorForTarget` again, in Go map order
//! (random; here a seeded shuffle).

use super::ring::{Ring, RingConfig, RingVersion, xxhash64};
use super::targets::{CompareTarget, SplitMix64};
use super::{CompareError, Rescale, Strategy};

/// The collector name of ordinal `i`.
pub fn collector_name(i: usize) -> String {
    format!("otel-collector-{i}")
}

fn collector_names(n: usize) -> Vec<String> {
    (0..n).map(collector_name).collect()
}

/// `consistent-hashing`: a new ring per collector set
/// (`consistent.New(members, config)`), a target goes to
/// `LocateKey(TargetURL)`. It counts partitions, blind to target sizes.
pub struct ConsistentHashing {
    pub version: RingVersion,
}

impl ConsistentHashing {
    fn ring(&self, shards: usize) -> Result<Ring, CompareError> {
        Ring::new(
            &collector_names(shards),
            RingConfig::otel_allocator(self.version),
            xxhash64,
        )
        .map_err(|e| CompareError::Strategy {
            strategy: self.name(),
            reason: e.to_string(),
        })
    }
}

impl Strategy for ConsistentHashing {
    fn name(&self) -> &'static str {
        match self.version {
            RingVersion::V0_10 => "otel-consistent-hashing",
            RingVersion::V1_0 => "otel-consistent-hashing(ring v1)",
        }
    }

    fn describe(&self) -> &'static str {
        match self.version {
            RingVersion::V0_10 => {
                "OTel allocator consistent-hashing, buraksezer/consistent v0.10.0 (operator <= v0.158.0)"
            }
            RingVersion::V1_0 => {
                "OTel allocator consistent-hashing, buraksezer/consistent v1.0.0 (operator main)"
            }
        }
    }

    fn place(
        &mut self,
        targets: &[CompareTarget],
        shards: usize,
    ) -> Result<Vec<u32>, CompareError> {
        let ring = self.ring(shards)?;
        targets
            .iter()
            .map(|t| {
                ring.locate(t.address.as_bytes())
                    .map(|m| m as u32)
                    .ok_or_else(|| CompareError::Strategy {
                        strategy: self.name(),
                        reason: format!("no collector for {}", t.address),
                    })
            })
            .collect()
    }
}

/// `least-weighted`: a target without a (still existing) collector goes to
/// the collector with the fewest targets; ties: fewer targets of the same
/// job, then the smaller name (string order). A target never leaves a
/// collector that still exists: a new collector stays empty until new
/// targets arrive; a removed collector's targets go, one by one in map
/// order, to the least loaded collectors.
pub struct LeastWeighted {
    /// Seeds the Go map iteration order.
    pub seed: u64,
}

struct Collectors {
    /// Index: collector ordinal.
    names: Vec<String>,
    num_targets: Vec<u64>,
    /// [collector][job index]
    per_job: Vec<Vec<u64>>,
    /// False once removed.
    alive: Vec<bool>,
}

impl Collectors {
    fn new(n: usize, jobs: usize) -> Self {
        Collectors {
            names: collector_names(n),
            num_targets: vec![0; n],
            per_job: vec![vec![0; jobs]; n],
            alive: vec![true; n],
        }
    }

    /// `GetCollectorForTarget` for a target without a collector.
    fn least(&self, job: usize) -> Option<usize> {
        (0..self.names.len())
            .filter(|&c| self.alive[c])
            .min_by_key(|&c| (self.num_targets[c], self.per_job[c][job], &self.names[c]))
    }

    fn assign(&mut self, c: usize, job: usize) {
        self.num_targets[c] += 1;
        self.per_job[c][job] += 1;
    }
}

impl LeastWeighted {
    fn job_indexes(targets: &[CompareTarget]) -> (Vec<usize>, usize) {
        let mut names: Vec<&str> = targets.iter().map(|t| t.job.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let idx = targets
            .iter()
            .map(|t| names.binary_search(&t.job.as_str()).unwrap_or(0))
            .collect();
        (idx, names.len())
    }

    /// Go's map iteration order over the targets, seeded.
    fn map_order(&self, n: usize, salt: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix64::new(self.seed ^ salt).shuffle(&mut order);
        order
    }

    fn no_collector(&self) -> CompareError {
        CompareError::Strategy {
            strategy: self.name(),
            reason: "no collector".into(),
        }
    }
}

impl Strategy for LeastWeighted {
    fn name(&self) -> &'static str {
        "otel-least-weighted"
    }

    fn describe(&self) -> &'static str {
        "OTel allocator least-weighted: new target -> collector with fewest targets; sticky"
    }

    fn place(
        &mut self,
        targets: &[CompareTarget],
        shards: usize,
    ) -> Result<Vec<u32>, CompareError> {
        let (jobs, njobs) = Self::job_indexes(targets);
        let mut cols = Collectors::new(shards, njobs);
        let mut out = vec![0u32; targets.len()];
        for i in self.map_order(targets.len(), 0x5e7_7a26) {
            let c = cols.least(jobs[i]).ok_or_else(|| self.no_collector())?;
            cols.assign(c, jobs[i]);
            out[i] = c as u32;
        }
        Ok(out)
    }

    fn rescale(
        &mut self,
        targets: &[CompareTarget],
        current: &[u32],
        from: usize,
        to: usize,
    ) -> Result<Rescale, CompareError> {
        let (jobs, njobs) = Self::job_indexes(targets);
        let mut cols = Collectors::new(from.max(to), njobs);
        for (i, &c) in current.iter().enumerate() {
            cols.assign(c as usize, jobs[i]);
        }
        // removeCollector: the removed ones' targets lose their collector.
        for c in to..from {
            cols.alive[c] = false;
        }
        let mut out = current.to_vec();
        for i in self.map_order(targets.len(), 0x5e7_c011 ^ to as u64) {
            if (out[i] as usize) < to {
                continue; // still on an existing collector: kept
            }
            let c = cols.least(jobs[i]).ok_or_else(|| self.no_collector())?;
            cols.assign(c, jobs[i]);
            out[i] = c as u32;
        }
        Ok(Rescale::one_shot(targets, current, out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::targets::{TargetSetConfig, build};
    use super::*;

    fn set(targets: usize, jobs: usize) -> Vec<CompareTarget> {
        build(&TargetSetConfig {
            targets,
            jobs,
            zipf: 1.0,
            series: 50,
            seed: 3,
        })
    }

    #[test]
    fn least_weighted_ties_break_on_name_in_string_order() {
        // 12 empty collectors, four targets of one job: each goes to the
        // least loaded, ties by name as Go compares strings:
        // otel-collector-0, -1, -10, -11 (before -2).
        let targets = set(4, 1);
        let out = LeastWeighted { seed: 9 }.place(&targets, 12).unwrap();
        let mut used = out.clone();
        used.sort_unstable();
        assert_eq!(used, vec![0, 1, 10, 11]);
    }

    #[test]
    fn least_weighted_prefers_fewer_targets_of_the_same_job() {
        let cols = {
            let mut c = Collectors::new(2, 2);
            c.assign(0, 0); // collector 0: one target of job 0
            c.assign(1, 1); // collector 1: one target of job 1
            c
        };
        // Equal totals: a job-1 target goes to collector 0, a job-0 one to 1.
        assert_eq!(cols.least(1), Some(0));
        assert_eq!(cols.least(0), Some(1));
    }

    #[test]
    fn least_weighted_keeps_targets_and_refills_only_orphans() {
        let targets = set(997, 4);
        let mut s = LeastWeighted { seed: 5 };
        let at5 = s.place(&targets, 5).unwrap();
        let counts = |a: &[u32], n: usize| {
            let mut c = vec![0u64; n];
            for &x in a {
                c[x as usize] += 1;
            }
            c
        };
        let c5 = counts(&at5, 5);
        assert!(
            c5.iter().max().unwrap() - c5.iter().min().unwrap() <= 1,
            "{c5:?}"
        );
        // Scale-out: nothing moves, the new collector stays empty.
        let out = s.rescale(&targets, &at5, 5, 6).unwrap();
        assert_eq!(out.assignment, at5);
        assert_eq!((out.moved_series, out.moved_targets), (0, 0));
        // Scale-in: exactly collector 4's targets move, to the others evenly.
        let inn = s.rescale(&targets, &at5, 5, 4).unwrap();
        assert_eq!(inn.moved_targets, c5[4]);
        for (a, b) in at5.iter().zip(&inn.assignment) {
            if *a < 4 {
                assert_eq!(a, b);
            }
        }
        let c4 = counts(&inn.assignment, 4);
        assert!(
            c4.iter().max().unwrap() - c4.iter().min().unwrap() <= 1,
            "{c4:?}"
        );
    }
}
