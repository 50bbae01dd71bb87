//! [`Registry`]: the current targets of every job, by stable id.
//!
//! Discovery sends [`Update`]s (changed groups of one provider of one job);
//! the registry keeps each job's groups, runs target relabeling
//! ([`targets::populate`]) on the groups that changed, and returns what
//! changed ([`Changes`]: ids added and removed) so the control loop can plan.
//!
//! - Groups are keyed by (job, provider, source), as Prometheus' discovery
//!   manager keys them. A group with no targets means its source is gone.
//!   A `static/0` update carries all of a job's static groups (that is how
//!   [`Discoverer::run`](promshard_promlib::discovery::Discoverer::run)
//!   sends them), so it replaces that provider's groups as a whole.
//! - The same target (same id) from two groups counts once: the registry
//!   counts references per id; the target leaves only when its last group
//!   drops it. Its labels are those of the group that brought it first.
//! - Targets that relabeling drops are kept per group as dropped targets
//!   (Prometheus' `droppedTargets`). Targets that cannot be populated (no
//!   address, bad interval, ...) are recorded per job with their group's
//!   source and the error; they do not stop the other targets.
//! - [`Registry::set_config`] (a reload) re-populates every job whose
//!   scrape config changed, removes the jobs that are gone (their targets
//!   leave), rebuilds static groups from the new config, and forgets a
//!   job's file_sd groups when its `file_sd_configs` changed (the new
//!   discoverer sends them again). Set the config before starting its
//!   discoverer: updates for jobs not in the config are ignored (counted).

use std::collections::{BTreeMap, BTreeSet, HashMap, hash_map};
use std::sync::Arc;

use promshard_promlib::config::{Config, ScrapeConfig};
use promshard_promlib::discovery::{TargetGroup, Update, static_groups};
use promshard_promlib::labels::Labels;
use promshard_promlib::targets::{self, Populated, Target};

use crate::model::TargetId;

/// The provider name of a job's static groups in discovery updates.
pub const STATIC_PROVIDER: &str = "static/0";

/// One current target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredTarget {
    pub id: TargetId,
    pub job: String,
    /// Final labels after relabeling (with the reserved `__*` labels that
    /// define the scrape).
    pub labels: Labels,
    /// The labels as discovered (Prometheus' `discoveredLabels`).
    pub discovered_labels: Labels,
}

impl RegisteredTarget {
    fn from_target(t: Target) -> Self {
        RegisteredTarget {
            id: t.id,
            job: t.job_name,
            labels: t.labels,
            discovered_labels: t.discovered_labels,
        }
    }

    /// The scrape interval (`__scrape_interval__`).
    pub fn interval(&self) -> Option<std::time::Duration> {
        self.labels
            .get(promshard_promlib::labels::SCRAPE_INTERVAL)?
            .parse::<promshard_promlib::duration::Duration>()
            .ok()
            .map(|d| d.to_std())
    }

    /// The labels attached to every sample (final labels without `__*`).
    pub fn public_labels(&self) -> Labels {
        self.labels.public()
    }

    /// As a promlib [`Target`] (for [`Target::url`]).
    pub fn to_target(&self) -> Target {
        Target {
            id: self.id,
            job_name: self.job.clone(),
            labels: self.labels.clone(),
            discovered_labels: self.discovered_labels.clone(),
        }
    }
}

/// A target that relabeling dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTarget {
    pub job: String,
    pub discovered_labels: Labels,
}

/// A discovered target that could not become a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopulateFailure {
    pub job: String,
    /// The discovery provider (`static/0`, `file/1`).
    pub provider: String,
    /// The group's source (`0`, `sd/a.json:2`).
    pub source: String,
    /// The discovered labels (merged with the group's labels).
    pub discovered_labels: Labels,
    /// Prometheus' message (`no address`, ...).
    pub error: String,
}

/// What one apply changed. Both lists are sorted and disjoint from each
/// other's meaning: `added` ids were absent before and are present now,
/// `removed` ids the reverse (an id removed and re-added in the same apply
/// appears in neither).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<TargetId>,
    pub removed: Vec<TargetId>,
    /// Jobs whose scrape config was added, changed or removed (reloads
    /// only), sorted: their job definitions must be shipped again.
    pub jobs_changed: Vec<String>,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.jobs_changed.is_empty()
    }
}

/// What one group contributes.
#[derive(Debug, Default)]
struct GroupState {
    /// The group as discovered (kept to re-populate on reload).
    group: TargetGroup,
    /// Ids of its active targets (one entry per reference: a target listed
    /// twice in the group counts twice and is released twice).
    ids: Vec<TargetId>,
    dropped: Vec<Labels>,
    failures: Vec<PopulateFailure>,
}

/// A target with the number of group entries that reference it.
#[derive(Debug)]
struct Entry {
    target: RegisteredTarget,
    refs: u32,
}

/// Current configuration of one job and its groups by (provider, source).
#[derive(Debug)]
struct JobState {
    config: Arc<ScrapeConfig>,
    groups: BTreeMap<(String, String), GroupState>,
}

/// The target registry. See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    jobs: BTreeMap<String, JobState>,
    targets: HashMap<TargetId, Entry>,
    ignored_updates: u64,
}

/// Tracks presence of touched ids during one apply.
#[derive(Default)]
struct Tracker {
    /// id -> present before this apply.
    before: HashMap<TargetId, bool>,
}

impl Tracker {
    fn touch(&mut self, id: TargetId, present: bool) {
        self.before.entry(id).or_insert(present);
    }

    fn finish(self, targets: &HashMap<TargetId, Entry>, jobs_changed: Vec<String>) -> Changes {
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for (id, before) in self.before {
            let now = targets.contains_key(&id);
            match (before, now) {
                (false, true) => added.push(id),
                (true, false) => removed.push(id),
                _ => {}
            }
        }
        added.sort_unstable();
        removed.sort_unstable();
        Changes {
            added,
            removed,
            jobs_changed,
        }
    }
}

impl Registry {
    /// An empty registry with `cfg`'s jobs (and their static groups).
    pub fn new(cfg: &Config) -> Self {
        let mut r = Registry::default();
        r.set_config(cfg);
        r
    }

    /// Applies one discovery update. Updates for jobs not in the config
    /// are ignored (see [`Registry::ignored_updates`]).
    pub fn apply(&mut self, update: Update) -> Changes {
        let mut tracker = Tracker::default();
        self.apply_one(update, &mut tracker);
        tracker.finish(&self.targets, Vec::new())
    }

    /// Applies a batch of updates; one [`Changes`] for the whole batch.
    pub fn apply_all(&mut self, updates: impl IntoIterator<Item = Update>) -> Changes {
        let mut tracker = Tracker::default();
        for u in updates {
            self.apply_one(u, &mut tracker);
        }
        tracker.finish(&self.targets, Vec::new())
    }

    fn apply_one(&mut self, update: Update, tracker: &mut Tracker) {
        if !self.jobs.contains_key(&update.job) {
            self.ignored_updates += 1;
            tracing::debug!(job = %update.job, provider = %update.provider,
                "discovery update for a job not in the config ignored");
            return;
        }
        if update.provider == STATIC_PROVIDER {
            self.set_static_groups(&update.job, update.groups, tracker);
            return;
        }
        for g in update.groups {
            self.replace_group(&update.job, &update.provider, g, tracker);
        }
    }

    fn set_static_groups(&mut self, job: &str, groups: Vec<TargetGroup>, tracker: &mut Tracker) {
        let keep: BTreeSet<&str> = groups.iter().map(|g| g.source.as_str()).collect();
        let stale: Vec<(String, String)> = self.jobs[job]
            .groups
            .keys()
            .filter(|(p, s)| p == STATIC_PROVIDER && !keep.contains(s.as_str()))
            .cloned()
            .collect();
        for key in stale {
            self.remove_group(job, &key, tracker);
        }
        for g in groups {
            self.replace_group(job, STATIC_PROVIDER, g, tracker);
        }
    }

    /// Installs `group` (or removes its source when it has no targets).
    fn replace_group(
        &mut self,
        job: &str,
        provider: &str,
        group: TargetGroup,
        tracker: &mut Tracker,
    ) {
        let key = (provider.to_string(), group.source.clone());
        if let Some(old) = self.jobs.get(job).and_then(|j| j.groups.get(&key))
            && old.group == group
        {
            return;
        }
        self.remove_group(job, &key, tracker);
        if group.targets.is_empty() {
            return;
        }
        let Some(state) = self.jobs.get(job) else {
            return;
        };
        let cfg = Arc::clone(&state.config);
        let gs = self.populate_group(&cfg, provider, group, tracker);
        if let Some(state) = self.jobs.get_mut(job) {
            state.groups.insert(key, gs);
        }
    }

    /// Runs relabeling on each target of `group` and takes references.
    fn populate_group(
        &mut self,
        cfg: &ScrapeConfig,
        provider: &str,
        group: TargetGroup,
        tracker: &mut Tracker,
    ) -> GroupState {
        let mut gs = GroupState::default();
        for discovered in group.merged_targets() {
            match targets::populate(cfg, discovered.clone()) {
                Ok(Populated::Active(t)) => {
                    let id = t.id;
                    match self.targets.entry(id) {
                        hash_map::Entry::Occupied(mut e) => {
                            tracker.touch(id, true);
                            e.get_mut().refs += 1;
                        }
                        hash_map::Entry::Vacant(v) => {
                            tracker.touch(id, false);
                            v.insert(Entry {
                                target: RegisteredTarget::from_target(t),
                                refs: 1,
                            });
                        }
                    }
                    gs.ids.push(id);
                }
                Ok(Populated::Dropped { discovered_labels }) => gs.dropped.push(discovered_labels),
                Err(e) => {
                    tracing::debug!(job = %cfg.job_name, source = %group.source, error = %e,
                        "discovered target cannot be scraped");
                    gs.failures.push(PopulateFailure {
                        job: cfg.job_name.clone(),
                        provider: provider.to_string(),
                        source: group.source.clone(),
                        discovered_labels: discovered,
                        error: e.to_string(),
                    });
                }
            }
        }
        gs.group = group;
        gs
    }

    /// Removes a group and releases its references.
    fn remove_group(&mut self, job: &str, key: &(String, String), tracker: &mut Tracker) {
        let Some(gs) = self.jobs.get_mut(job).and_then(|j| j.groups.remove(key)) else {
            return;
        };
        self.release(&gs.ids, tracker);
    }

    fn release(&mut self, ids: &[TargetId], tracker: &mut Tracker) {
        for &id in ids {
            if let hash_map::Entry::Occupied(mut e) = self.targets.entry(id) {
                tracker.touch(id, true);
                let refs = &mut e.get_mut().refs;
                *refs = refs.saturating_sub(1);
                if *refs == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Installs a new config (a reload): see the module docs.
    pub fn set_config(&mut self, cfg: &Config) -> Changes {
        let mut tracker = Tracker::default();
        let mut jobs_changed = Vec::new();
        let new_jobs: BTreeMap<&str, &ScrapeConfig> = cfg
            .scrape_configs
            .iter()
            .map(|sc| (sc.job_name.as_str(), sc))
            .collect();
        // Jobs that are gone.
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|j| !new_jobs.contains_key(j.as_str()))
            .cloned()
            .collect();
        for job in gone {
            if let Some(state) = self.jobs.remove(&job) {
                for gs in state.groups.into_values() {
                    self.release(&gs.ids, &mut tracker);
                }
            }
            jobs_changed.push(job);
        }
        for (name, sc) in new_jobs {
            let unchanged = self.jobs.get(name).is_some_and(|s| s.config.as_ref() == sc);
            if unchanged {
                continue;
            }
            jobs_changed.push(name.to_string());
            let new_cfg = Arc::new(sc.clone());
            let old = self.jobs.insert(
                name.to_string(),
                JobState {
                    config: Arc::clone(&new_cfg),
                    groups: BTreeMap::new(),
                },
            );
            // Release every old group, then re-populate the ones kept.
            let mut keep = Vec::new();
            if let Some(old) = old {
                let files_same = old.config.file_sd_configs == sc.file_sd_configs;
                for (key, gs) in old.groups {
                    self.release(&gs.ids, &mut tracker);
                    if key.0 != STATIC_PROVIDER && files_same {
                        keep.push((key.0, gs.group));
                    }
                }
            }
            for (provider, group) in keep {
                let key = (provider.clone(), group.source.clone());
                let gs = self.populate_group(&new_cfg, &provider, group, &mut tracker);
                if let Some(state) = self.jobs.get_mut(name) {
                    state.groups.insert(key, gs);
                }
            }
            self.set_static_groups(name, static_groups(sc), &mut tracker);
        }
        jobs_changed.sort();
        tracker.finish(&self.targets, jobs_changed)
    }

    /// The target with id `id`.
    pub fn get(&self, id: TargetId) -> Option<&RegisteredTarget> {
        self.targets.get(&id).map(|e| &e.target)
    }

    /// Whether `id` is a current target.
    pub fn contains(&self, id: TargetId) -> bool {
        self.targets.contains_key(&id)
    }

    /// Number of current targets (each id once).
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// No current target.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Every current target, in no particular order.
    pub fn targets(&self) -> impl Iterator<Item = &RegisteredTarget> {
        self.targets.values().map(|e| &e.target)
    }

    /// Current target ids, sorted.
    pub fn ids(&self) -> Vec<TargetId> {
        let mut ids: Vec<TargetId> = self.targets.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The job's current targets, sorted by id (each id once).
    pub fn job_targets(&self, job: &str) -> Vec<&RegisteredTarget> {
        let Some(state) = self.jobs.get(job) else {
            return Vec::new();
        };
        let ids: BTreeSet<TargetId> = state
            .groups
            .values()
            .flat_map(|g| g.ids.iter().copied())
            .collect();
        ids.iter().filter_map(|id| self.get(*id)).collect()
    }

    /// Job names of the current config, sorted.
    pub fn jobs(&self) -> impl Iterator<Item = &str> {
        self.jobs.keys().map(String::as_str)
    }

    /// The current scrape config of `job`.
    pub fn job_config(&self, job: &str) -> Option<&Arc<ScrapeConfig>> {
        self.jobs.get(job).map(|s| &s.config)
    }

    /// Targets that relabeling dropped, by job then group.
    pub fn dropped(&self) -> Vec<DroppedTarget> {
        let mut out = Vec::new();
        for (job, state) in &self.jobs {
            for gs in state.groups.values() {
                out.extend(gs.dropped.iter().map(|l| DroppedTarget {
                    job: job.clone(),
                    discovered_labels: l.clone(),
                }));
            }
        }
        out
    }

    /// Number of dropped targets of `job`.
    pub fn dropped_count(&self, job: &str) -> usize {
        self.jobs
            .get(job)
            .map_or(0, |s| s.groups.values().map(|g| g.dropped.len()).sum())
    }

    /// Discovered targets of `job` that could not be populated, by group.
    pub fn failures(&self, job: &str) -> Vec<&PopulateFailure> {
        self.jobs
            .get(job)
            .map(|s| s.groups.values().flat_map(|g| g.failures.iter()).collect())
            .unwrap_or_default()
    }

    /// Number of populate failures per job (jobs without any omitted).
    pub fn failure_counts(&self) -> BTreeMap<String, usize> {
        self.jobs
            .iter()
            .filter_map(|(job, s)| {
                let n: usize = s.groups.values().map(|g| g.failures.len()).sum();
                (n > 0).then(|| (job.clone(), n))
            })
            .collect()
    }

    /// Discovery updates ignored because their job is not in the config.
    pub fn ignored_updates(&self) -> u64 {
        self.ignored_updates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promshard_promlib::config::load_str;

    fn cfg(yaml: &str) -> Config {
        load_str(yaml, "t.yml").unwrap()
    }

    fn group(source: &str, addrs: &[&str]) -> TargetGroup {
        TargetGroup {
            source: source.to_string(),
            targets: addrs
                .iter()
                .map(|a| Labels::from_pairs([("__address__", *a)]))
                .collect(),
            labels: Labels::new(),
        }
    }

    #[test]
    fn static_groups_come_from_the_config() {
        let r = Registry::new(&cfg(
            "scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['h:1', 'h:2']}]\n",
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r.job_targets("a").len(), 2);
    }

    #[test]
    fn a_target_listed_twice_in_one_group_leaves_once_the_group_goes() {
        let mut r = Registry::new(&cfg("scrape_configs:\n- job_name: a\n"));
        let c = r.apply(Update {
            job: "a".into(),
            provider: "file/0".into(),
            groups: vec![group("f:0", &["h:1", "h:1"])],
        });
        assert_eq!(c.added.len(), 1);
        let c = r.apply(Update {
            job: "a".into(),
            provider: "file/0".into(),
            groups: vec![TargetGroup::empty("f:0")],
        });
        assert_eq!(c.removed.len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn unchanged_group_changes_nothing() {
        let mut r = Registry::new(&cfg("scrape_configs:\n- job_name: a\n"));
        let u = Update {
            job: "a".into(),
            provider: "file/0".into(),
            groups: vec![group("f:0", &["h:1"])],
        };
        assert_eq!(r.apply(u.clone()).added.len(), 1);
        assert!(r.apply(u).is_empty());
    }
}
