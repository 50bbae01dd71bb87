//! Property tests of the WAL record codec.

use proptest::prelude::*;

use promshard_collector::series::{Metadata, Sample, SeriesDef, SeriesRef};
use promshard_collector::wal::WalRecord;
use promshard_collector::wal::codec::{decode_frame, encode_record};
use promshard_promlib::labels::Labels;

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,12}", ".{0,20}"), 0..12)
        .prop_map(Labels::from_pairs)
}

fn record() -> impl Strategy<Value = WalRecord> {
    prop_oneof![
        prop::collection::vec(
            (any::<u64>(), labels()).prop_map(|(r, labels)| SeriesDef {
                series: SeriesRef(r),
                labels
            }),
            0..8
        )
        .prop_map(WalRecord::Series),
        prop::collection::vec(
            (any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(r, ts, bits)| Sample {
                series: SeriesRef(r),
                timestamp_ms: ts,
                value: f64::from_bits(bits),
            }),
            0..64
        )
        .prop_map(WalRecord::Samples),
        prop::collection::vec(
            (".{0,10}", ".{0,10}", ".{0,30}", ".{0,5}").prop_map(|(a, b, c, d)| Metadata {
                metric_family_name: a,
                kind: b,
                help: c,
                unit: d,
            }),
            0..6
        )
        .prop_map(WalRecord::Metadata),
    ]
}

/// Compares records with f64 values by their bits.
fn same(a: &WalRecord, b: &WalRecord) -> bool {
    match (a, b) {
        (WalRecord::Samples(x), WalRecord::Samples(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p.series == q.series
                        && p.timestamp_ms == q.timestamp_ms
                        && p.value.to_bits() == q.value.to_bits()
                })
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(recs in prop::collection::vec(record(), 1..5)) {
        let mut buf = Vec::new();
        for r in &recs {
            encode_record(r, &mut buf);
        }
        let mut at = 0;
        for r in &recs {
            let (got, used) = decode_frame(&buf[at..]).unwrap();
            prop_assert!(same(&got, r), "{got:?} != {r:?}");
            at += used;
        }
        prop_assert_eq!(at, buf.len());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
        for t in 0..5u8 {
            let _ = promshard_collector::wal::codec::decode_payload(t, &bytes);
        }
    }

    #[test]
    fn any_single_bit_flip_is_detected(rec in record(), bit in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        encode_record(&rec, &mut buf);
        let i = bit.index(buf.len() * 8);
        buf[i / 8] ^= 1 << (i % 8);
        match decode_frame(&buf) {
            Err(_) => {}
            // CRC-32 catches every single-bit error in type and payload; a
            // flipped length moves the CRC'd range, or runs past the end.
            Ok((got, _)) => prop_assert!(false, "flip at bit {i} undetected: {got:?}"),
        }
    }
}
