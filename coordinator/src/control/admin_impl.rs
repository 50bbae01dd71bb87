//! The admin API's view of the control loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use promshard_promlib::api::{ActiveTarget, DroppedTarget};

use super::{Shared, request_reload};
use crate::admin::{
    AdminControl, BoxFuture, CoordinatorTarget, CoordinatorTargets, MoveView, PlanView, ScaleView,
    ShardView, TargetState,
};
use crate::planner::Plan;
use crate::provider::ShardProvider;
use crate::util::{lock, unix_ms};

pub(crate) struct AdminView {
    shared: Arc<Shared>,
    provider: Arc<ShardProvider>,
}

impl AdminView {
    pub(crate) fn new(shared: Arc<Shared>, provider: Arc<ShardProvider>) -> Self {
        AdminView { shared, provider }
    }

    /// The planner's answer for the current state, not applied.
    fn dry_run(&self) -> Option<(Plan, BTreeMap<u64, String>)> {
        let st = lock(&self.shared.state);
        let plan = super::plan_now(&self.shared, &st, Instant::now()).ok()?;
        let jobs = plan
            .moves
            .iter()
            .filter_map(|m| st.registry.get(m.target).map(|t| (m.target, t.job.clone())))
            .collect();
        Some((plan, jobs))
    }
}

fn plan_view(plan: &Plan, jobs: &BTreeMap<u64, String>) -> PlanView {
    PlanView {
        moves: plan
            .moves
            .iter()
            .map(|m| MoveView {
                target: format!("{:016x}", m.target),
                job: jobs.get(&m.target).cloned().unwrap_or_default(),
                from: m.from.as_ref().map(|s| s.0.clone()),
                to: m.to.0.clone(),
                series: m.series,
                reason: m.reason.as_str().to_string(),
            })
            .collect(),
        oversized: plan.oversized.iter().map(|t| format!("{t:016x}")).collect(),
        unassigned: plan
            .unassigned
            .iter()
            .map(|t| format!("{t:016x}"))
            .collect(),
        imbalance: plan.imbalance,
        desired_shards: plan.desired_shards,
    }
}

impl AdminControl for AdminView {
    fn targets(&self) -> CoordinatorTargets {
        let st = lock(&self.shared.state);
        let oversized = st
            .last_plan
            .as_ref()
            .map(|p| p.oversized.clone())
            .unwrap_or_default();
        let mut active = Vec::with_capacity(st.registry.len());
        for t in st.registry.targets() {
            let Some(cfg) = st.registry.job_config(&t.job) else {
                continue;
            };
            let (load, source) = st.loads.load_of(t.id);
            let shard = st.assignment.get(&t.id).map(|s| s.0.clone());
            let state = if st.migrating.contains_key(&t.id) {
                TargetState::Migrating
            } else if shard.is_none() {
                TargetState::Unassigned
            } else if oversized.contains(&t.id) {
                TargetState::Oversized
            } else {
                TargetState::Assigned
            };
            let mut view = ActiveTarget::unscraped(&t.to_target(), cfg);
            view.scrape_url = promshard_promlib::scrape::redact_url(&view.scrape_url);
            view.global_url = view.scrape_url.clone();
            active.push(CoordinatorTarget {
                target: view,
                id: format!("{:016x}", t.id),
                shard,
                series: load.series,
                samples_per_second: load.samples_per_second,
                load_source: source.as_str().to_string(),
                state,
            });
        }
        let dropped = st
            .registry
            .dropped()
            .into_iter()
            .map(|d| DroppedTarget {
                discovered_labels: d.discovered_labels,
            })
            .collect();
        CoordinatorTargets {
            active_targets: active,
            dropped_targets: dropped,
        }
    }

    fn shards(&self) -> Vec<ShardView> {
        let st = lock(&self.shared.state);
        let loads = st.shard_loads();
        st.shards
            .values()
            .map(|s| {
                let (load, targets) = loads.get(&s.id).copied().unwrap_or_default();
                let health = if s.draining {
                    "draining"
                } else if s.contested(Instant::now()) {
                    "contested"
                } else if s.attached() && !s.live() {
                    "unresponsive"
                } else if s.attached() {
                    "up"
                } else {
                    "down"
                };
                ShardView {
                    id: s.id.0.clone(),
                    address: s.address.clone(),
                    backend: s.backend.clone(),
                    capacity: s.capacity,
                    utilization: s.capacity.utilization(load),
                    series: load.series,
                    samples_per_second: load.samples_per_second,
                    targets,
                    health: health.to_string(),
                    last_report: s
                        .last_report
                        .map(|t| promshard_promlib::api::rfc3339_ms(unix_ms(t)))
                        .unwrap_or_default(),
                    assignment_version: s.version,
                }
            })
            .collect()
    }

    fn plan(&self) -> PlanView {
        self.dry_run()
            .map(|(p, jobs)| plan_view(&p, &jobs))
            .unwrap_or_default()
    }

    fn rebalance(&self) -> PlanView {
        let view = self.plan();
        self.shared.wake.notify_one();
        view
    }

    fn scale(&self) -> ScaleView {
        let st = lock(&self.shared.state);
        let cfg = &self.shared.opts.planner;
        ScaleView {
            current_shards: st.shards.values().filter(|s| s.attached()).count(),
            desired_shards: st.last_plan.as_ref().map_or(0, |p| p.desired_shards),
            min_shards: cfg.min_shards,
            max_shards: cfg.max_shards,
            provider: self.provider.kind().to_string(),
            target_utilization: cfg.target_utilization,
            draining: st
                .shards
                .values()
                .filter(|s| s.draining)
                .map(|s| s.id.0.clone())
                .collect(),
        }
    }

    fn config_yaml(&self) -> String {
        let config = Arc::clone(&lock(&self.shared.state).config);
        // Secrets serialize as `<secret>`.
        serde_saphyr::to_string(&*config)
            .unwrap_or_else(|e| format!("# cannot show the config: {e}\n"))
    }

    fn reload(&self) -> BoxFuture<Result<(), String>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { request_reload(&shared).await })
    }

    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        super::metrics::render(&self.shared, &self.provider)
    }
}
