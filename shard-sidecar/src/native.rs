//! [`NativeBackend`]: the in-process collector, driven through its
//! [`CollectorHandle`] (jobs via `apply_config`, targets via the scrape
//! manager).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use promshard_collector::run::{CollectorError, CollectorHandle};
use promshard_collector::scrape::{Health, ManagedTarget, ManagerError, ScrapeManager, Stop};
use promshard_promlib::config::{Config, ScrapeConfig};
use promshard_proto::v1;
use tokio::sync::Mutex;

use crate::backend::{Backend, BackendError, DeltaOutcome, JobsOutcome};
use crate::jobs;
use crate::target;

/// One job in force.
#[derive(Clone)]
struct Job {
    hash: String,
    /// The definition as received (recompiled when `global` changes).
    def: v1::JobDefinition,
    config: ScrapeConfig,
}

struct State {
    /// `global` and `remote_write` of the shard's own config file.
    file_base: Config,
    /// The coordinator's global config (YAML as received, parsed).
    coordinator_global: Option<(String, Config)>,
    /// Jobs in force, by name.
    jobs: BTreeMap<String, Job>,
    /// Why the latest definition of a job was refused.
    job_errors: BTreeMap<String, String>,
    /// The assignment: targets added and not removed.
    assigned: HashMap<u64, v1::Target>,
}

impl State {
    fn base(&self) -> &Config {
        self.coordinator_global
            .as_ref()
            .map_or(&self.file_base, |(_, c)| c)
    }
}

/// The embedded collector as a [`Backend`]. The collector must have been
/// started with `TargetSource::External`.
pub struct NativeBackend {
    collector: CollectorHandle,
    manager: Arc<ScrapeManager>,
    base_dir: PathBuf,
    state: Mutex<State>,
}

impl NativeBackend {
    pub async fn new(collector: CollectorHandle) -> NativeBackend {
        let mut file_base = (*collector.config().await).clone();
        file_base.scrape_configs.clear();
        NativeBackend {
            manager: collector.scrape_manager(),
            base_dir: collector.base_dir(),
            collector,
            state: Mutex::new(State {
                file_base,
                coordinator_global: None,
                jobs: BTreeMap::new(),
                job_errors: BTreeMap::new(),
                assigned: HashMap::new(),
            }),
        }
    }

    /// Applies `jobs` with `base`'s global and remote write. A job the
    /// collector refuses is put back to its previous definition (or left
    /// out) and reported; a refused remote write puts `fallback` back.
    async fn install(
        &self,
        mut jobs: BTreeMap<String, Job>,
        previous: &BTreeMap<String, Job>,
        mut base: Config,
        fallback: &Config,
        outcome: &mut JobsOutcome,
    ) -> BTreeMap<String, Job> {
        // Each failed attempt removes one cause; bounded by their number.
        for _ in 0..jobs.len() + 3 {
            let cfg = Config {
                scrape_configs: jobs.values().map(|j| j.config.clone()).collect(),
                ..base.clone()
            };
            match self.collector.apply_config(cfg).await {
                Ok(()) => return jobs,
                Err(CollectorError::Scrape(ManagerError::Job { job, reason })) => {
                    tracing::warn!(job = %job, reason = %reason, "job refused by the collector");
                    outcome.job_errors.insert(job.clone(), reason);
                    match previous.get(&job) {
                        Some(old) if jobs.get(&job).is_some_and(|j| j.hash != old.hash) => {
                            jobs.insert(job, old.clone());
                        }
                        _ => {
                            jobs.remove(&job);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "config refused by the collector");
                    if outcome.global_error.is_none() && base != *fallback {
                        outcome.global_error = Some(e.to_string());
                        base = fallback.clone();
                    } else {
                        // Nothing of ours to take back: keep what runs.
                        outcome.global_error.get_or_insert(e.to_string());
                        return previous.clone();
                    }
                }
            }
        }
        previous.clone()
    }
}

impl Backend for NativeBackend {
    fn kind(&self) -> v1::BackendKind {
        v1::BackendKind::Native
    }

    async fn current_targets(&self) -> Vec<v1::Target> {
        let st = self.state.lock().await;
        let mut out: Vec<v1::Target> = st.assigned.values().cloned().collect();
        out.sort_by_key(|t| t.id);
        out
    }

    async fn job_config_hashes(&self) -> BTreeMap<String, String> {
        let st = self.state.lock().await;
        st.jobs
            .iter()
            .map(|(n, j)| (n.clone(), j.hash.clone()))
            .collect()
    }

    async fn apply_jobs(&self, defs: v1::JobDefinitions) -> Result<JobsOutcome, BackendError> {
        let mut st = self.state.lock().await;
        let mut outcome = JobsOutcome::default();
        if st.coordinator_global.is_none() {
            // The collector's global and remote write are the file's (a
            // SIGHUP may have changed them since).
            let mut live = (*self.collector.config().await).clone();
            live.scrape_configs.clear();
            st.file_base = live;
        }
        let old_base = st.base().clone();

        // The global config: the coordinator's when it sends one, else the
        // shard's own file.
        let wanted_global = defs.global_config_yaml.trim();
        let same_global = match &st.coordinator_global {
            Some((y, _)) => y == wanted_global,
            None => wanted_global.is_empty(),
        };
        let mut coordinator_global = st.coordinator_global.clone();
        if !same_global {
            if wanted_global.is_empty() {
                coordinator_global = None;
            } else {
                match jobs::parse_global(wanted_global, &self.base_dir) {
                    Ok(cfg) => coordinator_global = Some((wanted_global.to_string(), cfg)),
                    Err(e) => outcome.global_error = Some(e.to_string()),
                }
            }
        }
        let base = coordinator_global
            .as_ref()
            .map_or(st.file_base.clone(), |(_, c)| c.clone());
        let global_changed = base.global != old_base.global;

        let previous = st.jobs.clone();
        let mut next = previous.clone();
        for name in &defs.removed_jobs {
            next.remove(name);
            st.job_errors.remove(name);
        }
        if global_changed {
            // Interval/timeout defaults come from `global`: recompile.
            for job in next.values_mut() {
                match jobs::compile(&job.def, &base.global, &self.base_dir) {
                    Ok(sc) => job.config = sc,
                    Err(e) => {
                        outcome
                            .job_errors
                            .insert(job.def.job_name.clone(), e.to_string());
                    }
                }
            }
        }
        for def in defs.jobs {
            let unchanged = next
                .get(&def.job_name)
                .is_some_and(|j| !def.config_hash.is_empty() && j.hash == def.config_hash);
            if unchanged {
                continue;
            }
            match jobs::compile(&def, &base.global, &self.base_dir) {
                Ok(config) => {
                    next.insert(
                        def.job_name.clone(),
                        Job {
                            hash: def.config_hash.clone(),
                            def,
                            config,
                        },
                    );
                }
                Err(e) => {
                    outcome
                        .job_errors
                        .insert(jobs::reported_name(&def), e.to_string());
                }
            }
        }

        let applied_base_is_new = base != old_base;
        let installed = self
            .install(next, &previous, base, &old_base, &mut outcome)
            .await;
        if outcome.global_error.is_none() || !applied_base_is_new {
            st.coordinator_global = coordinator_global;
        }
        // Targets of jobs that are gone were stopped by the collector (with
        // staleness markers): they are no longer assigned.
        st.assigned
            .retain(|_, t| installed.contains_key(&t.job_name));
        st.jobs = installed;
        for (job, reason) in &outcome.job_errors {
            tracing::warn!(job = %job, reason = %reason, "job definition refused");
            st.job_errors.insert(job.clone(), reason.clone());
        }
        for job in st.jobs.keys().cloned().collect::<Vec<_>>() {
            if !outcome.job_errors.contains_key(&job) {
                st.job_errors.remove(&job);
            }
        }
        if let Some(e) = &outcome.global_error {
            tracing::warn!(error = %e, "global config from the coordinator refused");
        }
        Ok(outcome)
    }

    async fn apply_delta(&self, delta: &v1::AssignmentDelta) -> Result<DeltaOutcome, BackendError> {
        let mut st = self.state.lock().await;
        let mut outcome = DeltaOutcome::default();
        if delta.full {
            let keep: HashSet<u64> = delta
                .add
                .iter()
                .filter_map(|a| a.target.as_ref().map(|t| t.id))
                .collect();
            let drop: Vec<u64> = st
                .assigned
                .keys()
                .filter(|id| !keep.contains(id))
                .copied()
                .collect();
            for id in drop {
                // Not in the full assignment: it may scrape elsewhere now,
                // so no staleness markers.
                self.manager.remove_target(
                    id,
                    Stop {
                        stop_before_ms: None,
                        handover: true,
                    },
                );
                st.assigned.remove(&id);
            }
        }
        for r in &delta.remove {
            let stop = Stop {
                // The protocol's last slot is included; the manager scrapes
                // slots strictly before `stop_before_ms`.
                stop_before_ms: (r.stop_after_unix_ms > 0)
                    .then(|| r.stop_after_unix_ms.saturating_add(1)),
                handover: r.handover,
            };
            self.manager.remove_target(r.target_id, stop);
            st.assigned.remove(&r.target_id);
        }
        for a in &delta.add {
            match target::check_add(a, &st.jobs, &st.job_errors) {
                Ok((t, built)) => {
                    self.manager.add_target(ManagedTarget {
                        target: built,
                        start_at_ms: (a.start_at_unix_ms > 0).then_some(a.start_at_unix_ms),
                    });
                    st.assigned.insert(t.id, t.clone());
                }
                Err(rejected) => outcome.rejected.push(rejected),
            }
        }
        Ok(outcome)
    }

    async fn report(&self) -> v1::Report {
        let statuses = self.manager.statuses();
        let mut report = v1::Report {
            unix_ms: now_ms(),
            ..v1::Report::default()
        };
        for s in statuses {
            let interval = s.interval.as_secs_f64();
            report.total_series += s.series;
            if interval > 0.0 {
                report.total_samples_per_second += s.samples_per_scrape as f64 / interval;
            }
            report.targets.push(v1::TargetReport {
                target_id: s.target.id,
                series: s.series,
                samples_per_scrape: s.samples_per_scrape,
                scrape_duration_seconds: s.last_scrape_duration.as_secs_f64(),
                health: match s.health {
                    Health::Up => v1::TargetHealth::Up,
                    Health::Down => v1::TargetHealth::Down,
                    Health::Unknown => v1::TargetHealth::Unknown,
                } as i32,
                last_error: s.last_error,
                last_scrape_unix_ms: s.last_scrape_ms,
                interval_seconds: interval,
            });
        }
        let wal = self.collector.wal_stats();
        report.wal_backlog_bytes = wal
            .consumers
            .iter()
            .map(|c| c.backlog_bytes)
            .max()
            .unwrap_or(0);
        report
    }
}

pub(crate) use promshard_collector::scrape::schedule::now_ms;
