//! The control loop: discovery -> registry -> load model -> planner ->
//! assignment deltas to the shards, one round at a time.
//!
//! Events come from three places and are handled in one task, in order:
//! discovery updates (targets come and go), the shard hub (a shard
//! attaches with what it scrapes, reports load, detaches) and a timer or
//! a request (`POST /api/v1/rebalance`, a reload). A round:
//! 1. shards marked `needs_full` get their whole assignment (after a
//!    restart, or after refusing a delta);
//! 2. targets that left discovery are removed from their shard (with
//!    staleness markers);
//! 3. the planner computes the new placement; new targets and targets of
//!    gone shards are added where it says, at once; targets that move
//!    between two live shards are handed over: the receiving shard is told
//!    to start at a time `handover_lead` ahead and must acknowledge, then
//!    the giving shard is told to stop just before it (no staleness
//!    markers). A missed acknowledgement cancels the move; the target
//!    stays where it was.
//!
//! Deltas go out with deadlines (the hub's ack timeout) and in parallel
//! across shards, so one hung shard delays nothing but its own moves. The
//! state lock is never held across an await.

mod admin_impl;
mod metrics;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use promshard_promlib::config::{Config, load_file};
use promshard_promlib::discovery::{Discoverer, Update};
use promshard_proto::v1::{
    AssignmentDelta, JobDefinition, JobDefinitions, TargetAdd, TargetRemove,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::hub::{HubEvent, ShardHub};
use crate::model::{Capacity, ShardId, TargetId};
use crate::planner::{self, MoveReason, PlanInput, PlannerConfig};
use crate::registry::{ExploreConfig, Explorer, LoadDefaults, LoadModel, ReportLimits};
use crate::util::{lock, unix_ms};

pub use state::{Migration, ShardState, State};

/// How the control loop behaves.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    pub config_file: PathBuf,
    pub planner: PlannerConfig,
    /// Capacity of a shard whose Hello names none.
    pub default_capacity: Capacity,
    /// A planning round at least this often.
    pub plan_interval: Duration,
    /// After a change, wait this long for more before planning.
    pub settle: Duration,
    /// How far ahead a handover's first slot on the receiving shard is.
    pub handover_lead: Duration,
    /// A detached shard keeps its targets this long (it may be
    /// restarting) before they are placed elsewhere.
    pub shard_grace: Duration,
    /// After start, how long discovery has to report before targets
    /// unknown to it are removed from shards and plans run.
    pub initial_wait: Duration,
    /// A new target whose job has no history waits this long for its
    /// explore before it is placed with the default estimate.
    pub explore_wait: Duration,
    /// After a start, no rebalancing while targets the shards already
    /// scrape (adopted from their Hello) have no reported load yet, for at
    /// most this long: a restarted coordinator must not move targets on
    /// estimates.
    pub report_wait: Duration,
    pub explore: Option<ExploreConfig>,
    pub load_defaults: LoadDefaults,
    pub report_limits: ReportLimits,
}

impl ControlOptions {
    pub fn new(config_file: PathBuf) -> Self {
        ControlOptions {
            config_file,
            planner: PlannerConfig::default(),
            default_capacity: PlannerConfig::default().shard_capacity,
            plan_interval: Duration::from_secs(10),
            settle: Duration::from_millis(300),
            handover_lead: Duration::from_secs(5),
            shard_grace: Duration::from_secs(10),
            initial_wait: Duration::from_secs(2),
            explore_wait: Duration::from_secs(15),
            report_wait: Duration::from_secs(30),
            explore: Some(ExploreConfig::default()),
            load_defaults: LoadDefaults::default(),
            report_limits: ReportLimits::default(),
        }
    }
}

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Config(String),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("planner settings: {0}")]
    Planner(String),
    #[error("explore settings: {0}")]
    Explore(String),
}

type ReloadReply = oneshot::Sender<Result<(), String>>;

pub(crate) struct Shared {
    opts: ControlOptions,
    state: Mutex<State>,
    hub: ShardHub,
    explorer: Option<Explorer>,
    /// Wakes the loop for a round.
    wake: Notify,
    reload_tx: mpsc::Sender<ReloadReply>,
    ready: AtomicBool,
    started: Instant,
}

/// The running control loop; [`Coordinator::admin`] gives the admin API
/// its view.
pub struct Coordinator {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Coordinator {
    /// Loads the config, starts discovery and the loop. `events` is the
    /// hub's event channel.
    pub fn start(
        opts: ControlOptions,
        hub: ShardHub,
        events: mpsc::Receiver<HubEvent>,
    ) -> Result<Coordinator, ControlError> {
        opts.planner
            .validate()
            .map_err(|e| ControlError::Planner(e.to_string()))?;
        let config =
            load_file(&opts.config_file).map_err(|e| ControlError::Config(e.to_string()))?;
        let discoverer =
            Discoverer::new(&config).map_err(|e| ControlError::Discovery(e.to_string()))?;
        let base_dir = opts
            .config_file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let explorer = match &opts.explore {
            Some(cfg) => Some(
                Explorer::new(cfg.clone(), base_dir)
                    .map_err(|e| ControlError::Explore(e.to_string()))?,
            ),
            None => None,
        };
        let loads = LoadModel::new(opts.load_defaults.clone(), opts.report_limits);
        let state = State::new(Arc::new(config), loads);
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            opts,
            state: Mutex::new(state),
            hub,
            explorer,
            wake: Notify::new(),
            reload_tx,
            ready: AtomicBool::new(false),
            started: Instant::now(),
        });
        let task = tokio::spawn(run(Arc::clone(&shared), discoverer, events, reload_rx));
        Ok(Coordinator { shared, task })
    }

    /// A cheap handle for other tasks (reload on SIGHUP, the scaler).
    pub fn handle(&self) -> Handle {
        Handle(Arc::clone(&self.shared))
    }

    /// The admin API's view of this coordinator.
    pub fn admin(
        &self,
        provider: Arc<crate::provider::ShardProvider>,
    ) -> Arc<dyn crate::admin::AdminControl> {
        Arc::new(admin_impl::AdminView::new(
            Arc::clone(&self.shared),
            provider,
        ))
    }

    /// Stops the loop (shards keep scraping their last assignment).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A clonable handle on the control loop.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    /// Reloads the config file.
    pub async fn reload(&self) -> Result<(), String> {
        request_reload(&self.0).await
    }

    /// Runs a planning round now.
    pub fn rebalance(&self) {
        self.0.wake.notify_one();
    }

    /// Marks a shard draining (nothing new; its targets move off by
    /// handover) or not.
    pub fn set_draining(&self, shard: &ShardId, draining: bool) {
        if let Some(s) = lock(&self.0.state).shards.get_mut(shard) {
            s.draining = draining;
        }
        self.0.wake.notify_one();
    }

    /// The shard count the load needs (last round's plan), if a round ran.
    pub fn desired_shards(&self) -> Option<usize> {
        lock(&self.0.state)
            .last_plan
            .as_ref()
            .map(|p| p.desired_shards)
    }

    /// Targets `shard` still scrapes: those assigned to it, and those
    /// handed over from it whose move is still in flight (the scaler waits
    /// for 0 before it stops a draining shard).
    pub fn targets_on(&self, shard: &ShardId) -> usize {
        let st = lock(&self.0.state);
        // A handover is finished once its start passed, even before the
        // next round clears it from `migrating`.
        let now = crate::util::unix_ms(SystemTime::now());
        st.assignment.values().filter(|s| *s == shard).count()
            + st.migrating
                .values()
                .filter(|m| &m.from == shard && m.start_at_ms > now)
                .count()
    }

    /// The last report of an attached shard (its WAL backlog tells the
    /// scaler when a drained shard has delivered everything).
    pub fn shard_report(&self, shard: &ShardId) -> Option<crate::hub::ReportSummary> {
        self.0.hub.shard(shard).and_then(|s| s.last_report)
    }

    /// Forgets a shard that was scaled away (its targets were drained).
    pub fn forget_shard(&self, shard: &ShardId) {
        lock(&self.0.state).shards.remove(shard);
    }

    /// The acknowledged assignment.
    pub fn assignment(&self) -> BTreeMap<TargetId, ShardId> {
        lock(&self.0.state).assignment.clone()
    }
}

async fn request_reload(shared: &Shared) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    shared
        .reload_tx
        .send(tx)
        .await
        .map_err(|_| "the control loop is not running".to_string())?;
    rx.await
        .map_err(|_| "the control loop stopped during the reload".to_string())?
}

fn spawn_discovery(d: Discoverer, tx: mpsc::Sender<Update>) -> JoinHandle<()> {
    tokio::spawn(d.run(tx))
}

async fn run(
    shared: Arc<Shared>,
    discoverer: Discoverer,
    mut events: mpsc::Receiver<HubEvent>,
    mut reloads: mpsc::Receiver<ReloadReply>,
) {
    let (disc_tx, mut disc_rx) = mpsc::channel::<Update>(256);
    let mut discovery = spawn_discovery(discoverer, disc_tx.clone());
    let (explored_tx, mut explored_rx) = mpsc::channel(1024);
    let started = Instant::now();
    let mut dirty = true;
    let mut next_round = Instant::now() + shared.opts.initial_wait;
    loop {
        let sleep_until = tokio::time::Instant::from_std(next_round);
        tokio::select! {
            Some(u) = disc_rx.recv() => {
                let mut st = lock(&shared.state);
                let changes = st.registry.apply(u);
                if !changes.is_empty() {
                    let State { registry, loads, .. } = &mut *st;
                    loads.sync(registry, &changes);
                    dirty = true;
                }
            }
            Some(ev) = events.recv() => {
                if on_hub_event(&shared, ev) {
                    dirty = true;
                }
            }
            Some(outcome) = explored_rx.recv() => {
                let outcome: crate::registry::ExploreOutcome = outcome;
                let mut st = lock(&shared.state);
                st.exploring.remove(&outcome.id);
                st.loads.record_explore_outcome(&outcome, SystemTime::now());
                dirty = true;
            }
            Some(reply) = reloads.recv() => {
                let result = reload(&shared, &mut discovery, &disc_tx).await;
                if result.is_ok() { dirty = true; }
                let _ = reply.send(result);
            }
            _ = shared.wake.notified() => {
                next_round = Instant::now();
                dirty = true;
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                if started.elapsed() >= shared.opts.initial_wait {
                    let mut st = lock(&shared.state);
                    if !st.discovery_ready {
                        st.discovery_ready = true;
                        tracing::info!(targets = st.registry.len(), shards = st.shards.len(), "initial discovery settled; planning starts");
                    }
                }
                if !lock(&shared.state).discovery_ready {
                    // Not yet: plan as soon as the initial wait is over.
                    next_round = started + shared.opts.initial_wait;
                    continue;
                }
                start_explores(&shared, &explored_tx);
                round(&shared).await;
                shared.ready.store(true, Ordering::Relaxed);
                dirty = false;
                next_round = Instant::now() + shared.opts.plan_interval;
                continue;
            }
        }
        if dirty {
            // Coalesce a burst of events into one round.
            let soon = Instant::now() + shared.opts.settle;
            if soon < next_round {
                next_round = soon;
            }
        }
    }
}

/// Applies one hub event; true when a round should follow.
fn on_hub_event(shared: &Arc<Shared>, ev: HubEvent) -> bool {
    match ev {
        HubEvent::Attached {
            shard,
            session,
            hello,
        } => {
            tracing::info!(shard = %shard, targets = hello.targets.len(), address = %hello.address, "shard attached");
            let jobs = {
                let mut st = lock(&shared.state);
                st.attach(&shard, session, &hello, shared.opts.default_capacity);
                job_definitions(&st.config, &BTreeSet::new())
            };
            let hub = shared.hub.clone();
            tokio::spawn(async move {
                if let Err(e) = hub.send_jobs(&shard, jobs).await {
                    tracing::warn!(shard = %shard, error = %e, "sending job definitions failed");
                }
            });
            true
        }
        HubEvent::Report { shard, report, .. } => {
            let mut st = lock(&shared.state);
            // Only what this shard scrapes (or is taking over) counts: a
            // broken or rogue shard must not set the load of targets it
            // does not have, which would steer the planner.
            let own: Vec<_> = report
                .targets
                .iter()
                .filter(|r| {
                    st.assignment.get(&r.target_id) == Some(&shard)
                        || st
                            .migrating
                            .get(&r.target_id)
                            .is_some_and(|m| m.from == shard || m.to == shard)
                })
                .collect();
            if own.len() < report.targets.len() {
                tracing::debug!(shard = %shard, ignored = report.targets.len() - own.len(), "report on targets the shard does not have ignored");
            }
            st.loads.ingest(own, SystemTime::now());
            if let Some(s) = st.shards.get_mut(&shard) {
                s.last_report = Some(SystemTime::now());
                s.reported = crate::model::Load {
                    series: report.total_series,
                    samples_per_second: report.total_samples_per_second,
                };
            }
            false
        }
        HubEvent::Detached {
            shard,
            session,
            reason,
        } => {
            tracing::warn!(shard = %shard, reason = reason.label(), "shard detached");
            let replaced = matches!(reason, crate::hub::DetachReason::Replaced);
            lock(&shared.state).detach(&shard, session, Instant::now(), replaced);
            true
        }
    }
}

/// The job definitions of `config` for the shards (`removed`: jobs gone
/// since the last ones sent).
fn job_definitions(config: &Config, removed: &BTreeSet<String>) -> JobDefinitions {
    JobDefinitions {
        jobs: config
            .scrape_configs
            .iter()
            .map(|sc| {
                let yaml = sc.original_yaml.as_str().to_string();
                JobDefinition {
                    job_name: sc.job_name.clone(),
                    config_hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(yaml.as_bytes())),
                    scrape_config_yaml: yaml,
                }
            })
            .collect(),
        removed_jobs: removed.iter().cloned().collect(),
        global_config_yaml: String::new(),
    }
}

async fn reload(
    shared: &Arc<Shared>,
    discovery: &mut JoinHandle<()>,
    disc_tx: &mpsc::Sender<Update>,
) -> Result<(), String> {
    let new = match load_file(&shared.opts.config_file) {
        Ok(c) => c,
        Err(e) => {
            lock(&shared.state).counters.reload_failures += 1;
            return Err(e.to_string());
        }
    };
    let discoverer = match Discoverer::new(&new) {
        Ok(d) => d,
        Err(e) => {
            lock(&shared.state).counters.reload_failures += 1;
            return Err(e.to_string());
        }
    };
    let (jobs, shards) = {
        let mut st = lock(&shared.state);
        let old: BTreeSet<String> = st
            .config
            .scrape_configs
            .iter()
            .map(|s| s.job_name.clone())
            .collect();
        let kept: BTreeSet<String> = new
            .scrape_configs
            .iter()
            .map(|s| s.job_name.clone())
            .collect();
        let removed: BTreeSet<String> = old.difference(&kept).cloned().collect();
        let changes = st.registry.set_config(&new);
        let State {
            registry, loads, ..
        } = &mut *st;
        loads.sync(registry, &changes);
        st.config = Arc::new(new);
        st.counters.reloads += 1;
        let shards: Vec<ShardId> = st
            .shards
            .values()
            .filter(|s| s.attached())
            .map(|s| s.id.clone())
            .collect();
        (job_definitions(&st.config, &removed), shards)
    };
    // The registry has the new config before its discoverer starts.
    discovery.abort();
    *discovery = spawn_discovery(discoverer, disc_tx.clone());
    for shard in shards {
        if let Err(e) = shared.hub.send_jobs(&shard, jobs.clone()).await {
            tracing::warn!(shard = %shard, error = %e, "sending job definitions after reload failed");
        }
    }
    tracing::info!(file = %shared.opts.config_file.display(), "config reloaded");
    Ok(())
}

/// Starts explores for new targets whose job has no history.
fn start_explores(shared: &Arc<Shared>, tx: &mpsc::Sender<crate::registry::ExploreOutcome>) {
    let Some(explorer) = shared.explorer.clone() else {
        return;
    };
    let todo: Vec<_> = {
        let mut st = lock(&shared.state);
        let now = Instant::now();
        let ids: Vec<TargetId> = st
            .registry
            .targets()
            .filter(|t| {
                !st.assignment.contains_key(&t.id)
                    && !st.exploring.contains_key(&t.id)
                    && explorer.enabled_for(&t.job)
                    && st.loads.needs_explore(t.id)
            })
            .map(|t| t.id)
            .collect();
        let mut todo = Vec::new();
        for id in ids {
            let Some(t) = st.registry.get(id).cloned() else {
                continue;
            };
            let Some(job) = st.registry.job_config(&t.job).cloned() else {
                continue;
            };
            st.exploring.insert(id, now);
            todo.push((t, job));
        }
        todo
    };
    for (t, job) in todo {
        let ex = explorer.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = ex.explore(&t, &job).await;
            let _ = tx.send(outcome).await;
        });
    }
}

/// One shard's delta of a round, and what it carries.
struct Outgoing {
    shard: ShardId,
    delta: AssignmentDelta,
}

/// What a round decided, computed under the lock.
#[derive(Default)]
struct RoundPlan {
    /// Phase 0: whole assignments.
    full: Vec<Outgoing>,
    /// Phase 1: additions (new targets, targets of gone shards, handover
    /// receivers).
    adds: Vec<Outgoing>,
    /// Removals of targets discovery dropped (with staleness markers).
    vanished: Vec<(TargetId, ShardId)>,
    /// Handovers: target -> migration.
    handovers: BTreeMap<TargetId, Migration>,
    /// Immediate placements: target -> shard.
    placements: BTreeMap<TargetId, ShardId>,
    reasons: BTreeMap<TargetId, MoveReason>,
}

fn next_delta(st: &State, shard: &ShardId) -> Option<AssignmentDelta> {
    let s = st.shards.get(shard)?;
    Some(AssignmentDelta {
        version: s.version + 1,
        base_version: s.version,
        full: false,
        add: Vec::new(),
        remove: Vec::new(),
    })
}

fn target_add(st: &State, id: TargetId, start_at_ms: i64) -> Option<TargetAdd> {
    let t = st.registry.get(id)?;
    Some(TargetAdd {
        target: Some(t.to_target().to_proto()),
        start_at_unix_ms: start_at_ms,
    })
}

/// The planner's answer for the state as it is: what a round would do
/// (the admin API's dry run shows exactly this). Targets mid-handover stay
/// out of `current` (their move is under way); rebalancing is held while
/// adopted targets have no reported load yet, for at most `report_wait`.
pub(crate) fn plan_now(
    shared: &Shared,
    st: &State,
    now: Instant,
) -> Result<planner::Plan, planner::PlanError> {
    let targets = st.plan_targets(now, shared.opts.explore_wait);
    let shards = st.plan_shards(now, shared.opts.shard_grace);
    let current: BTreeMap<TargetId, ShardId> = st
        .assignment
        .iter()
        .filter(|(t, _)| !st.migrating.contains_key(t))
        .map(|(t, s)| (*t, s.clone()))
        .collect();
    let mut config = shared.opts.planner.clone();
    if shared.started.elapsed() < shared.opts.report_wait
        && current
            .keys()
            .any(|t| st.loads.load_of(*t).1 != crate::registry::LoadSource::Reported)
    {
        config.move_budget = 0.0;
    }
    planner::plan(&PlanInput {
        targets: &targets,
        shards: &shards,
        current: &current,
        config: &config,
    })
}

/// Decides a round (under the lock).
fn decide(shared: &Shared, st: &mut State) -> RoundPlan {
    let now = Instant::now();
    let now_ms = unix_ms(SystemTime::now());
    let mut rp = RoundPlan::default();

    // Migrations whose start passed are done.
    st.migrating.retain(|_, m| m.start_at_ms > now_ms);

    // Phase 0: shards that need their whole assignment.
    let needs_full: Vec<ShardId> = st
        .shards
        .values()
        .filter(|s| s.live() && s.needs_full)
        .map(|s| s.id.clone())
        .collect();
    for shard in needs_full {
        let adds: Vec<TargetAdd> = st
            .targets_of(&shard)
            .into_iter()
            .filter_map(|t| target_add(st, t, 0))
            .collect();
        if let Some(mut delta) = next_delta(st, &shard) {
            delta.full = true;
            delta.add = adds;
            rp.full.push(Outgoing { shard, delta });
        }
    }

    // After phase 0 on purpose: a full assignment drops what it omits
    // without staleness markers, so targets that left discovery stay in
    // it and go in their own removal (with markers).
    rp.vanished = st.vanished();
    for (t, _) in &rp.vanished {
        st.assignment.remove(t);
        st.migrating.remove(t);
    }

    let plan = match plan_now(shared, st, now) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "planning failed");
            return rp;
        }
    };
    st.counters.rounds += 1;
    let lead = shared.opts.handover_lead.as_millis() as i64;
    let mut adds: BTreeMap<ShardId, Vec<TargetAdd>> = BTreeMap::new();
    for m in &plan.moves {
        // Targets of the migrating set are not in `current`: the planner
        // sees them as new; leave them until their handover completes.
        if st.migrating.contains_key(&m.target) {
            continue;
        }
        let from_live = m
            .from
            .as_ref()
            .and_then(|f| st.shards.get(f))
            .is_some_and(|s| s.live());
        let to_live = st.shards.get(&m.to).is_some_and(|s| s.live());
        if !to_live {
            // A shard in its grace period: nothing to send; it gets its
            // assignment when it comes back.
            if !from_live {
                rp.placements.insert(m.target, m.to.clone());
            }
            continue;
        }
        let start_at = if from_live { now_ms + lead } else { 0 };
        let Some(add) = target_add(st, m.target, start_at) else {
            continue;
        };
        adds.entry(m.to.clone()).or_default().push(add);
        rp.reasons.insert(m.target, m.reason);
        match (&m.from, from_live) {
            (Some(from), true) => {
                rp.handovers.insert(
                    m.target,
                    Migration {
                        from: from.clone(),
                        to: m.to.clone(),
                        start_at_ms: start_at,
                    },
                );
            }
            _ => {
                rp.placements.insert(m.target, m.to.clone());
            }
        }
    }
    // A shard in phase 0 gets its additions in a later delta (versions
    // are sequential per shard).
    for (shard, add) in adds {
        let Some(mut delta) = next_delta(st, &shard) else {
            continue;
        };
        if rp.full.iter().any(|o| o.shard == shard) {
            delta.version += 1;
            delta.base_version += 1;
        }
        delta.add = add;
        rp.adds.push(Outgoing { shard, delta });
    }
    // Placements on shards in grace are believed at once.
    for (t, s) in &rp.placements {
        if !st.shards.get(s).is_some_and(|x| x.attached()) {
            st.assignment.insert(*t, s.clone());
        }
    }
    st.last_plan = Some(plan);
    rp
}

/// Removes from phase 1 the handovers whose start is less than half the
/// lead away (phase 0 may have waited on a slow shard): too little time
/// is left to acknowledge both sides and still cancel before the start.
/// The planner proposes them again next round.
fn drop_late_handovers(shared: &Shared, rp: &mut RoundPlan) {
    let now_ms = unix_ms(SystemTime::now());
    let half_lead = shared.opts.handover_lead.as_millis() as i64 / 2;
    let late: BTreeSet<TargetId> = rp
        .handovers
        .iter()
        .filter(|(_, m)| m.start_at_ms - now_ms < half_lead)
        .map(|(t, _)| *t)
        .collect();
    if late.is_empty() {
        return;
    }
    tracing::warn!(
        handovers = late.len(),
        "handovers postponed: their start came too close before they were sent"
    );
    for t in &late {
        rp.handovers.remove(t);
        rp.reasons.remove(t);
    }
    for o in &mut rp.adds {
        o.delta
            .add
            .retain(|a| a.target.as_ref().is_none_or(|t| !late.contains(&t.id)));
    }
    rp.adds.retain(|o| !o.delta.add.is_empty());
}

/// The ack deadline of a phase carrying handovers: half the time left
/// before the earliest start, so that a missed ack still leaves time to
/// cancel. `None` (the hub's ack timeout) when the round has no handover.
fn handover_ack_deadline(handovers: &BTreeMap<TargetId, Migration>) -> Option<Duration> {
    let start = handovers.values().map(|m| m.start_at_ms).min()?;
    let left = start - unix_ms(SystemTime::now());
    Some(Duration::from_millis((left / 2).max(1) as u64))
}

/// Sends deltas in parallel; returns each shard's outcome (true = applied).
async fn send_all(
    shared: &Arc<Shared>,
    out: Vec<Outgoing>,
    timeout: Option<Duration>,
) -> Vec<(
    ShardId,
    AssignmentDelta,
    Result<crate::hub::AckOutcome, String>,
)> {
    let mut tasks = tokio::task::JoinSet::new();
    for o in out {
        let hub = shared.hub.clone();
        tasks.spawn(async move {
            let r = match timeout {
                Some(t) => hub.send_delta_within(&o.shard, o.delta.clone(), t).await,
                None => hub.send_delta(&o.shard, o.delta.clone()).await,
            }
            .map_err(|e| e.to_string());
            (o.shard, o.delta, r)
        });
    }
    let mut results = Vec::new();
    while let Some(j) = tasks.join_next().await {
        if let Ok(r) = j {
            results.push(r);
        }
    }
    results
}

/// Records a delta's outcome on its shard; the ids it applied.
fn settle(
    st: &mut State,
    shard: &ShardId,
    delta: &AssignmentDelta,
    r: &Result<crate::hub::AckOutcome, String>,
) -> Option<BTreeSet<TargetId>> {
    match r {
        Ok(ack) if ack.ok => {
            if let Some(s) = st.shards.get_mut(shard) {
                s.unacked_deltas = 0;
                s.version = s.version.max(delta.version);
                if delta.full {
                    s.needs_full = false;
                }
            }
            let rejected: BTreeSet<TargetId> = ack.rejected_target_ids.iter().copied().collect();
            if !rejected.is_empty() {
                tracing::warn!(shard = %shard, rejected = rejected.len(), error = %ack.error, "shard rejected targets");
            }
            let ids = delta
                .add
                .iter()
                .filter_map(|a| a.target.as_ref().map(|t| t.id))
                .chain(delta.remove.iter().map(|r| r.target_id))
                .filter(|id| !rejected.contains(id))
                .collect();
            Some(ids)
        }
        Ok(ack) => {
            tracing::warn!(shard = %shard, version = delta.version, error = %ack.error, "shard refused a delta; it gets its whole assignment next");
            st.counters.delta_failures += 1;
            if let Some(s) = st.shards.get_mut(shard) {
                s.unacked_deltas = 0;
                s.needs_full = true;
            }
            None
        }
        Err(e) => {
            st.counters.delta_failures += 1;
            if let Some(s) = st.shards.get_mut(shard) {
                s.needs_full = true;
                s.unacked_deltas = s.unacked_deltas.saturating_add(1);
                if s.unacked_deltas == 1 && s.attached() {
                    tracing::warn!(shard = %shard, version = delta.version, error = %e, "delta not acknowledged; the shard takes nothing and its targets go elsewhere until it acknowledges again");
                    return None;
                }
            }
            tracing::warn!(shard = %shard, version = delta.version, error = %e, "delta not acknowledged");
            None
        }
    }
}

/// A handover the receiver acknowledged and the giver confirmed (or
/// cannot be asked): the target belongs to the receiver from now on, and
/// is in flight until its start.
fn commit_handover(
    st: &mut State,
    reasons: &BTreeMap<TargetId, MoveReason>,
    target: TargetId,
    m: &Migration,
) {
    st.assignment.insert(target, m.to.clone());
    st.migrating.insert(target, m.clone());
    let reason = reasons.get(&target).map_or("rebalance", |r| r.as_str());
    *st.counters.moves.entry(reason).or_default() += 1;
}

/// One planning round: decide under the lock, send outside it.
async fn round(shared: &Arc<Shared>) {
    let mut rp = {
        let mut st = lock(&shared.state);
        decide(shared, &mut st)
    };
    // Phase 0. A shard that did not apply its whole assignment gets no
    // additions this round: their delta's base is the version it did not
    // reach (it would refuse it), and an unresponsive shard must not hold
    // the round up again; the planner places them next round.
    let mut not_full = BTreeSet::new();
    for (shard, delta, r) in send_all(shared, std::mem::take(&mut rp.full), None).await {
        let mut st = lock(&shared.state);
        if settle(&mut st, &shard, &delta, &r).is_none() {
            not_full.insert(shard);
        }
    }
    rp.adds.retain(|o| !not_full.contains(&o.shard));
    // Removals of vanished targets ride with phase 1 of their shard when
    // possible; simplest: their own deltas now.
    let mut removals: BTreeMap<ShardId, Vec<TargetRemove>> = BTreeMap::new();
    for (t, s) in &rp.vanished {
        removals.entry(s.clone()).or_default().push(TargetRemove {
            target_id: *t,
            stop_after_unix_ms: 0,
            handover: false,
        });
    }
    // Phase 1: additions. Handovers whose start came too close while
    // phase 0 waited are left for the next round; the others' acks must
    // come in time for a cancellation to reach the receiver before start.
    drop_late_handovers(shared, &mut rp);
    let phase1_deadline = handover_ack_deadline(&rp.handovers);
    let phase1 = send_all(shared, rp.adds, phase1_deadline).await;
    let mut handed: BTreeMap<ShardId, Vec<TargetRemove>> = BTreeMap::new();
    {
        let mut st = lock(&shared.state);
        for (shard, delta, r) in &phase1 {
            let Some(applied) = settle(&mut st, shard, delta, r) else {
                continue;
            };
            for id in applied {
                if let Some(m) = rp.handovers.get(&id) {
                    handed
                        .entry(m.from.clone())
                        .or_default()
                        .push(TargetRemove {
                            target_id: id,
                            stop_after_unix_ms: m.start_at_ms - 1,
                            handover: true,
                        });
                } else if rp.placements.get(&id) == Some(shard) {
                    st.assignment.insert(id, shard.clone());
                    let reason = rp.reasons.get(&id).map_or("new", |r| r.as_str());
                    *st.counters.moves.entry(reason).or_default() += 1;
                }
            }
        }
    }
    // Phase 2: the giving shards stop (and vanished targets go).
    for (shard, rm) in handed {
        removals.entry(shard).or_default().extend(rm);
    }
    let phase2: Vec<Outgoing> = {
        let mut st = lock(&shared.state);
        removals
            .into_iter()
            .filter_map(|(shard, remove)| {
                // An unresponsive shard (it stopped acking during phase 1)
                // would hold the round up to the ack timeout; its probe (a
                // full assignment, without these targets) carries the
                // removal instead. Its handovers are committed: the
                // receiver acknowledged and starts at `start_at`.
                if let Some(s) = st.shards.get_mut(&shard)
                    && !s.live()
                {
                    s.needs_full = true;
                    for rm in &remove {
                        if let Some(m) = rp.handovers.get(&rm.target_id) {
                            commit_handover(&mut st, &rp.reasons, rm.target_id, m);
                        }
                    }
                    return None;
                }
                let mut delta = next_delta(&st, &shard)?;
                delta.remove = remove;
                Some(Outgoing { shard, delta })
            })
            .collect()
    };
    let phase2_deadline = handover_ack_deadline(&rp.handovers);
    let phase2 = send_all(shared, phase2, phase2_deadline).await;
    let mut cancel: BTreeMap<ShardId, Vec<TargetRemove>> = BTreeMap::new();
    {
        let mut st = lock(&shared.state);
        for (shard, delta, r) in &phase2 {
            let applied = settle(&mut st, shard, delta, r).unwrap_or_default();
            for rm in &delta.remove {
                let Some(m) = rp.handovers.get(&rm.target_id) else {
                    continue;
                };
                if applied.contains(&rm.target_id) {
                    commit_handover(&mut st, &rp.reasons, rm.target_id, m);
                } else {
                    // The giving shard did not confirm: the move is
                    // cancelled; the receiver must not start.
                    st.counters.moves_cancelled += 1;
                    cancel.entry(m.to.clone()).or_default().push(TargetRemove {
                        target_id: rm.target_id,
                        stop_after_unix_ms: m.start_at_ms - 1,
                        handover: true,
                    });
                }
            }
        }
    }
    if !cancel.is_empty() {
        let out: Vec<Outgoing> = {
            let st = lock(&shared.state);
            cancel
                .into_iter()
                .filter_map(|(shard, remove)| {
                    let mut delta = next_delta(&st, &shard)?;
                    delta.remove = remove;
                    Some(Outgoing { shard, delta })
                })
                .collect()
        };
        for (shard, delta, r) in send_all(shared, out, None).await {
            let mut st = lock(&shared.state);
            settle(&mut st, &shard, &delta, &r);
        }
    }
    probe_unresponsive(shared);
}

/// Sends each attached shard that stopped acknowledging its whole
/// (current) assignment in the background, one probe at a time per shard:
/// no round waits on it, and its ack makes the shard live again.
fn probe_unresponsive(shared: &Arc<Shared>) {
    let probes: Vec<Outgoing> = {
        let mut st = lock(&shared.state);
        let ids: Vec<ShardId> = st
            .shards
            .values()
            .filter(|s| s.attached() && !s.live() && !s.probing)
            .map(|s| s.id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|shard| {
                let add: Vec<TargetAdd> = st
                    .targets_of(&shard)
                    .into_iter()
                    .filter_map(|t| target_add(&st, t, 0))
                    .collect();
                let mut delta = next_delta(&st, &shard)?;
                delta.full = true;
                delta.add = add;
                if let Some(s) = st.shards.get_mut(&shard) {
                    s.probing = true;
                }
                Some(Outgoing { shard, delta })
            })
            .collect()
    };
    for o in probes {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let r = shared
                .hub
                .send_delta(&o.shard, o.delta.clone())
                .await
                .map_err(|e| e.to_string());
            let live = {
                let mut st = lock(&shared.state);
                settle(&mut st, &o.shard, &o.delta, &r);
                match st.shards.get_mut(&o.shard) {
                    Some(s) => {
                        s.probing = false;
                        s.live()
                    }
                    None => false,
                }
            };
            if live {
                tracing::info!(shard = %o.shard, "shard acknowledges again; it takes targets");
                shared.wake.notify_one();
            }
        });
    }
}
