//! The JSON the admin API answers with. Target lists keep Prometheus'
//! `GET /api/v1/targets` shape (so existing tooling reads them) and add
//! where each target runs and how heavy it is.

use promshard_promlib::api::{ActiveTarget, DroppedTarget};
use serde::{Deserialize, Serialize};

use crate::model::Capacity;

/// Where a target stands in the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// On a shard, scraped.
    Assigned,
    /// Not on any shard (no shard attached yet, or its shard is gone and
    /// the move is pending).
    Unassigned,
    /// Moving between shards (a handover in flight).
    Migrating,
    /// Larger than one shard's capacity: on a shard of its own.
    Oversized,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Assigned => "assigned",
            TargetState::Unassigned => "unassigned",
            TargetState::Migrating => "migrating",
            TargetState::Oversized => "oversized",
        }
    }
}

/// One entry of `activeTargets`: Prometheus' fields plus the coordinator's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorTarget {
    #[serde(flatten)]
    pub target: ActiveTarget,
    /// The target's stable id (hex).
    pub id: String,
    pub shard: Option<String>,
    pub series: u64,
    pub samples_per_second: f64,
    /// Where the load figure comes from: reported, job_median, explored,
    /// default.
    pub load_source: String,
    pub state: TargetState,
}

/// The `data` of `GET /api/v1/targets`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorTargets {
    pub active_targets: Vec<CoordinatorTarget>,
    pub dropped_targets: Vec<DroppedTarget>,
}

/// One entry of `GET /api/v1/shards`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardView {
    pub id: String,
    pub address: String,
    /// native, prometheus or vmagent.
    pub backend: String,
    pub capacity: Capacity,
    /// The larger of series/max_series and samples/s over their maximum.
    pub utilization: f64,
    pub series: u64,
    pub samples_per_second: f64,
    pub targets: usize,
    /// up (attached and reporting), down (detached or silent), draining.
    pub health: String,
    /// RFC 3339, empty before the first report.
    pub last_report: String,
    pub assignment_version: u64,
}

/// One planned move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveView {
    pub target: String,
    pub job: String,
    pub from: Option<String>,
    pub to: String,
    pub series: u64,
    pub reason: String,
}

/// `GET /api/v1/plan` and `POST /api/v1/rebalance`: what the planner
/// would do (or now does).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub moves: Vec<MoveView>,
    pub oversized: Vec<String>,
    pub unassigned: Vec<String>,
    pub imbalance: f64,
    pub desired_shards: usize,
}

/// `GET /api/v1/scale`: the shard count, for external autoscalers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleView {
    pub current_shards: usize,
    pub desired_shards: usize,
    pub min_shards: usize,
    pub max_shards: usize,
    /// local, static (or a future kubernetes provider).
    pub provider: String,
    /// The utilization the desired count is sized for.
    pub target_utilization: f64,
    /// Shards being drained (a scale-in under way).
    pub draining: Vec<String>,
}
