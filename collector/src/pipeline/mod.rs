//! The sample pipeline of one target, in Prometheus 2.42's order: parse ->
//! honor_labels / honor_timestamps -> target labels ->
//! metric_relabel_configs -> limits -> series cache (keyed by the raw
//! series bytes, so a series seen before skips label work) -> staleness ->
//! synthetic series -> external_labels -> an [`AppendBatch`].
//!
//! Modules: [`raw_cache`] (raw bytes -> series), [`series_table`] (refs,
//! definitions, last timestamps), [`labels`] (target and external labels),
//! [`limits`], [`staleness`], [`report`] (synthetic series), [`metadata`].
//!
//! Checked sample for sample against the real Prometheus 2.42 agent by
//! `collector/tests/pipeline_differential.rs`. Deliberate divergences (each
//! asserted there):
//! - A series first seen in a scrape that fails (parse error, limit) is
//!   delivered by later scrapes; the agent loses it for good (its appender
//!   rollback leaves the series in memory without a WAL record).
//! - Within one scrape, a sample (or stale marker) before its series'
//!   previous sample is skipped; the agent writes it, but remote write
//!   requires each series' samples in timestamp order. Equal timestamps
//!   are written, as the agent does.
//! - Staleness is tracked per final series; Prometheus tracks the scraped
//!   label set, and marks a live series stale when two scraped sets become
//!   one series through relabeling.

mod error;
mod label_pool;
mod labels;
mod limits;
mod metadata;
mod raw_cache;
mod report;
mod series_table;
mod staleness;

pub use error::ScrapeFailure;
pub use report::SYNTHETIC_NAMES;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use promshard_promlib::config::ScrapeConfig;
use promshard_promlib::exposition::{Entry, Format, ParseErrorKind, Parser};
use promshard_promlib::labels::{Labels, METRIC_NAME, is_valid_label_name, is_valid_metric_name};
use promshard_promlib::relabel::{self, RelabelConfig};

use crate::series::{AppendBatch, Sample, SeriesDef, SeriesRef};
use labels::external::apply_external;
use labels::target_labels::apply_target_labels;
use limits::{LabelLimits, over_sample_limit};
pub use metadata::FamilyInterner;
use metadata::MetadataCache;
use raw_cache::{RawCache, Resolved};
use report::{ReportSeries, ReportValues};
use series_table::SeriesTable;

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

/// Gives back most of what a vector grew past its contents (growth
/// doubles capacity; a target's series set is mostly stable, so the slack
/// of its first scrapes would be held for good).
pub(crate) fn trim<T>(v: &mut Vec<T>) {
    let len = v.len();
    if v.capacity() > len + len / 4 + 16 {
        v.shrink_to(len + len / 8);
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
    /// The metric family metadata of the job's targets, held once.
    pub families: Arc<FamilyInterner>,
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
            families: Arc::default(),
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
    /// Samples written at the same timestamp as their series' previous
    /// sample (the same series twice in one body, or an explicit timestamp
    /// repeated): the agent writes them, and so does the pipeline.
    pub duplicates: u64,
    /// Samples skipped because their explicit timestamp is before the
    /// series' last sample (of an earlier scrape, as the agent, or earlier
    /// in the same body, which the agent would write out of order).
    pub out_of_order: u64,
    /// Samples skipped because their explicit timestamp is more than 10
    /// minutes after the scrape (Prometheus' out-of-bounds check).
    pub out_of_bounds: u64,
    /// Stale markers written for series of the previous scrape.
    pub stale_markers: u64,
}

/// How far after the scrape an explicit timestamp may be (Prometheus'
/// `maxAheadTime`).
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;
/// Table entries unseen for this many scrapes are forgotten (one more than
/// needed to write their stale marker, so `define_all` still finds them).
const TABLE_KEEP_ITERATIONS: u32 = 2;

/// A sample accepted while parsing, written only if the scrape succeeds.
#[derive(Clone, Copy, Debug)]
struct Pending {
    slot: u32,
    ts: i64,
    value: f64,
}

/// Counts of a body's first pass.
#[derive(Default)]
struct ParseCounts {
    total: u64,
    added: u64,
    /// Raw series not in the cache whose sample was taken, before the
    /// sample limit was hit (`scrape_series_added`).
    series_added: u64,
    /// Refused: before the series' last committed sample.
    out_of_order: u64,
    /// Refused: more than 10 minutes ahead of the scrape.
    out_of_bounds: u64,
}

/// The pipeline of one target. Owned by its scrape loop; not shared.
pub struct TargetPipeline {
    settings: Arc<JobSettings>,
    limits: LabelLimits,
    target_labels: Labels,
    refs: Arc<RefAllocator>,
    cache: RawCache,
    table: SeriesTable,
    metadata: MetadataCache,
    report: Option<ReportSeries>,
    /// Incremented by every scrape, failed or not (from 1; 32 bits keep
    /// the per-series iterations small, and wrap after 2^32 scrapes).
    iter: u32,
    /// Samples the last scrape took (the next one's capacity hint).
    last_pending_len: usize,
}

fn label_limits(s: &JobSettings) -> LabelLimits {
    LabelLimits {
        label_limit: s.label_limit,
        name_length: s.label_name_length_limit,
        value_length: s.label_value_length_limit,
    }
}

impl TargetPipeline {
    /// `target_labels`: the target's public labels (final labels without
    /// `__*`), attached to every sample as Prometheus does.
    pub fn new(settings: Arc<JobSettings>, target_labels: Labels, refs: Arc<RefAllocator>) -> Self {
        TargetPipeline {
            limits: label_limits(&settings),
            metadata: MetadataCache::new(Arc::clone(&settings.families)),
            settings,
            target_labels: target_labels.public().without_empty(),
            refs,
            cache: RawCache::default(),
            table: SeriesTable::default(),
            report: None,
            iter: 0,
            last_pending_len: 0,
        }
    }

    /// Starts the next scrape iteration (never 0, which a series' `tracked` cannot hold).
    fn next_iteration(&mut self) -> u32 {
        self.iter = self.iter.wrapping_add(1).max(1);
        self.iter
    }

    /// A reload changed the job's settings (not the target): keep the
    /// series seen (so staleness keeps working across the reload), but
    /// forget cached relabeling results.
    pub fn set_settings(&mut self, settings: Arc<JobSettings>) {
        if settings.external_labels != self.settings.external_labels {
            // The synthetic series get new labels, hence new refs.
            self.report = None;
        }
        self.limits = label_limits(&settings);
        self.settings = settings;
        self.cache.clear();
    }

    /// A scrape that returned `body` (`format` from its Content-Type),
    /// started at `ts_ms` and took `duration`. Appends samples, stale
    /// markers for series that disappeared, and the synthetic series;
    /// a parse error or an exceeded limit makes it a failed scrape as in
    /// Prometheus 2.42 (no samples from the body, up=0, and stale markers
    /// for the series of the previous scrape that the body did not show
    /// before failing; the counts reported are those read until then).
    pub fn on_scrape(
        &mut self,
        body: &[u8],
        format: Format,
        ts_ms: i64,
        duration: Duration,
        out: &mut AppendBatch,
    ) -> ScrapeReport {
        let iter = self.next_iteration();
        self.metadata.begin();
        let mut pending = Vec::with_capacity(self.last_pending_len);
        let (counts, failure) = self.parse_body(body, format, ts_ms, &mut pending);

        let report = match failure {
            Some(failure) => {
                self.metadata.clear_pending();
                let stale_markers =
                    staleness::mark_stale(&mut self.table, iter.wrapping_sub(1), ts_ms, out);
                self.finish_iteration(false);
                ScrapeReport {
                    error: Some(failure.to_string()),
                    samples_scraped: counts.total,
                    samples_post_relabel: counts.added,
                    series_added: counts.series_added,
                    stale_markers,
                    ..ScrapeReport::default()
                }
            }
            None => {
                let mut report = self.commit(&pending, out);
                report.samples_scraped = counts.total;
                report.samples_post_relabel = counts.added;
                report.series_added = counts.series_added;
                report.out_of_order += counts.out_of_order;
                report.out_of_bounds = counts.out_of_bounds;
                report.stale_markers =
                    staleness::mark_stale(&mut self.table, iter.wrapping_sub(1), ts_ms, out);
                self.metadata.commit(iter, &mut out.metadata);
                // An empty body does not flush the cache (as Prometheus).
                self.finish_iteration(!body.is_empty());
                report
            }
        };
        // Not kept between scrapes: a target's samples buffer would sit
        // idle for the whole interval (24 bytes per series, every target).
        self.last_pending_len = pending.len();
        self.write_report(&report, ts_ms, duration, out);
        report
    }

    /// First pass, Prometheus 2.42's `scrapeLoop.append` up to the
    /// appender: parse, resolve every sample to a series (cache, or label
    /// work on a miss), check limits, decide which samples the agent's
    /// appender would take (not before the series' last committed sample,
    /// not over 10 minutes ahead), track series for staleness and count
    /// `scrape_series_added`. Nothing is written to the batch.
    fn parse_body(
        &mut self,
        body: &[u8],
        format: Format,
        ts_ms: i64,
        pending: &mut Vec<Pending>,
    ) -> (ParseCounts, Option<ScrapeFailure>) {
        let iter = self.iter;
        let settings = Arc::clone(&self.settings);
        let max_ts = ts_ms.saturating_add(MAX_AHEAD_MS);
        let mut counts = ParseCounts::default();
        let mut sample_limit_hit = false;
        for entry in Parser::new(body, format) {
            let series = match entry {
                Err(e) => {
                    // Prometheus' parser reads a line that repeats a label
                    // name; its appender refuses it (counted as scraped).
                    if e.kind == ParseErrorKind::RepeatedLabelName {
                        counts.total += 1;
                    }
                    return (counts, Some(ScrapeFailure::Parse(e)));
                }
                Ok(Entry::Series(s)) => s,
                Ok(Entry::Type { name, kind }) => {
                    self.metadata.observe_type(name, kind, iter);
                    continue;
                }
                Ok(Entry::Help { name, help }) => {
                    self.metadata.observe_help(name, &help, iter);
                    continue;
                }
                Ok(Entry::Unit { name, unit }) => {
                    self.metadata.observe_unit(name, unit, iter);
                    continue;
                }
                Ok(Entry::Comment(_) | Entry::Eof) => continue,
            };
            counts.total += 1;
            let explicit = if settings.honor_timestamps {
                series.timestamp_ms
            } else {
                None
            };
            // `cache_hit`: the raw series is in the scrape cache (what
            // decides scrape_series_added), even if its table slot was
            // reused since and its labels must be worked out again.
            let (cache_hit, cached_slot) = match self.cache.get(series.raw()) {
                Some(Resolved::Dropped) => continue,
                Some(Resolved::Series { slot }) => {
                    (true, self.table.slot_mut(slot).is_some().then_some(slot))
                }
                Some(Resolved::Unset) => (true, None),
                None => (false, None),
            };
            let slot = match cached_slot {
                Some(slot) => slot,
                None => match self.resolve(&series) {
                    Ok(Some(slot)) => slot,
                    Ok(None) => continue,
                    Err(f) => return (counts, Some(f)),
                },
            };
            let Some(e) = self.table.slot_mut(slot) else {
                continue;
            };
            e.last_seen = iter;
            counts.added += 1;
            let ts = explicit.unwrap_or(ts_ms);
            // The limit appender refuses before the agent sees the sample;
            // then the time-limit appender, then the agent's order check
            // against the last committed sample.
            let accepted = if over_sample_limit(counts.added, settings.sample_limit) {
                // Keep parsing to report how many samples there were.
                sample_limit_hit = true;
                false
            } else if ts > max_ts {
                counts.out_of_bounds += 1;
                false
            } else if ts < e.last_ts {
                counts.out_of_order += 1;
                false
            } else {
                true
            };
            // Prometheus tracks a new series for staleness whether or not
            // its sample was taken, a cached one only when it was; never
            // with an explicit timestamp.
            if explicit.is_none() && (accepted || !cache_hit) {
                e.tracked = std::num::NonZeroU32::new(iter);
            }
            if !accepted {
                continue;
            }
            // A raw series new to the cache, or whose cached slot was
            // reused: (re)cache it; only a new one counts as added.
            if cached_slot.is_none() {
                self.cache.insert(series.raw(), Resolved::Series { slot });
                if !cache_hit && !sample_limit_hit {
                    counts.series_added += 1;
                }
            }
            pending.push(Pending {
                slot,
                ts,
                value: series.value,
            });
        }
        let failure = sample_limit_hit.then_some(ScrapeFailure::SampleLimit);
        (counts, failure)
    }

    /// Label work for a raw series whose table slot is unknown: target
    /// labels, metric relabeling, checks, external labels. `Ok(None)`:
    /// dropped by relabeling (and cached as dropped). The caller caches the
    /// raw series once the appender took its sample.
    fn resolve(
        &mut self,
        series: &promshard_promlib::exposition::Series<'_>,
    ) -> Result<Option<u32>, ScrapeFailure> {
        let settings = &self.settings;
        let with_target = apply_target_labels(
            series.to_labels(),
            &self.target_labels,
            settings.honor_labels,
        );
        let relabeled = if settings.metric_relabel_configs.is_empty() {
            Some(with_target)
        } else {
            relabel::process(&with_target, &settings.metric_relabel_configs)
        };
        let Some(labels) = relabeled else {
            self.cache.insert(series.raw(), Resolved::Dropped);
            return Ok(None);
        };
        match labels.get(METRIC_NAME) {
            None | Some("") => return Err(ScrapeFailure::MissingMetricName),
            Some(name) => {
                if !is_valid_metric_name(name)
                    || !labels.iter().all(|l| is_valid_label_name(&l.name))
                {
                    return Err(ScrapeFailure::InvalidLabels(labels.to_string()));
                }
            }
        }
        self.limits.verify(&labels)?;
        let labels = apply_external(labels, &settings.external_labels);
        let (slot, _) = self.table.get_or_insert(&labels, self.iter, &self.refs);
        Ok(Some(slot))
    }

    /// Second pass of a successful scrape: write the samples the first
    /// pass accepted, defining series first where needed. A sample at the
    /// same timestamp as its series' previous one is written (as the agent
    /// does); one before it in the same body is skipped (the agent writes
    /// it, but remote write requires each series' samples in order).
    fn commit(&mut self, pending: &[Pending], out: &mut AppendBatch) -> ScrapeReport {
        let iter = self.iter;
        let mut report = ScrapeReport::default();
        for p in pending {
            let Some((e, definer)) = self.table.slot_with_definer(p.slot) else {
                continue;
            };
            if e.committed_iter != iter {
                e.committed_iter = iter;
                report.series += 1;
            }
            if p.ts < e.last_ts {
                report.out_of_order += 1;
                continue;
            }
            if p.ts == e.last_ts {
                report.duplicates += 1;
            }
            if !e.defined {
                out.series.push(definer.def(e));
                e.defined = true;
            }
            out.samples.push(Sample {
                series: e.series,
                timestamp_ms: p.ts,
                value: p.value,
            });
            e.last_ts = p.ts;
        }
        report
    }

    /// Cache and table housekeeping at the end of a scrape.
    fn finish_iteration(&mut self, flush_cache: bool) {
        let iter = self.iter;
        self.cache.iter_done(flush_cache);
        let freed = self.table.prune(|e| {
            e.tracked.is_none() && e.last_seen.saturating_add(TABLE_KEEP_ITERATIONS) <= iter
        });
        if freed {
            // Their slots will hold other series.
            let table = &self.table;
            self.cache.unset_slots(|slot| !table.holds(slot));
        }
        if flush_cache {
            self.table.trim();
        }
    }

    fn write_report(
        &mut self,
        report: &ScrapeReport,
        ts_ms: i64,
        duration: Duration,
        out: &mut AppendBatch,
    ) {
        let synthetic = self.report.get_or_insert_with(|| {
            ReportSeries::new(
                &self.target_labels,
                &self.settings.external_labels,
                &self.refs,
            )
        });
        synthetic.report(
            ts_ms,
            &ReportValues {
                up: report.error.is_none(),
                duration_seconds: duration.as_secs_f64(),
                scraped: report.samples_scraped,
                post_relabel: report.samples_post_relabel,
                series_added: report.series_added,
            },
            out,
        );
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
        let iter = self.next_iteration();
        self.metadata.begin();
        let stale_markers =
            staleness::mark_stale(&mut self.table, iter.wrapping_sub(1), ts_ms, out);
        self.finish_iteration(false);
        let report = ScrapeReport {
            error: Some(error.to_string()),
            stale_markers,
            ..ScrapeReport::default()
        };
        self.write_report(&report, ts_ms, duration, out);
        report
    }

    /// The target stops being scraped. `handover == false`: stale markers
    /// at `ts_ms` for every series of the last scrape and for the
    /// synthetic series (the target left service discovery).
    /// `handover == true`: nothing (another shard continues the series).
    ///
    /// A marker is only written when `ts_ms` is not before the series'
    /// last sample (an earlier one would be out of order; the agent writes
    /// one at the same timestamp).
    pub fn on_stop(&mut self, ts_ms: i64, handover: bool, out: &mut AppendBatch) {
        if handover {
            return;
        }
        staleness::mark_stale(&mut self.table, self.iter, ts_ms, out);
        if let Some(r) = self.report.as_mut() {
            r.report_stale(ts_ms, out);
        }
    }

    /// The WAL refused `batch` with `UnknownSeries` (the segment it writes
    /// does not define a series yet: a new segment, or a restart): add to
    /// `batch.series` a definition for
    /// every ref its samples use that it does not define, so that an
    /// append of the same batch succeeds.
    ///
    /// Refs this pipeline does not know (not from it, or forgotten two
    /// scrapes after going stale) are left alone.
    pub fn define_all(&self, batch: &mut AppendBatch) {
        let mut have: HashSet<SeriesRef> = batch.series.iter().map(|d| d.series).collect();
        let mut by_ref: Option<HashMap<SeriesRef, &series_table::SeriesEntry>> = None;
        let mut add = Vec::new();
        for s in &batch.samples {
            if !have.insert(s.series) {
                continue;
            }
            if let Some(d) = self.report.as_ref().and_then(|r| r.find(s.series)) {
                add.push(d.clone());
                continue;
            }
            let map =
                by_ref.get_or_insert_with(|| self.table.iter().map(|e| (e.series, e)).collect());
            if let Some(e) = map.get(&s.series) {
                add.push(self.table.definer().def(e));
            }
        }
        // Definitions must precede samples; `series` is appended before
        // `samples` as a whole, so extending it is enough.
        batch.series.extend(add);
    }

    /// Definitions of the series the pipeline currently knows (for tests
    /// and the API), by ref: the scraped ones still in its table and the
    /// synthetic ones once reported.
    pub fn known_series(&self) -> Vec<SeriesDef> {
        let definer = self.table.definer();
        let mut defs: Vec<SeriesDef> = self.table.iter().map(|e| definer.def(e)).collect();
        if let Some(r) = &self.report {
            defs.extend(r.defs().iter().cloned());
        }
        defs.sort_by_key(|d| d.series);
        defs
    }

    /// How many raw series strings are cached (for tests and the API).
    pub fn cached_raw_series(&self) -> usize {
        self.cache.len()
    }
}
