//! [`ScrapeManager`]: owns the loops, the compiled jobs and the pending
//! targets, and applies target-set and config changes to them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use promshard_promlib::config::Config;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::job::JobState;
use super::schedule::{SLOT_TOLERANCE_MS, now_ms};
use super::scratch::ScratchPool;
use super::status::{ScrapeStats, TargetStatus};
use super::target_loop::{LoopShared, TargetLoop, lock};
use super::{BatchSink, ManagedTarget, Stop};
use crate::pipeline::RefAllocator;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("job {job:?}: {reason}")]
    Job { job: String, reason: String },
}

/// A running (or ending) loop as the manager sees it.
struct LoopHandle {
    job_name: String,
    shared: Arc<LoopShared>,
    join: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Arc<JobState>>,
    loops: HashMap<u64, LoopHandle>,
    /// Targets whose job is not (yet) configured; started by the
    /// `set_config` that adds the job.
    pending: HashMap<u64, ManagedTarget>,
    /// Loops that committed to ending but may still be appending.
    finishing: Vec<JoinHandle<()>>,
    shut_down: bool,
}

/// Owns every scrape loop. Needs a Tokio runtime: loops are spawned on the
/// runtime current at [`ScrapeManager::new`] (or, failing that, at the
/// call that starts them).
pub struct ScrapeManager {
    sink: Arc<dyn BatchSink>,
    refs: Arc<RefAllocator>,
    base_dir: PathBuf,
    stats: Arc<ScrapeStats>,
    scratch: Arc<ScratchPool>,
    runtime: Option<Handle>,
    state: Mutex<State>,
    /// Serializes `set_config` calls (compiling happens outside `state`).
    config_lock: Mutex<()>,
}

impl ScrapeManager {
    /// `base_dir`: where relative `*_file` paths of the config resolve.
    pub fn new(sink: Arc<dyn BatchSink>, refs: Arc<RefAllocator>, base_dir: PathBuf) -> Self {
        ScrapeManager {
            sink,
            refs,
            base_dir,
            stats: Arc::new(ScrapeStats::default()),
            scratch: Arc::new(ScratchPool::default()),
            runtime: Handle::try_current().ok(),
            state: Mutex::new(State::default()),
            config_lock: Mutex::new(()),
        }
    }

    /// Installs a config (jobs and external labels). Loops of jobs whose
    /// scrape_config is unchanged are untouched; loops of changed jobs
    /// continue on their schedule with the new settings (a changed interval
    /// moves them to the new slots); targets of removed jobs stop with
    /// staleness markers. Pending targets of added jobs start. On error
    /// nothing changes.
    pub fn set_config(&self, cfg: &Config) -> Result<(), ManagerError> {
        let _serial = lock(&self.config_lock);
        let old_jobs = lock(&self.state).jobs.clone();
        let external = &cfg.global.external_labels;
        let mut jobs = HashMap::with_capacity(cfg.scrape_configs.len());
        for sc in &cfg.scrape_configs {
            let state = match old_jobs.get(&sc.job_name) {
                Some(old) if old.same_as(sc, external) => Arc::clone(old),
                _ => Arc::new(JobState::compile(sc, external, &self.base_dir).map_err(
                    |reason| ManagerError::Job {
                        job: sc.job_name.clone(),
                        reason,
                    },
                )?),
            };
            if jobs.insert(sc.job_name.clone(), state).is_some() {
                return Err(ManagerError::Job {
                    job: sc.job_name.clone(),
                    reason: "found multiple scrape configs with this job name".to_string(),
                });
            }
        }

        let mut st = lock(&self.state);
        if st.shut_down {
            return Ok(());
        }
        prune_ended(&mut st);
        st.jobs = jobs;
        let State { jobs, loops, .. } = &mut *st;
        for (id, h) in loops.iter() {
            match jobs.get(&h.job_name) {
                Some(job) => h.shared.steer(|c| {
                    if !Arc::ptr_eq(&c.job, job) {
                        c.job = Arc::clone(job);
                    }
                }),
                None => {
                    tracing::info!(
                        target_id = id,
                        job = %h.job_name,
                        "job removed from the config; target stops"
                    );
                    h.shared.steer(|c| {
                        c.stop = Some(Stop {
                            stop_before_ms: None,
                            handover: false,
                        })
                    });
                }
            }
        }
        let ready: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, t)| st.jobs.contains_key(&t.target.job_name))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(t) = st.pending.remove(&id) {
                self.add_locked(&mut st, t);
            }
        }
        Ok(())
    }

    /// Replaces the whole target set: new targets start, targets whose id
    /// is still present keep running untouched (a pending stop of theirs is
    /// cancelled), missing ones stop with staleness markers (at their next
    /// slot, as Prometheus). A missing target that already has a pending
    /// stop keeps that stop (a handover stays a handover).
    pub fn set_targets(&self, targets: Vec<ManagedTarget>) {
        let mut st = lock(&self.state);
        if st.shut_down {
            return;
        }
        prune_ended(&mut st);
        let keep: HashSet<u64> = targets.iter().map(|t| t.target.id).collect();
        st.pending.retain(|id, _| keep.contains(id));
        for (id, h) in &st.loops {
            if !keep.contains(id) {
                h.shared.steer(|c| {
                    if c.stop.is_none() {
                        c.stop = Some(Stop {
                            stop_before_ms: None,
                            handover: false,
                        });
                    }
                });
            }
        }
        for t in targets {
            self.add_locked(&mut st, t);
        }
    }

    /// Adds one target (no-op if its id runs already; a pending stop of it
    /// is cancelled). A target whose job is not configured waits until a
    /// `set_config` adds the job (logged).
    pub fn add_target(&self, target: ManagedTarget) {
        let mut st = lock(&self.state);
        if !st.shut_down {
            self.add_locked(&mut st, target);
        }
    }

    /// Stops one target as `stop` says (no-op if unknown). A later stop
    /// replaces an earlier pending one.
    pub fn remove_target(&self, id: u64, stop: Stop) {
        let mut st = lock(&self.state);
        prune_ended(&mut st);
        if st.pending.remove(&id).is_some() {
            return;
        }
        if let Some(h) = st.loops.get(&id) {
            h.shared.steer(|c| {
                if !c.ended {
                    c.stop = Some(stop);
                }
            });
        }
    }

    /// The status of every running target (including those with a pending
    /// stop), sorted by job then id. Pending targets (job not configured)
    /// are not listed.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        let shared: Vec<Arc<LoopShared>> = {
            let st = lock(&self.state);
            st.loops.values().map(|h| Arc::clone(&h.shared)).collect()
        };
        let mut out: Vec<TargetStatus> = shared
            .iter()
            .filter(|s| !lock(&s.control).ended)
            .map(|s| lock(&s.status).clone())
            .collect();
        out.sort_by(|a, b| {
            (a.scrape_pool.as_str(), a.target.id).cmp(&(b.scrape_pool.as_str(), b.target.id))
        });
        out
    }

    /// Ids of targets waiting for their job to be configured.
    pub fn pending_targets(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = lock(&self.state).pending.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn stats(&self) -> Arc<ScrapeStats> {
        Arc::clone(&self.stats)
    }

    /// Stops every loop without staleness markers (a restart continues the
    /// series), waiting for in-flight appends (a scrape in flight is
    /// abandoned). Later calls that add targets are ignored.
    pub async fn shutdown(&self) {
        let joins: Vec<JoinHandle<()>> = {
            let mut st = lock(&self.state);
            st.shut_down = true;
            st.pending.clear();
            let mut joins: Vec<JoinHandle<()>> = std::mem::take(&mut st.finishing);
            for (_, h) in st.loops.drain() {
                h.shared.steer(|c| c.shutdown = true);
                joins.push(h.join);
            }
            joins
        };
        for j in joins {
            if let Err(e) = j.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "a scrape loop panicked");
            }
        }
    }

    /// Starts `t` (or keeps it / cancels its stop) with `st` locked.
    fn add_locked(&self, st: &mut State, t: ManagedTarget) {
        let id = t.target.id;
        st.finishing.retain(|j| !j.is_finished());
        let Some(job) = st.jobs.get(&t.target.job_name).map(Arc::clone) else {
            if !st.pending.contains_key(&id) {
                tracing::warn!(
                    target_id = id,
                    job = %t.target.job_name,
                    "target's job is not in the config; waiting for a config that has it"
                );
            }
            st.pending.insert(id, t);
            return;
        };
        let mut start_at = t.start_at_ms;
        if let Some(h) = st.loops.get(&id) {
            let mut c = lock(&h.shared.control);
            if !c.ended && !c.shutdown {
                c.stop = None;
                drop(c);
                h.shared.wake.notify_one();
                return;
            }
            // It ended (stale markers written or being written): a new
            // loop continues after its last slot.
            if let Some(last) = c.last_slot_ms {
                start_at = Some(start_at.map_or(last + 1, |s| s.max(last + 1)));
            }
            drop(c);
            if let Some(old) = st.loops.remove(&id) {
                st.finishing.push(old.join);
            }
        }
        let Some(runtime) = self.runtime.clone().or_else(|| Handle::try_current().ok()) else {
            tracing::error!(target_id = id, "no Tokio runtime to run the scrape loop on");
            return;
        };
        let shared = Arc::new(LoopShared::new(&t.target, job));
        let job_name = t.target.job_name.clone();
        let lp = TargetLoop {
            target: t.target,
            start_at_ms: start_at,
            shared: Arc::clone(&shared),
            sink: Arc::clone(&self.sink),
            refs: Arc::clone(&self.refs),
            stats: Arc::clone(&self.stats),
            scratch: Arc::clone(&self.scratch),
        };
        let join = runtime.spawn(lp.run());
        st.loops.insert(
            id,
            LoopHandle {
                job_name,
                shared,
                join,
            },
        );
    }
}

/// Forgets loops that ended, finished their last append, and whose last
/// slot is far enough in the past that a new loop of the same target cannot
/// pick it again.
fn prune_ended(st: &mut State) {
    let horizon = now_ms() - SLOT_TOLERANCE_MS;
    st.loops.retain(|_, h| {
        let c = lock(&h.shared.control);
        !(c.ended && h.join.is_finished() && c.last_slot_ms.is_none_or(|l| l < horizon))
    });
}

impl Drop for ScrapeManager {
    /// Without [`ScrapeManager::shutdown`], loops are told to stop (no
    /// staleness markers) and end on their own.
    fn drop(&mut self) {
        let st = lock(&self.state);
        for h in st.loops.values() {
            h.shared.steer(|c| c.shutdown = true);
        }
    }
}
