//! [`LoadModel`]: how heavy each target is.
//!
//! A target's load ([`Load`]: active series, samples per second) comes,
//! in this order, from:
//! 1. [`LoadSource::Reported`]: the last valid report of the shard that
//!    scrapes it (series; samples per scrape / scrape interval);
//! 2. [`LoadSource::JobMedian`]: the median of its job's reported targets
//!    (each dimension on its own);
//! 3. [`LoadSource::Explored`]: an explore scrape of the target itself, or
//!    else the median of its job's explored targets;
//! 4. [`LoadSource::Default`]: the configured default of its job, or the
//!    global default.
//!
//! Reports are validated: a report whose interval is not a finite positive
//! number of seconds up to [`ReportLimits::max_interval_seconds`], or whose
//! series or samples per scrape exceed their bounds, is rejected and
//! counted by reason. Only reports of healthy scrapes (`UP`) set a load: a
//! failed scrape says nothing about the target's size, so the previous
//! load (or the estimate) stays. Reports for targets the model does not
//! track are counted and ignored.
//!
//! Time is passed in (`now`): the model holds no clock.
//!
//! Job medians are computed lazily: a report only marks its job; the first
//! read after a change ([`LoadModel::load_of`] and friends) recomputes the
//! marked jobs once, each in time linear in its size. So a round of shard
//! reports costs O(reports), and a planning pass over all targets O(targets)
//! plus one median per changed job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use promshard_proto::v1::{TargetHealth, TargetReport};

use crate::model::{Load, TargetId};

use super::explore::{ExploreError, ExploreOutcome};
use super::targets::{Changes, Registry};

/// Where a target's load figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSource {
    Reported,
    JobMedian,
    Explored,
    Default,
}

impl LoadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Reported => "reported",
            LoadSource::JobMedian => "job_median",
            LoadSource::Explored => "explored",
            LoadSource::Default => "default",
        }
    }
}

/// Loads assumed when nothing better is known.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadDefaults {
    pub global: Load,
    pub per_job: HashMap<String, Load>,
}

impl Default for LoadDefaults {
    /// 1000 series scraped every 60 s (a typical exporter).
    fn default() -> Self {
        LoadDefaults {
            global: Load {
                series: 1000,
                samples_per_second: 1000.0 / 60.0,
            },
            per_job: HashMap::new(),
        }
    }
}

/// Bounds beyond which a report is absurd.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReportLimits {
    pub max_series: u64,
    pub max_samples_per_scrape: u64,
    /// Largest accepted scrape interval, in seconds.
    pub max_interval_seconds: f64,
}

impl Default for ReportLimits {
    /// 100 million series or samples per scrape; a one-day interval.
    fn default() -> Self {
        ReportLimits {
            max_series: 100_000_000,
            max_samples_per_scrape: 100_000_000,
            max_interval_seconds: 86_400.0,
        }
    }
}

/// Why a report was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// `interval_seconds` negative, zero, NaN, infinite or above the bound.
    BadInterval,
    TooManySeries,
    TooManySamples,
    /// Not a target of the registry (e.g. removed a moment ago).
    UnknownTarget,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadInterval => "bad_interval",
            RejectReason::TooManySeries => "too_many_series",
            RejectReason::TooManySamples => "too_many_samples",
            RejectReason::UnknownTarget => "unknown_target",
        }
    }
}

/// What [`LoadModel::record`] did with one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The target's load is now the report's.
    Taken,
    /// A scrape that was not healthy: load unchanged.
    NotHealthy,
    Rejected(RejectReason),
}

/// A load and when it was learned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    pub load: Load,
    pub at: SystemTime,
}

/// The last explore of a target.
#[derive(Clone, Debug, PartialEq)]
pub enum ExploreRecord {
    Succeeded(Observed),
    Failed { error: String, at: SystemTime },
}

#[derive(Debug)]
struct TargetState {
    job: String,
    reported: Option<Observed>,
    explored: Option<ExploreRecord>,
}

/// Medians of one job.
#[derive(Clone, Copy, Debug, Default)]
struct JobMedians {
    reported: Option<Load>,
    explored: Option<Load>,
}

/// Job medians and the jobs whose medians are out of date.
#[derive(Debug, Default)]
struct MedianCache {
    by_job: HashMap<String, JobMedians>,
    dirty: HashSet<String>,
}

/// The load model. See the module docs.
#[derive(Debug)]
pub struct LoadModel {
    defaults: LoadDefaults,
    limits: ReportLimits,
    targets: HashMap<TargetId, TargetState>,
    /// Tracked ids per job (so a job's medians cost its size, not all).
    members: HashMap<String, HashSet<TargetId>>,
    medians: Mutex<MedianCache>,
    rejected: BTreeMap<RejectReason, u64>,
    not_healthy: u64,
    explore_failures: u64,
}

/// The median of a non-empty set, each dimension on its own (the mean of
/// the two middle values for an even count; series rounded down). `None`
/// for an empty set.
pub fn median(loads: &[Load]) -> Option<Load> {
    if loads.is_empty() {
        return None;
    }
    let mut series: Vec<u64> = loads.iter().map(|l| l.series).collect();
    let mut sps: Vec<f64> = loads.iter().map(|l| l.samples_per_second).collect();
    let n = series.len();
    let mid = n / 2;
    let (_, &mut hi_s, _) = series.select_nth_unstable(mid);
    let (_, &mut hi_r, _) = sps.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        return Some(Load {
            series: hi_s,
            samples_per_second: hi_r,
        });
    }
    // The lower middle is the largest of the lower half.
    let lo_s = series[..mid].iter().copied().max().unwrap_or(hi_s);
    let lo_r = sps[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Load {
        // No overflow: the mean of two u64 without adding them.
        series: lo_s / 2 + hi_s / 2 + (lo_s % 2 + hi_s % 2) / 2,
        samples_per_second: lo_r + (hi_r - lo_r) / 2.0,
    })
}

impl Default for LoadModel {
    fn default() -> Self {
        LoadModel::new(LoadDefaults::default(), ReportLimits::default())
    }
}

impl LoadModel {
    pub fn new(defaults: LoadDefaults, limits: ReportLimits) -> Self {
        LoadModel {
            defaults,
            limits,
            targets: HashMap::new(),
            members: HashMap::new(),
            medians: Mutex::new(MedianCache::default()),
            rejected: BTreeMap::new(),
            not_healthy: 0,
            explore_failures: 0,
        }
    }

    /// Replaces the defaults (e.g. on a reload).
    pub fn set_defaults(&mut self, defaults: LoadDefaults) {
        self.defaults = defaults;
    }

    /// Starts tracking target `id` of `job` (no-op if tracked).
    pub fn track(&mut self, id: TargetId, job: &str) {
        if self.targets.contains_key(&id) {
            return;
        }
        self.targets.insert(
            id,
            TargetState {
                job: job.to_string(),
                reported: None,
                explored: None,
            },
        );
        self.members.entry(job.to_string()).or_default().insert(id);
    }

    /// Removes `id`; returns its job.
    fn untrack(&mut self, id: TargetId) -> Option<String> {
        let t = self.targets.remove(&id)?;
        if let Some(m) = self.members.get_mut(&t.job) {
            m.remove(&id);
            if m.is_empty() {
                self.members.remove(&t.job);
            }
        }
        Some(t.job)
    }

    /// Forgets target `id` and everything learned about it.
    pub fn forget(&mut self, id: TargetId) {
        if let Some(job) = self.untrack(id) {
            self.mark_dirty(std::iter::once(job));
        }
    }

    /// Follows a registry change: tracks the added targets, forgets the
    /// removed ones.
    pub fn sync(&mut self, registry: &Registry, changes: &Changes) {
        let mut touched = HashSet::new();
        for &id in &changes.removed {
            if let Some(job) = self.untrack(id) {
                touched.insert(job);
            }
        }
        for &id in &changes.added {
            if let Some(t) = registry.get(id) {
                self.track(id, &t.job);
            }
        }
        self.mark_dirty(touched);
    }

    /// Number of tracked targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Checks a report against the limits; the load it gives.
    pub fn validate(&self, r: &TargetReport) -> Result<Load, RejectReason> {
        let iv = r.interval_seconds;
        if !iv.is_finite() || iv <= 0.0 || iv > self.limits.max_interval_seconds {
            return Err(RejectReason::BadInterval);
        }
        if r.series > self.limits.max_series {
            return Err(RejectReason::TooManySeries);
        }
        if r.samples_per_scrape > self.limits.max_samples_per_scrape {
            return Err(RejectReason::TooManySamples);
        }
        Ok(Load {
            series: r.series,
            samples_per_second: r.samples_per_scrape as f64 / iv,
        })
    }

    /// Records one report.
    pub fn record(&mut self, report: &TargetReport, now: SystemTime) -> ReportOutcome {
        let mut touched = HashSet::new();
        let out = self.record_one(report, now, &mut touched);
        self.mark_dirty(touched);
        out
    }

    /// Records a batch of reports (one shard `Report`). Returns how many
    /// were taken.
    pub fn ingest<'a>(
        &mut self,
        reports: impl IntoIterator<Item = &'a TargetReport>,
        now: SystemTime,
    ) -> usize {
        let mut touched = HashSet::new();
        let mut taken = 0;
        for r in reports {
            if self.record_one(r, now, &mut touched) == ReportOutcome::Taken {
                taken += 1;
            }
        }
        self.mark_dirty(touched);
        taken
    }

    fn record_one(
        &mut self,
        r: &TargetReport,
        now: SystemTime,
        touched: &mut HashSet<String>,
    ) -> ReportOutcome {
        if !self.targets.contains_key(&r.target_id) {
            return self.reject(RejectReason::UnknownTarget);
        }
        if r.health != TargetHealth::Up as i32 {
            self.not_healthy += 1;
            return ReportOutcome::NotHealthy;
        }
        let load = match self.validate(r) {
            Ok(l) => l,
            Err(reason) => {
                tracing::debug!(
                    target_id = r.target_id,
                    reason = reason.as_str(),
                    "target report rejected"
                );
                return self.reject(reason);
            }
        };
        if let Some(t) = self.targets.get_mut(&r.target_id) {
            t.reported = Some(Observed { load, at: now });
            touched.insert(t.job.clone());
        }
        ReportOutcome::Taken
    }

    fn reject(&mut self, reason: RejectReason) -> ReportOutcome {
        *self.rejected.entry(reason).or_default() += 1;
        ReportOutcome::Rejected(reason)
    }

    /// Records an explore result of a tracked target (ignored otherwise).
    pub fn record_explore(&mut self, id: TargetId, result: Result<Load, String>, now: SystemTime) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        t.explored = Some(match result {
            Ok(load) => ExploreRecord::Succeeded(Observed { load, at: now }),
            Err(error) => {
                self.explore_failures += 1;
                ExploreRecord::Failed { error, at: now }
            }
        });
        let job = t.job.clone();
        self.mark_dirty(std::iter::once(job));
    }

    /// Records what the [`Explorer`](super::Explorer) found: a load, or a
    /// failure (the target keeps its default). A disabled job's outcome
    /// records nothing.
    pub fn record_explore_outcome(&mut self, outcome: &ExploreOutcome, now: SystemTime) {
        match &outcome.result {
            Err(ExploreError::Disabled { .. }) => {}
            Ok(load) => self.record_explore(outcome.id, Ok(*load), now),
            Err(e) => self.record_explore(outcome.id, Err(e.to_string()), now),
        }
    }

    /// Marks the medians of `jobs` out of date.
    fn mark_dirty(&mut self, jobs: impl IntoIterator<Item = String>) {
        let cache = self
            .medians
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.dirty.extend(jobs);
    }

    /// The medians of `job`, recomputing every out-of-date job first.
    fn medians_of(&self, job: &str) -> JobMedians {
        let mut cache = crate::util::lock(&self.medians);
        if !cache.dirty.is_empty() {
            let dirty = std::mem::take(&mut cache.dirty);
            for job in dirty {
                let m = self.compute_medians(&job);
                if m.reported.is_none() && m.explored.is_none() {
                    cache.by_job.remove(&job);
                } else {
                    cache.by_job.insert(job, m);
                }
            }
        }
        cache.by_job.get(job).copied().unwrap_or_default()
    }

    /// One pass over the job's tracked targets.
    fn compute_medians(&self, job: &str) -> JobMedians {
        let mut reported = Vec::new();
        let mut explored = Vec::new();
        for id in self.members.get(job).into_iter().flatten() {
            let Some(t) = self.targets.get(id) else {
                continue;
            };
            if let Some(o) = &t.reported {
                reported.push(o.load);
            }
            if let Some(ExploreRecord::Succeeded(o)) = &t.explored {
                explored.push(o.load);
            }
        }
        JobMedians {
            reported: median(&reported),
            explored: median(&explored),
        }
    }

    /// Whether any target of `job` has reported a load.
    pub fn job_has_history(&self, job: &str) -> bool {
        self.medians_of(job).reported.is_some()
    }

    /// Whether `id` should be explored: tracked, never reported, never
    /// explored, and its job has no reported history.
    pub fn needs_explore(&self, id: TargetId) -> bool {
        self.targets.get(&id).is_some_and(|t| {
            t.reported.is_none() && t.explored.is_none() && !self.job_has_history(&t.job)
        })
    }

    /// The load of `id` and where it comes from. An id the model does not
    /// track gets the global default.
    pub fn load_of(&self, id: TargetId) -> (Load, LoadSource) {
        let Some(t) = self.targets.get(&id) else {
            return (self.defaults.global, LoadSource::Default);
        };
        if let Some(o) = &t.reported {
            return (o.load, LoadSource::Reported);
        }
        let medians = self.medians_of(&t.job);
        if let Some(m) = medians.reported {
            return (m, LoadSource::JobMedian);
        }
        if let Some(ExploreRecord::Succeeded(o)) = &t.explored {
            return (o.load, LoadSource::Explored);
        }
        if let Some(m) = medians.explored {
            return (m, LoadSource::Explored);
        }
        let d = self
            .defaults
            .per_job
            .get(&t.job)
            .copied()
            .unwrap_or(self.defaults.global);
        (d, LoadSource::Default)
    }

    /// The last valid report of `id`, with its time.
    pub fn last_report(&self, id: TargetId) -> Option<Observed> {
        self.targets.get(&id).and_then(|t| t.reported)
    }

    /// The last explore of `id`.
    pub fn last_explore(&self, id: TargetId) -> Option<&ExploreRecord> {
        self.targets.get(&id).and_then(|t| t.explored.as_ref())
    }

    /// Rejected reports by reason.
    pub fn rejected(&self) -> &BTreeMap<RejectReason, u64> {
        &self.rejected
    }

    /// Reports of scrapes that were not healthy (not taken as load).
    pub fn not_healthy_reports(&self) -> u64 {
        self.not_healthy
    }

    /// Explore failures recorded so far.
    pub fn explore_failures(&self) -> u64 {
        self.explore_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(series: u64, sps: f64) -> Load {
        Load {
            series,
            samples_per_second: sps,
        }
    }

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[l(3, 1.0), l(1, 5.0), l(2, 3.0)]), Some(l(2, 3.0)));
        assert_eq!(
            median(&[l(4, 1.0), l(1, 2.0), l(2, 4.0), l(10, 3.0)]),
            Some(l(3, 2.5))
        );
        assert_eq!(
            median(&[l(u64::MAX, 0.0), l(u64::MAX, 0.0)])
                .unwrap()
                .series,
            u64::MAX
        );
    }

    #[test]
    fn unhealthy_reports_keep_the_previous_load() {
        let mut m = LoadModel::default();
        m.track(1, "j");
        let t0 = SystemTime::UNIX_EPOCH;
        let up = TargetReport {
            target_id: 1,
            series: 100,
            samples_per_scrape: 100,
            interval_seconds: 10.0,
            health: TargetHealth::Up as i32,
            ..Default::default()
        };
        assert_eq!(m.record(&up, t0), ReportOutcome::Taken);
        let down = TargetReport {
            series: 0,
            health: TargetHealth::Down as i32,
            ..up.clone()
        };
        assert_eq!(m.record(&down, t0), ReportOutcome::NotHealthy);
        assert_eq!(m.load_of(1), (l(100, 10.0), LoadSource::Reported));
        assert_eq!(m.not_healthy_reports(), 1);
    }
}
