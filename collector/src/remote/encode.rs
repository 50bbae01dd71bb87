//! The remote write 1.0 body: a protobuf `WriteRequest`, snappy block
//! compressed (not the framed format).
//!
//! Sample requests are encoded by hand ([`RequestEncoder`]) from labels
//! that were protobuf-encoded once per series ([`encode_labels`]), into
//! buffers reused from one request to the next: no allocation per sample
//! or per label. [`prost_write_request`] builds the same request with
//! prost; it is the specification the hand encoder is tested against.
//!
//! Public (but not part of the collector's API) for benches and tests.

use std::collections::HashMap;
use std::sync::Arc;

use promshard_promlib::labels::{self, Labels};
use promshard_proto::prometheus::{self as pb, metric_metadata::MetricType};
use prost::Message;

use crate::refmap::RefMap;
use crate::series::{Metadata, SeriesRef};

pub use super::pairs::EncodedLabels;

/// One sample waiting in a shard: where it came from (for the delivered
/// position) and the encoded labels of its series after write relabeling.
#[derive(Clone, Debug)]
pub struct QueuedSample {
    pub position: u64,
    pub series: SeriesRef,
    pub labels: EncodedLabels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Field 1, length-delimited: `WriteRequest.timeseries`,
/// `TimeSeries.labels` and `Label.name` alike.
const TAG_1_LEN: u8 = 1 << 3 | 2;
/// Field 2, length-delimited: `TimeSeries.samples`, `Label.value`.
const TAG_2_LEN: u8 = 2 << 3 | 2;
/// `Sample.value`: field 1, 64-bit.
const TAG_SAMPLE_VALUE: u8 = 1 << 3 | 1;
/// `Sample.timestamp`: field 2, varint.
const TAG_SAMPLE_TIMESTAMP: u8 = 2 << 3;

use crate::varint::put_uvarint;

fn uvarint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A proto3 string field; like prost, an empty string is left out.
fn put_string_field(out: &mut Vec<u8>, tag: u8, s: &str) {
    if s.is_empty() {
        return;
    }
    out.push(tag);
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn string_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + uvarint_len(s.len() as u64) + s.len()
    }
}

/// Appends the encoded `labels` field of a `TimeSeries` holding `labels`
/// without the labels whose value is empty (as Prometheus sends them).
/// Returns whether a non-empty `__name__` is among them.
pub fn encode_labels_into(labels: &Labels, out: &mut Vec<u8>) -> bool {
    let mut has_name = false;
    for l in labels.iter() {
        if l.value.is_empty() {
            continue;
        }
        has_name |= l.name == labels::METRIC_NAME;
        out.push(TAG_1_LEN);
        let len = string_field_len(&l.name) + string_field_len(&l.value);
        put_uvarint(out, len as u64);
        put_string_field(out, TAG_1_LEN, &l.name);
        put_string_field(out, TAG_2_LEN, &l.value);
    }
    has_name
}

/// Series definitions with their labels already in the remote write
/// encoding (as [`encode_labels_into`] makes it), in one buffer: how the
/// WAL shipper hands over definitions without building [`Labels`].
#[derive(Clone, Debug, Default)]
pub struct EncodedSeries {
    buf: Vec<u8>,
    defs: Vec<(SeriesRef, Option<std::ops::Range<usize>>)>,
}

impl EncodedSeries {
    /// Adds the definition of `series` with `labels` (sorted by name,
    /// unique names); labels with an empty value are left out. A series
    /// without a (non-empty) `__name__` is recorded as such.
    pub fn push(&mut self, series: SeriesRef, labels: &[(&str, &str)]) {
        let start = self.buf.len();
        let mut has_name = false;
        for &(name, value) in labels {
            if value.is_empty() {
                continue;
            }
            has_name |= name == labels::METRIC_NAME;
            self.buf.push(TAG_1_LEN);
            let len = string_field_len(name) + string_field_len(value);
            put_uvarint(&mut self.buf, len as u64);
            put_string_field(&mut self.buf, TAG_1_LEN, name);
            put_string_field(&mut self.buf, TAG_2_LEN, value);
        }
        if has_name {
            self.defs.push((series, Some(start..self.buf.len())));
        } else {
            self.buf.truncate(start);
            self.defs.push((series, None));
        }
    }

    /// Definitions held.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Forgets the definitions after the first `len` (to undo a record
    /// that turned out not to decode).
    pub fn truncate(&mut self, len: usize) {
        if let Some(start) = self
            .defs
            .get(len..)
            .and_then(|rest| rest.iter().find_map(|(_, r)| r.as_ref().map(|r| r.start)))
        {
            self.buf.truncate(start);
        }
        self.defs.truncate(len);
    }

    /// Each definition: its ref and its encoded labels, or None when it
    /// has no metric name.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesRef, Option<&[u8]>)> {
        self.defs
            .iter()
            .map(|(s, r)| (*s, r.clone().map(|r| &self.buf[r])))
    }
}

/// [`encode_labels_into`] a new shared buffer, or None when the labels
/// have no (non-empty) `__name__`.
pub fn encode_labels(labels: &Labels, scratch: &mut Vec<u8>) -> Option<EncodedLabels> {
    scratch.clear();
    encode_labels_into(labels, scratch).then(|| EncodedLabels::from_bytes(scratch))
}

/// The encoded length of one `Sample` message (without its tag and
/// length). Like prost (proto3), fields equal to their default (0.0,
/// which includes -0.0, and 0) are left out.
fn sample_len(timestamp_ms: i64, value: f64) -> usize {
    let mut n = 0;
    if value != 0.0 {
        n += 9;
    }
    if timestamp_ms != 0 {
        n += 1 + uvarint_len(timestamp_ms as u64);
    }
    n
}

fn put_sample(out: &mut Vec<u8>, timestamp_ms: i64, value: f64) {
    out.push(TAG_2_LEN);
    // At most 9 + 11 bytes: the length is one byte.
    out.push(sample_len(timestamp_ms, value) as u8);
    if value != 0.0 {
        out.push(TAG_SAMPLE_VALUE);
        out.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    if timestamp_ms != 0 {
        out.push(TAG_SAMPLE_TIMESTAMP);
        put_uvarint(out, timestamp_ms as u64);
    }
}

/// Encodes and compresses sample requests, reusing its buffers.
#[derive(Debug)]
pub struct RequestEncoder {
    /// Series -> index of its group, for the batch being encoded.
    index: RefMap<u32>,
    /// Per group (series, first-seen order): the first sample's index,
    /// then (after counting) the group's start in `order`.
    groups: Vec<(usize, usize)>,
    /// Per sample: its group.
    group_of: Vec<u32>,
    /// Sample indexes grouped by series, in timestamp order per series.
    order: Vec<u32>,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for RequestEncoder {
    fn default() -> Self {
        RequestEncoder::new()
    }
}

impl RequestEncoder {
    pub fn new() -> Self {
        RequestEncoder {
            index: RefMap::default(),
            groups: Vec::new(),
            group_of: Vec::new(),
            order: Vec::new(),
            raw: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// The protobuf `WriteRequest` of `samples`: one `TimeSeries` per
    /// series (in first-seen order) with its labels and its samples in
    /// timestamp order (equal timestamps keep their input order). Values
    /// keep their bit pattern, so a staleness marker stays
    /// `STALE_NAN_BITS`. The same message as [`prost_write_request`].
    pub fn encode(&mut self, samples: &[QueuedSample]) -> &[u8] {
        self.group(samples);
        self.raw.clear();
        for g in 0..self.groups.len() {
            let (end, start) = self.groups[g];
            let members = &self.order[start..end];
            let Some(&first) = members.first() else {
                continue;
            };
            let labels = &samples[first as usize].labels;
            let mut len = labels.len();
            for &i in members {
                let s = &samples[i as usize];
                len += 2 + sample_len(s.timestamp_ms, s.value);
            }
            self.raw.push(TAG_1_LEN);
            put_uvarint(&mut self.raw, len as u64);
            labels.write_to(&mut self.raw);
            for &i in members {
                let s = &samples[i as usize];
                put_sample(&mut self.raw, s.timestamp_ms, s.value);
            }
        }
        &self.raw
    }

    /// Fills `order` with the sample indexes grouped by series (groups in
    /// first-seen order, each in stable timestamp order).
    fn group(&mut self, samples: &[QueuedSample]) {
        self.index.clear();
        self.groups.clear();
        self.group_of.clear();
        for s in samples {
            let next = self.groups.len() as u32;
            let g = *self.index.entry(s.series).or_insert(next);
            if g == next {
                self.groups.push((0, 0));
            }
            self.groups[g as usize].0 += 1;
            self.group_of.push(g);
        }
        // Counting sort: a group's start is the count before it.
        let mut start = 0;
        for g in &mut self.groups {
            let count = g.0;
            *g = (start, start);
            start += count;
        }
        self.order.clear();
        self.order.resize(samples.len(), 0);
        for (i, &g) in self.group_of.iter().enumerate() {
            let slot = &mut self.groups[g as usize].0;
            self.order[*slot] = i as u32;
            *slot += 1;
        }
        // Within a group the indexes are in input order; sort by
        // timestamp (stable) only where they are not in order already.
        for g in 0..self.groups.len() {
            let begin = self.groups[g].1;
            let end = self.groups[g].0;
            let members = &mut self.order[begin..end];
            let ts = |i: &u32| samples[*i as usize].timestamp_ms;
            if !members.windows(2).all(|w| ts(&w[0]) <= ts(&w[1])) {
                members.sort_by_key(ts);
            }
        }
    }

    /// [`encode`](Self::encode)s `samples` and snappy (block format)
    /// compresses the result.
    pub fn encode_compressed(&mut self, samples: &[QueuedSample]) -> Result<&[u8], snap::Error> {
        self.encode(samples);
        self.compressed
            .resize(snap::raw::max_compress_len(self.raw.len()), 0);
        let n = self.snappy.compress(&self.raw, &mut self.compressed)?;
        Ok(&self.compressed[..n])
    }
}

/// A sample with its series' labels as a [`Labels`] value: the input of
/// [`prost_write_request`].
#[derive(Clone, Debug)]
pub struct LabeledSample {
    pub series: SeriesRef,
    pub labels: Arc<Labels>,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// The `WriteRequest` of `samples` built with prost (the labels of each
/// series copied in, empty values left out): the specification of
/// [`RequestEncoder::encode`].
pub fn prost_write_request(samples: &[LabeledSample]) -> pb::WriteRequest {
    let mut index: HashMap<SeriesRef, usize> = HashMap::new();
    let mut series: Vec<pb::TimeSeries> = Vec::new();
    for s in samples {
        let i = *index.entry(s.series).or_insert_with(|| {
            series.push(pb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .filter(|l| !l.value.is_empty())
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
pub fn compress(req: &pb::WriteRequest) -> Result<Vec<u8>, snap::Error> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(series: u64, labels: &Labels, ts: i64, v: f64) -> QueuedSample {
        QueuedSample {
            position: 1,
            series: SeriesRef(series),
            labels: encode_labels(labels, &mut Vec::new()).expect("has a name"),
            timestamp_ms: ts,
            value: v,
        }
    }

    fn decode(body: &[u8]) -> pb::WriteRequest {
        pb::WriteRequest::decode(body).expect("protobuf")
    }

    #[test]
    fn groups_by_series_and_orders_by_timestamp() {
        let a = Labels::from_pairs([("__name__", "a"), ("x", "1")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let mut enc = RequestEncoder::new();
        let req = decode(enc.encode(&[qs(1, &a, 20, 1.0), qs(2, &b, 5, 2.0), qs(1, &a, 10, 3.0)]));
        assert_eq!(req.timeseries.len(), 2);
        let ts: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, vec![10, 20]);
        assert_eq!(req.timeseries[0].labels[0].name, "__name__");
        assert_eq!(req.timeseries[0].labels[1].value, "1");
        assert_eq!(req.timeseries[1].samples[0].value, 2.0);
    }

    #[test]
    fn labels_without_a_name_or_with_empty_values() {
        let mut scratch = Vec::new();
        let nameless = Labels::from_pairs([("__name__", ""), ("x", "1")]);
        assert!(encode_labels(&nameless, &mut scratch).is_none());
        let l = Labels::from_pairs([("__name__", "m"), ("e", ""), ("x", "1")]);
        let enc = encode_labels(&l, &mut scratch).expect("named");
        let ts = pb::TimeSeries::decode(&enc.to_vec()[..]).expect("labels field");
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "x"]);
    }

    #[test]
    fn compressed_body_is_snappy_block_and_keeps_nan_bits() {
        let a = Labels::from_pairs([("__name__", "a")]);
        let stale = f64::from_bits(promshard_proto::STALE_NAN_BITS);
        let mut enc = RequestEncoder::new();
        let body = enc
            .encode_compressed(&[qs(1, &a, 1, stale), qs(1, &a, 2, f64::NAN)])
            .expect("compress")
            .to_vec();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("block format");
        let req = decode(&raw);
        let s = &req.timeseries[0].samples;
        assert_eq!(s[0].value.to_bits(), promshard_proto::STALE_NAN_BITS);
        assert_eq!(s[1].value.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(uvarint_len(v), b.len(), "{v}");
        }
    }

    #[test]
    fn metric_types_map_like_prometheus() {
        assert_eq!(metric_type("counter"), MetricType::Counter);
        assert_eq!(metric_type("gaugehistogram"), MetricType::Gaugehistogram);
        assert_eq!(metric_type("bogus"), MetricType::Unknown);
    }
}
