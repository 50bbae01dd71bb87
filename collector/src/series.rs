//! What flows from the scrape pipeline into the WAL and out to remote write:
//! series definitions (a collector-local ref and its labels) and samples
//! that refer to them.

use std::hash::{BuildHasherDefault, Hasher};

use promshard_promlib::labels::Labels;

/// A collector-local series id. A ref is defined once (a [`SeriesDef`])
/// before samples use it, and is never reused for other labels while any
/// WAL segment that mentions it is undelivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// A hasher for series refs (one u64, or a [`SeriesRef`]): refs are mostly
/// consecutive numbers, so one folded multiply spreads them well and
/// SipHash would only cost time. Shared by the WAL and remote write.
#[derive(Default, Clone, Copy)]
pub(crate) struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let m = u128::from(self.0 ^ v) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// The `BuildHasher` for maps and sets keyed by series refs.
pub(crate) type RefBuildHasher = BuildHasherDefault<RefHasher>;

/// A series definition: its ref and its full, final label set (sorted, with
/// `__name__`, target and external labels applied, no empty values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesDef {
    pub series: SeriesRef,
    pub labels: Labels,
}

/// One sample. A staleness marker is `f64::from_bits(STALE_NAN_BITS)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub series: SeriesRef,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Metric metadata (HELP/TYPE/UNIT of a metric family) for remote write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub metric_family_name: String,
    /// Prometheus' type name: counter, gauge, histogram, gaugehistogram,
    /// summary, info, stateset or unknown.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// What one scrape appends, in order: new series definitions first, then
/// samples (which may use them), then metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendBatch {
    pub series: Vec<SeriesDef>,
    pub samples: Vec<Sample>,
    pub metadata: Vec<Metadata>,
}

impl AppendBatch {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.samples.is_empty() && self.metadata.is_empty()
    }
}

/// Whether `v` is Prometheus' staleness marker (not an ordinary NaN).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == promshard_proto::STALE_NAN_BITS
}

/// The staleness marker value.
pub fn stale_marker() -> f64 {
    f64::from_bits(promshard_proto::STALE_NAN_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_not_an_ordinary_nan() {
        assert!(is_stale_marker(stale_marker()));
        assert!(!is_stale_marker(f64::NAN));
        assert!(stale_marker().is_nan());
    }
}
