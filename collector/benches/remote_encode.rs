//! Remote write body: encoding and snappy-compressing one 2000-series
//! batch (one sample per series, as a shard sends after a scrape round),
//! with the hand encoder over pre-encoded labels ("hand") and with prost
//! over label sets copied into the message ("prost", the former way).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promshard_collector::remote::encode::{
    LabeledSample, QueuedSample, RequestEncoder, compress, encode_labels, prost_write_request,
};
use promshard_collector::series::SeriesRef;
use promshard_promlib::labels::Labels;

const SERIES: u64 = 2000;

fn labels(r: u64) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", r % 50)),
        ("cpu", (r % 16).to_string()),
        ("instance", format!("10.0.{}.{}:9100", r / 250, r % 250)),
        ("job", "node".to_string()),
        ("mode", format!("m{}", r / 50)),
    ])
}

fn bench(c: &mut Criterion) {
    let ts = 1_700_000_000_000i64;
    let mut scratch = Vec::new();
    let queued: Vec<QueuedSample> = (0..SERIES)
        .map(|r| QueuedSample {
            position: 1,
            series: SeriesRef(r),
            labels: encode_labels(&labels(r), &mut scratch).expect("named"),
            timestamp_ms: ts,
            value: r as f64 * 0.25,
        })
        .collect();
    let labeled: Vec<LabeledSample> = (0..SERIES)
        .map(|r| LabeledSample {
            series: SeriesRef(r),
            labels: Arc::new(labels(r)),
            timestamp_ms: ts,
            value: r as f64 * 0.25,
        })
        .collect();
    let mut g = c.benchmark_group("remote_encode_2000_series");
    g.throughput(Throughput::Elements(SERIES));
    g.bench_function("prost", |b| {
        b.iter(|| {
            compress(&prost_write_request(&labeled))
                .expect("compress")
                .len()
        })
    });
    let mut enc = RequestEncoder::new();
    g.bench_function("hand", |b| {
        b.iter(|| enc.encode_compressed(&queued).expect("compress").len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
