//! [`Backend`]: what the agent needs from whatever scrapes (the native
//! collector in-process, or a Prometheus / vmagent next to the sidecar).

use std::collections::BTreeMap;
use std::future::Future;

use promshard_proto::v1;

/// A target of a delta that the backend did not take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// 0 when the delta's entry had no target at all.
    pub target_id: u64,
    pub reason: String,
}

/// What applying one assignment delta did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaOutcome {
    /// Targets not taken; every other entry of the delta was applied.
    pub rejected: Vec<Rejected>,
}

/// What applying job definitions did. Jobs not named here were applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobsOutcome {
    /// Job name -> why its definition was refused (a job that was running
    /// keeps its previous definition).
    pub job_errors: BTreeMap<String, String>,
    /// Why the coordinator's global config was refused (the previous one
    /// stays in force).
    pub global_error: Option<String>,
}

impl JobsOutcome {
    pub fn is_ok(&self) -> bool {
        self.job_errors.is_empty() && self.global_error.is_none()
    }
}

/// A backend that can no longer do anything (it shut down).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the backend is shutting down")]
    ShuttingDown,
}

/// What the agent drives. Every method is safe to call at any time and
/// never panics on bad input: refusals come back as values.
pub trait Backend: Send + Sync + 'static {
    /// The kind announced in Hello.
    fn kind(&self) -> v1::BackendKind;

    /// The targets assigned to this shard and scraped now (for Hello):
    /// added and not removed, sorted by id.
    fn current_targets(&self) -> impl Future<Output = Vec<v1::Target>> + Send;

    /// Config hash of each job definition in force, by job name.
    fn job_config_hashes(&self) -> impl Future<Output = BTreeMap<String, String>> + Send;

    /// Applies job definitions (added or changed jobs, removed jobs, the
    /// global config). Targets of a removed job stop with staleness markers.
    fn apply_jobs(
        &self,
        defs: v1::JobDefinitions,
    ) -> impl Future<Output = Result<JobsOutcome, BackendError>> + Send;

    /// Applies one assignment delta (the agent has checked its version).
    /// `full`: the adds are the whole assignment; every other target is
    /// dropped without staleness markers.
    fn apply_delta(
        &self,
        delta: &v1::AssignmentDelta,
    ) -> impl Future<Output = Result<DeltaOutcome, BackendError>> + Send;

    /// Per-target load and shard totals now.
    fn report(&self) -> impl Future<Output = v1::Report> + Send;
}
