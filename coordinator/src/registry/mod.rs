//! The coordinator's view of the targets: what discovery and relabeling
//! produce, and how heavy each target is.
//!
//! - [`targets`]: the [`Registry`] of current targets by stable id, fed by
//!   discovery [`Update`](promshard_promlib::discovery::Update)s and the
//!   config; every apply returns the ids added and removed
//!   ([`Changes`]). It keeps each job's groups itself (as promlib's
//!   `TargetSets` does), so a reload can re-run relabeling on them.
//! - [`load`]: the [`LoadModel`]: per-target load from the shards' live
//!   reports (validated), with fallbacks for targets without history (job
//!   median, explore estimate, configured default) and the source of each
//!   figure ([`LoadSource`]).
//! - [`explore`]: the [`Explorer`]: one real scrape by the coordinator to
//!   estimate a target's load when its job has no history, with bounded
//!   concurrency, a timeout and retries with backoff.
//!
//! The control loop glues them together:
//!
//! ```text
//! changes = registry.apply(update)          // or set_config(&cfg) on reload
//! model.sync(&registry, &changes)           // track added, forget removed
//! for id in changes.added where model.needs_explore(id) and explorer.enabled_for(job):
//!     spawn explorer.explore(target, job_cfg) -> model.record_explore(id, result, now)
//! on each shard Report: model.ingest(&report.targets, now)
//! planner input: model.load_of(id) for every registry id
//! ```

pub mod explore;
pub mod load;
pub mod targets;

pub use explore::{
    ExploreConfig, ExploreConfigError, ExploreError, ExploreOutcome, ExploreStats, Explorer,
};
pub use load::{
    ExploreRecord, LoadDefaults, LoadModel, LoadSource, Observed, RejectReason, ReportLimits,
    ReportOutcome, median,
};
pub use targets::{Changes, DroppedTarget, PopulateFailure, RegisteredTarget, Registry};
