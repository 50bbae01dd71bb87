//! Helpers shared by the WAL tests.
#![allow(dead_code)]

use std::time::Duration;

use promshard_collector::series::{AppendBatch, Metadata, Sample, SeriesDef, SeriesRef};
use promshard_collector::wal::{WalEntry, WalReader, WalRecord};
use promshard_promlib::labels::Labels;

pub fn def(r: u64, name: &str) -> SeriesDef {
    SeriesDef {
        series: SeriesRef(r),
        labels: Labels::from_pairs([("__name__", name), ("job", "j"), ("instance", "i:1")]),
    }
}

pub fn sample(r: u64, ts: i64, v: f64) -> Sample {
    Sample {
        series: SeriesRef(r),
        timestamp_ms: ts,
        value: v,
    }
}

pub fn meta(name: &str) -> Metadata {
    Metadata {
        metric_family_name: name.into(),
        kind: "counter".into(),
        help: format!("help of {name}"),
        unit: String::new(),
    }
}

/// Batch `i` of a numbered stream: defines ref `i` on its first batch and
/// writes one sample whose value is `i`.
pub fn numbered_batch(i: u64) -> AppendBatch {
    AppendBatch {
        series: vec![def(i, &format!("m{i}"))],
        samples: vec![sample(i, i as i64 * 1000, i as f64)],
        metadata: vec![],
    }
}

/// Everything the reader has now, without waiting.
pub fn drain(r: &mut WalReader) -> Vec<WalEntry> {
    let mut out = Vec::new();
    while let Some(e) = r.try_next().unwrap() {
        out.push(e);
    }
    out
}

pub fn samples_of(entries: &[WalEntry]) -> Vec<promshard_collector::series::Sample> {
    entries
        .iter()
        .flat_map(|e| match &e.record {
            WalRecord::Samples(s) => s.clone(),
            _ => vec![],
        })
        .collect()
}

pub fn defs_of(entries: &[WalEntry]) -> Vec<SeriesDef> {
    entries
        .iter()
        .flat_map(|e| match &e.record {
            WalRecord::Series(s) => s.clone(),
            _ => vec![],
        })
        .collect()
}

pub const WAIT: Duration = Duration::from_secs(10);
