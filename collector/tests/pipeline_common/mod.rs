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
        families: Arc::default(),
    }
}

/// Job `node` with external label `cluster="c1"`: the settings of the
/// node_exporter-like target of the `pipeline` bench and `pipeline_memory`.
pub fn node_settings() -> Arc<JobSettings> {
    Arc::new(JobSettings {
        job_name: "node".into(),
        external_labels: Labels::from_pairs([("cluster", "c1")]),
        ..settings()
    })
}

/// A node_exporter-like text body of `series` series: counter families
/// of 10-50 series with node_exporter's label shapes. `scrape` is added
/// to every value, so successive scrapes differ only in values.
pub fn node_body(series: usize, scrape: usize) -> Vec<u8> {
    let mut b = String::new();
    let mut n = 0;
    let mut family = 0;
    while n < series {
        let name = format!("node_family_{family}_total");
        b.push_str(&format!(
            "# HELP {name} Family {family} of node metrics.\n# TYPE {name} counter\n"
        ));
        for i in 0..(10 + family % 40) {
            if n == series {
                break;
            }
            b.push_str(&format!(
                "{name}{{cpu=\"{}\",device=\"sda{}\",mode=\"user\"}} {}.25\n",
                i % 16,
                i,
                1_000_000 + n * 37 + scrape
            ));
            n += 1;
        }
        family += 1;
    }
    b.into_bytes()
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
