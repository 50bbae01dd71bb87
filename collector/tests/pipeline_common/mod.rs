//! Helpers for the pipeline tests.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use promshard_collector::pipeline::{JobSettings, RefAllocator, TargetPipeline};
use promshard_collector::series::{AppendBatch, SeriesRef};
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;

pub const TEXT: Format = Format::Text;
pub const OPENMETRICS: Format = Format::OpenMetrics;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn settings() -> JobSettings {
    JobSettings {
        job_name: "j".into(),
        honor_labels: false,
        honor_timestamps: true,
        metric_relabel_configs: Vec::new(),
        sample_limit: 0,
        label_limit: 0,
        label_name_length_limit: 0,
        label_value_length_limit: 0,
        external_labels: Labels::new(),
    }
}

pub fn pipeline(s: JobSettings, target: &[(&str, &str)]) -> TargetPipeline {
    TargetPipeline::new(
        Arc::new(s),
        Labels::from_pairs(target.iter().copied()),
        Arc::new(RefAllocator::new(1)),
    )
}

/// Labels printed without `__name__`'s braces: `name{a="1", b="2"}`, or
/// `name` with no other labels.
pub fn series_name(l: &Labels) -> String {
    let name = l.get("__name__").unwrap_or("").to_string();
    let mut rest = l.clone();
    rest.remove("__name__");
    if rest.is_empty() {
        name
    } else {
        format!("{name}{rest}")
    }
}

/// Labels of every ref defined in `batch`.
pub fn defs(batch: &AppendBatch) -> HashMap<SeriesRef, String> {
    batch
        .series
        .iter()
        .map(|d| (d.series, series_name(&d.labels)))
        .collect()
}

/// (timestamp, value) of the only sample of series `name` in `batch`
/// (refs resolved through the batch's definitions and those the pipeline
/// knows; panics on several samples).
pub fn value_of(p: &TargetPipeline, batch: &AppendBatch, name: &str) -> Option<(i64, f64)> {
    let all = all_values(p, batch, name);
    assert!(all.len() <= 1, "{name}: {} samples", all.len());
    all.first().copied()
}

/// Every (timestamp, value) of series `name` in `batch`.
pub fn all_values(p: &TargetPipeline, batch: &AppendBatch, name: &str) -> Vec<(i64, f64)> {
    let mut d: HashMap<SeriesRef, String> = p
        .known_series()
        .iter()
        .map(|d| (d.series, series_name(&d.labels)))
        .collect();
    d.extend(defs(batch));
    batch
        .samples
        .iter()
        .filter(|s| d.get(&s.series).map(String::as_str) == Some(name))
        .map(|s| (s.timestamp_ms, s.value))
        .collect()
}

/// Across consecutive batches: every sample's ref was defined earlier in
/// the sequence, and a ref is never redefined with other labels.
pub fn assert_defined_before_use(batches: &[AppendBatch]) {
    let mut known: HashMap<SeriesRef, Labels> = HashMap::new();
    for b in batches {
        for d in &b.series {
            if let Some(old) = known.insert(d.series, d.labels.clone()) {
                assert_eq!(old, d.labels, "ref {:?} redefined", d.series);
            }
        }
        let mut seen = HashSet::new();
        for s in &b.samples {
            assert!(
                known.contains_key(&s.series),
                "ref {:?} used before definition",
                s.series
            );
            seen.insert(s.series);
        }
    }
}
