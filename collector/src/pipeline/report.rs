//! The five synthetic series Prometheus 2.42 writes after every scrape
//! (`scrapeLoop.report` / `reportStale`), with the target labels and
//! without metric relabeling.

use promshard_promlib::labels::Labels;

use super::RefAllocator;
use super::labels::external::apply_external;
use super::labels::target_labels::report_labels;
use crate::series::{AppendBatch, Sample, SeriesDef, SeriesRef, stale_marker};

/// In the order Prometheus appends them.
pub const SYNTHETIC_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The values of one report, in [`SYNTHETIC_NAMES`] order.
pub(crate) struct ReportValues {
    pub(crate) up: bool,
    pub(crate) duration_seconds: f64,
    pub(crate) scraped: u64,
    pub(crate) post_relabel: u64,
    pub(crate) series_added: u64,
}

pub(crate) struct ReportSeries {
    defs: Vec<SeriesDef>,
    /// Definitions emitted and not stale since.
    defined: bool,
    last_ts: i64,
}

impl ReportSeries {
    pub(crate) fn new(target: &Labels, external: &Labels, refs: &RefAllocator) -> Self {
        let defs = SYNTHETIC_NAMES
            .iter()
            .map(|name| SeriesDef {
                series: refs.next(),
                labels: apply_external(report_labels(name, target), external),
            })
            .collect();
        ReportSeries {
            defs,
            defined: false,
            last_ts: i64::MIN,
        }
    }

    /// Appends the report at `ts_ms` (nothing if `ts_ms` is before the
    /// last report: the samples would be out of order; the agent takes one
    /// at the same timestamp).
    pub(crate) fn report(&mut self, ts_ms: i64, v: &ReportValues, out: &mut AppendBatch) {
        let values = [
            if v.up { 1.0 } else { 0.0 },
            v.duration_seconds,
            v.scraped as f64,
            v.post_relabel as f64,
            v.series_added as f64,
        ];
        self.write(ts_ms, values, out);
    }

    /// Stale markers for the five series (the target went away).
    pub(crate) fn report_stale(&mut self, ts_ms: i64, out: &mut AppendBatch) {
        if self.last_ts == i64::MIN {
            return;
        }
        self.write(ts_ms, [stale_marker(); 5], out);
        self.defined = false;
    }

    fn write(&mut self, ts_ms: i64, values: [f64; 5], out: &mut AppendBatch) {
        if ts_ms < self.last_ts {
            return;
        }
        if !self.defined {
            out.series.extend(self.defs.iter().cloned());
            self.defined = true;
        }
        for (def, value) in self.defs.iter().zip(values) {
            out.samples.push(Sample {
                series: def.series,
                timestamp_ms: ts_ms,
                value,
            });
        }
        self.last_ts = ts_ms;
    }

    pub(crate) fn defs(&self) -> &[SeriesDef] {
        &self.defs
    }

    pub(crate) fn find(&self, series: SeriesRef) -> Option<&SeriesDef> {
        self.defs.iter().find(|d| d.series == series)
    }
}
