//! Property tests of the hand-written remote write encoder: it must give
//! the very message (and bytes) prost gives for the same samples.

use std::sync::Arc;

use proptest::prelude::*;
use prost::Message;

use promshard_collector::remote::encode::{
    LabeledSample, QueuedSample, RequestEncoder, encode_labels, prost_write_request,
};
use promshard_collector::series::SeriesRef;
use promshard_promlib::labels::Labels;
use promshard_proto::STALE_NAN_BITS;
use promshard_proto::prometheus as pb;

/// Label sets with a non-empty name; other values may be empty (they are
/// left out by both encoders).
fn labels() -> impl Strategy<Value = Labels> {
    (
        "[a-z_:]{1,10}",
        prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,12}", ".{0,20}"), 0..8),
    )
        .prop_map(|(name, mut pairs)| {
            pairs.retain(|(n, _)| n != "__name__");
            pairs.push(("__name__".to_string(), name));
            Labels::from_pairs(pairs)
        })
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::from_bits(STALE_NAN_BITS)),
        Just(f64::NAN),
        Just(0.0),
        Just(-0.0),
        Just(f64::INFINITY),
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        -5i64..5,
        any::<i64>(),
        1_700_000_000_000i64..1_700_000_000_100
    ]
}

/// The samples of one batch: (series index, timestamp, value).
fn batch() -> impl Strategy<Value = (Vec<Labels>, Vec<(usize, i64, f64)>)> {
    prop::collection::vec(labels(), 1..6).prop_flat_map(|series| {
        let n = series.len();
        (
            Just(series),
            prop::collection::vec((0..n, timestamp(), value()), 0..80),
        )
    })
}

/// Requests compared field by field, values by their bits.
fn assert_same(got: &pb::WriteRequest, want: &pb::WriteRequest) {
    assert_eq!(got.timeseries.len(), want.timeseries.len());
    assert!(got.metadata.is_empty());
    for (g, w) in got.timeseries.iter().zip(&want.timeseries) {
        assert_eq!(g.labels, w.labels);
        assert!(g.exemplars.is_empty());
        let bits = |ts: &pb::TimeSeries| -> Vec<(i64, u64)> {
            ts.samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect()
        };
        assert_eq!(bits(g), bits(w));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn hand_encoding_is_the_prost_encoding((series, samples) in batch()) {
        let mut scratch = Vec::new();
        let encoded: Vec<_> = series
            .iter()
            .map(|l| encode_labels(l, &mut scratch).expect("named"))
            .collect();
        let shared: Vec<Arc<Labels>> = series.iter().cloned().map(Arc::new).collect();
        let queued: Vec<QueuedSample> = samples
            .iter()
            .map(|&(i, ts, v)| QueuedSample {
                position: 1,
                series: SeriesRef(i as u64 * 7919),
                labels: encoded[i].clone(),
                timestamp_ms: ts,
                value: v,
            })
            .collect();
        let labeled: Vec<LabeledSample> = samples
            .iter()
            .map(|&(i, ts, v)| LabeledSample {
                series: SeriesRef(i as u64 * 7919),
                labels: shared[i].clone(),
                timestamp_ms: ts,
                value: v,
            })
            .collect();
        let want = prost_write_request(&labeled);
        let mut enc = RequestEncoder::new();
        // Twice: the reused buffers must not leak one request into the next.
        for _ in 0..2 {
            let raw = enc.encode(&queued).to_vec();
            prop_assert_eq!(&raw, &want.encode_to_vec());
            // As the receiver sees them. (prost, like any proto3 encoder,
            // leaves out a zero value, so -0.0 arrives as 0.0 both ways.)
            let got = pb::WriteRequest::decode(raw.as_slice()).expect("decodes");
            let seen = pb::WriteRequest::decode(want.encode_to_vec().as_slice()).expect("decodes");
            assert_same(&got, &seen);
            let body = enc.encode_compressed(&queued).expect("compress").to_vec();
            let unsnapped = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block");
            prop_assert_eq!(unsnapped, raw);
        }
    }

    #[test]
    fn encoded_labels_decode_to_the_labels_without_empty_values(l in labels()) {
        let enc = encode_labels(&l, &mut Vec::new()).expect("named");
        let ts = pb::TimeSeries::decode(&enc.to_vec()[..]).expect("labels field");
        let want: Vec<(String, String)> = l
            .iter()
            .filter(|x| !x.value.is_empty())
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        let got: Vec<(String, String)> = ts.labels.into_iter().map(|x| (x.name, x.value)).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn stale_markers_keep_their_bits_through_the_body() {
    let l = Labels::from_pairs([("__name__", "up"), ("job", "j")]);
    let labels = encode_labels(&l, &mut Vec::new()).expect("named");
    let q = |ts, v| QueuedSample {
        position: 1,
        series: SeriesRef(1),
        labels: labels.clone(),
        timestamp_ms: ts,
        value: v,
    };
    let mut enc = RequestEncoder::new();
    let body = enc
        .encode_compressed(&[q(2, f64::from_bits(STALE_NAN_BITS)), q(1, 5.0)])
        .expect("compress")
        .to_vec();
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let req = pb::WriteRequest::decode(raw.as_slice()).expect("protobuf");
    let s = &req.timeseries[0].samples;
    assert_eq!((s[0].timestamp, s[0].value), (1, 5.0));
    assert_eq!((s[1].timestamp, s[1].value.to_bits()), (2, STALE_NAN_BITS));
}

mod wal_series {
    use super::*;
    use promshard_collector::remote::encode::EncodedSeries;
    use promshard_collector::series::SeriesDef;
    use promshard_collector::wal::WalRecord;
    use promshard_collector::wal::codec::{
        FRAME_HEADER_LEN, decode_payload, encode_record, visit_series_payload,
    };

    /// Any label sets, with or without a name, with empty values.
    fn any_labels() -> impl Strategy<Value = Labels> {
        prop::collection::vec(
            (
                prop_oneof![Just("__name__".to_string()), "[a-zA-Z_][a-zA-Z0-9_]{0,12}"],
                prop_oneof![Just(String::new()), ".{0,20}"],
            ),
            0..8,
        )
        .prop_map(Labels::from_pairs)
    }

    fn payload(defs: &[SeriesDef]) -> Vec<u8> {
        let mut framed = Vec::new();
        encode_record(&WalRecord::Series(defs.to_vec()), &mut framed);
        framed[FRAME_HEADER_LEN..].to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Transcoding a WAL Series payload gives what decoding it and
        /// encoding its labels gives.
        #[test]
        fn transcoded_series_equal_decoded_then_encoded(
            sets in prop::collection::vec((any::<u64>(), any_labels()), 0..8)
        ) {
            let defs: Vec<SeriesDef> = sets
                .into_iter()
                .map(|(r, labels)| SeriesDef { series: SeriesRef(r), labels })
                .collect();
            let p = payload(&defs);
            let mut transcoded = EncodedSeries::default();
            visit_series_payload(&p, |r, l| transcoded.push(r, l)).expect("valid payload");
            let WalRecord::Series(decoded) = decode_payload(1, &p).expect("decodes") else {
                panic!("not a Series record");
            };
            prop_assert_eq!(transcoded.len(), decoded.len());
            let mut scratch = Vec::new();
            for ((r, wire), d) in transcoded.iter().zip(&decoded) {
                prop_assert_eq!(r, d.series);
                let want = encode_labels(&d.labels, &mut scratch);
                prop_assert_eq!(wire.map(<[u8]>::to_vec), want.map(|w| w.to_vec()));
            }
        }
    }

    #[test]
    fn unsorted_labels_are_refused_like_the_decoder_does() {
        // One definition: ref 1, two labels "b" then "a".
        let mut p = vec![1, 1, 2];
        for s in ["b", "1", "a", "2"] {
            p.push(s.len() as u8);
            p.extend_from_slice(s.as_bytes());
        }
        assert!(decode_payload(1, &p).is_err());
        assert!(visit_series_payload(&p, |_, _| {}).is_err());
        // Trailing bytes too.
        let ok = payload(&[SeriesDef {
            series: SeriesRef(3),
            labels: Labels::from_pairs([("__name__", "m")]),
        }]);
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(visit_series_payload(&ok, |_, _| {}).is_ok());
        assert!(decode_payload(1, &trailing).is_err());
        assert!(visit_series_payload(&trailing, |_, _| {}).is_err());
    }

    #[test]
    fn truncate_forgets_later_definitions_and_their_bytes() {
        let mut e = EncodedSeries::default();
        e.push(SeriesRef(1), &[("__name__", "a")]);
        e.push(SeriesRef(2), &[("x", "1")]);
        e.push(SeriesRef(3), &[("__name__", "c"), ("y", "")]);
        let all: Vec<_> = e.iter().map(|(r, w)| (r, w.map(<[u8]>::to_vec))).collect();
        assert_eq!(all[1], (SeriesRef(2), None), "no name");
        e.truncate(1);
        assert_eq!(e.len(), 1);
        e.push(SeriesRef(4), &[("__name__", "d")]);
        let got: Vec<_> = e.iter().map(|(r, w)| (r, w.map(<[u8]>::to_vec))).collect();
        let mut scratch = Vec::new();
        let d =
            encode_labels(&Labels::from_pairs([("__name__", "d")]), &mut scratch).expect("named");
        assert_eq!(got[1], (SeriesRef(4), Some(d.to_vec())));
        assert_eq!(got[0], all[0]);
    }
}
