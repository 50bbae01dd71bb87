//! The remote write 1.0 body: a protobuf `WriteRequest`, snappy block
//! compressed (not the framed format).

use std::collections::HashMap;
use std::sync::Arc;

use promshard_promlib::labels::Labels;
use promshard_proto::prometheus::{self as pb, metric_metadata::MetricType};
use prost::Message;

use crate::series::{Metadata, SeriesRef};

/// One sample waiting in a shard: where it came from (for the delivered
/// position) and the labels of its series after write relabeling.
#[derive(Clone, Debug)]
pub(crate) struct QueuedSample {
    pub position: u64,
    pub series: SeriesRef,
    pub labels: Arc<Labels>,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Builds the `WriteRequest` of one batch: one `TimeSeries` per series (in
/// first-seen order) with its full label set (already sorted, unique, no
/// empty values) and its samples in timestamp order. Values keep their bit
/// pattern, so a staleness marker stays `STALE_NAN_BITS`.
pub(crate) fn write_request(samples: &[QueuedSample]) -> pb::WriteRequest {
    let mut index: HashMap<SeriesRef, usize> = HashMap::new();
    let mut series: Vec<pb::TimeSeries> = Vec::new();
    for s in samples {
        let i = *index.entry(s.series).or_insert_with(|| {
            series.push(pb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| pb::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: Vec::new(),
                exemplars: Vec::new(),
            });
            series.len() - 1
        });
        series[i].samples.push(pb::Sample {
            value: s.value,
            timestamp: s.timestamp_ms,
        });
    }
    for ts in &mut series {
        // Stable: equal timestamps keep their input order.
        ts.samples.sort_by_key(|s| s.timestamp);
    }
    pb::WriteRequest {
        timeseries: series,
        metadata: Vec::new(),
    }
}

/// The `WriteRequest` carrying only metadata.
pub(crate) fn metadata_request(metadata: &[Metadata]) -> pb::WriteRequest {
    pb::WriteRequest {
        timeseries: Vec::new(),
        metadata: metadata
            .iter()
            .map(|m| pb::MetricMetadata {
                r#type: metric_type(&m.kind) as i32,
                metric_family_name: m.metric_family_name.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    }
}

/// Prometheus' type name to the remote write enum; unknown names are
/// `UNKNOWN`.
pub(crate) fn metric_type(kind: &str) -> MetricType {
    match kind {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::Gaugehistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::Stateset,
        _ => MetricType::Unknown,
    }
}

/// Protobuf-encodes and snappy (block format) compresses `req`.
pub(crate) fn compress(req: &pb::WriteRequest) -> Result<Vec<u8>, snap::Error> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(series: u64, labels: &Arc<Labels>, ts: i64, v: f64) -> QueuedSample {
        QueuedSample {
            position: 1,
            series: SeriesRef(series),
            labels: labels.clone(),
            timestamp_ms: ts,
            value: v,
        }
    }

    #[test]
    fn groups_by_series_and_orders_by_timestamp() {
        let a = Arc::new(Labels::from_pairs([("__name__", "a"), ("x", "1")]));
        let b = Arc::new(Labels::from_pairs([("__name__", "b")]));
        let req = write_request(&[qs(1, &a, 20, 1.0), qs(2, &b, 5, 2.0), qs(1, &a, 10, 3.0)]);
        assert_eq!(req.timeseries.len(), 2);
        let ts: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, vec![10, 20]);
        assert_eq!(req.timeseries[0].labels[0].name, "__name__");
        assert_eq!(req.timeseries[1].samples[0].value, 2.0);
    }

    #[test]
    fn compressed_body_is_snappy_block_and_keeps_nan_bits() {
        let a = Arc::new(Labels::from_pairs([("__name__", "a")]));
        let stale = f64::from_bits(promshard_proto::STALE_NAN_BITS);
        let body = compress(&write_request(&[
            qs(1, &a, 1, stale),
            qs(1, &a, 2, f64::NAN),
        ]))
        .expect("compress");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("block format");
        let req = pb::WriteRequest::decode(raw.as_slice()).expect("protobuf");
        let s = &req.timeseries[0].samples;
        assert_eq!(s[0].value.to_bits(), promshard_proto::STALE_NAN_BITS);
        assert_eq!(s[1].value.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn metric_types_map_like_prometheus() {
        assert_eq!(metric_type("counter"), MetricType::Counter);
        assert_eq!(metric_type("gaugehistogram"), MetricType::Gaugehistogram);
        assert_eq!(metric_type("bogus"), MetricType::Unknown);
    }
}
