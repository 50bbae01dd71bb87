//! The sample pipeline of one target, in Prometheus 2.42's order: parse ->
//! honor_labels / honor_timestamps -> target labels ->
//! metric_relabel_configs -> limits -> series cache (keyed by the raw
//! series bytes, so a series seen before skips label work) -> staleness ->
//! synthetic series -> external_labels -> an [`AppendBatch`].
//!
//! SKELETON: the signatures are the contract between the scrape loops and
//! the pipeline; bodies are being written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use promshard_promlib::config::ScrapeConfig;
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::RelabelConfig;

use crate::series::{AppendBatch, SeriesDef, SeriesRef};

/// Hands out series refs unique in this collector process and above every
/// ref in the WAL (start it at `Wal::next_series_ref()`).
#[derive(Debug)]
pub struct RefAllocator(AtomicU64);

impl RefAllocator {
    pub fn new(first: u64) -> Self {
        RefAllocator(AtomicU64::new(first))
    }

    pub fn next(&self) -> SeriesRef {
        SeriesRef(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// What the pipeline needs from a job's scrape_config and the global
/// section, computed once per config version.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// 0: no limit (as in Prometheus).
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// `global.external_labels`: added to every series that lacks the name.
    pub external_labels: Labels,
}

impl JobSettings {
    /// From a scrape config whose defaults are filled (as `config::load_*`
    /// returns it) and the global external labels.
    pub fn new(cfg: &ScrapeConfig, external_labels: &Labels) -> Self {
        JobSettings {
            job_name: cfg.job_name.clone(),
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            metric_relabel_configs: cfg.metric_relabel_configs.clone(),
            sample_limit: cfg.sample_limit.unwrap_or(0),
            label_limit: cfg.label_limit.unwrap_or(0),
            label_name_length_limit: cfg.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: cfg.label_value_length_limit.unwrap_or(0),
            external_labels: external_labels.clone(),
        }
    }
}

/// The outcome of one scrape (or of a failed one) for the target's status
/// and the coordinator's load model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScrapeReport {
    /// `None`: up=1. `Some(reason)`: up=0 and why (parse error with line,
    /// sample limit, label limit, the scrape error given to
    /// [`TargetPipeline::on_failure`]).
    pub error: Option<String>,
    /// `scrape_samples_scraped`.
    pub samples_scraped: u64,
    /// `scrape_samples_post_metric_relabeling`.
    pub samples_post_relabel: u64,
    /// `scrape_series_added`.
    pub series_added: u64,
    /// Series this target currently has (after relabeling, without the
    /// synthetic ones).
    pub series: u64,
}

/// The pipeline of one target. Owned by its scrape loop; not shared.
pub struct TargetPipeline {
    _private: (),
}

impl TargetPipeline {
    /// `target_labels`: the target's public labels (final labels without
    /// `__*`), attached to every sample as Prometheus does.
    pub fn new(settings: Arc<JobSettings>, target_labels: Labels, refs: Arc<RefAllocator>) -> Self {
        let _ = (settings, target_labels, refs);
        todo!("pipeline")
    }

    /// A reload changed the job's settings (not the target): keep the
    /// series seen (so staleness keeps working across the reload), but
    /// forget cached relabeling results.
    pub fn set_settings(&mut self, settings: Arc<JobSettings>) {
        let _ = settings;
        todo!("pipeline")
    }

    /// A scrape that returned `body` (`format` from its Content-Type),
    /// started at `ts_ms` and took `duration`. Appends samples, stale
    /// markers for series that disappeared, and the synthetic series;
    /// a parse error or an exceeded limit makes it a failed scrape as in
    /// Prometheus (no samples from the body, stale markers for every
    /// series of the previous scrape, up=0).
    pub fn on_scrape(
        &mut self,
        body: &[u8],
        format: Format,
        ts_ms: i64,
        duration: Duration,
        out: &mut AppendBatch,
    ) -> ScrapeReport {
        let _ = (body, format, ts_ms, duration, out);
        todo!("pipeline")
    }

    /// A scrape that failed before a body was read (connection error,
    /// timeout, HTTP status, body too large): up=0, stale markers for every
    /// series of the previous scrape.
    pub fn on_failure(
        &mut self,
        error: &str,
        ts_ms: i64,
        duration: Duration,
        out: &mut AppendBatch,
    ) -> ScrapeReport {
        let _ = (error, ts_ms, duration, out);
        todo!("pipeline")
    }

    /// The target stops being scraped. `handover == false`: stale markers
    /// at `ts_ms` for every series of the last scrape and for the
    /// synthetic series (the target left service discovery).
    /// `handover == true`: nothing (another shard continues the series).
    pub fn on_stop(&mut self, ts_ms: i64, handover: bool, out: &mut AppendBatch) {
        let _ = (ts_ms, handover, out);
        todo!("pipeline")
    }

    /// The WAL refused `batch` with `UnknownSeries` (it forgot a series
    /// idle for many segments): add to `batch.series` a definition for
    /// every ref its samples use that it does not define, so that an
    /// append of the same batch succeeds.
    pub fn define_all(&self, batch: &mut AppendBatch) {
        let _ = batch;
        todo!("pipeline")
    }

    /// Definitions of the series the pipeline currently knows (for tests
    /// and the API).
    pub fn known_series(&self) -> Vec<SeriesDef> {
        todo!("pipeline")
    }
}
