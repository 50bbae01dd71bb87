//! WAL throughput: appending scrape-sized batches and reading them back.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use promshard_collector::series::{AppendBatch, Sample, SeriesDef, SeriesRef};
use promshard_collector::wal::{FsyncPolicy, Wal, WalOptions, WalRecord};
use promshard_promlib::labels::Labels;

const SERIES: u64 = 1000;

fn defs() -> AppendBatch {
    AppendBatch {
        series: (0..SERIES)
            .map(|r| SeriesDef {
                series: SeriesRef(r),
                labels: Labels::from_pairs([
                    ("__name__", format!("node_metric_{}", r % 50)),
                    ("cpu", (r % 16).to_string()),
                    ("instance", "10.0.0.1:9100".to_string()),
                    ("job", "node".to_string()),
                    ("mode", format!("m{}", r / 50)),
                ]),
            })
            .collect(),
        ..Default::default()
    }
}

fn scrape(ts: i64) -> AppendBatch {
    AppendBatch {
        samples: (0..SERIES)
            .map(|r| Sample {
                series: SeriesRef(r),
                timestamp_ms: ts,
                value: (ts as f64) * 0.5 + r as f64,
            })
            .collect(),
        ..Default::default()
    }
}

fn opts(fsync: FsyncPolicy) -> WalOptions {
    WalOptions {
        fsync,
        segment_size: 16 << 20,
        // Keeps the disk bounded while the bench appends gigabytes.
        max_bytes: Some(256 << 20),
        ..WalOptions::default()
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(SERIES));
    g.measurement_time(Duration::from_secs(5));
    for (name, fsync) in [
        ("never", FsyncPolicy::Never),
        ("interval_1s", FsyncPolicy::Interval(Duration::from_secs(1))),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), opts(fsync)).unwrap();
        wal.append(&defs()).unwrap();
        let batch = scrape(1_700_000_000_000);
        g.bench_function(format!("1000_samples_{name}"), |b| {
            b.iter(|| wal.append(&batch).unwrap())
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let batches = 200u64;
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(FsyncPolicy::Never)).unwrap();
    wal.append(&defs()).unwrap();
    for i in 0..batches {
        wal.append(&scrape(i as i64 * 15_000)).unwrap();
    }
    let mut g = c.benchmark_group("wal_read");
    g.throughput(Throughput::Elements(SERIES * batches));
    g.measurement_time(Duration::from_secs(5));
    let mut n = 0u64;
    g.bench_function("200k_samples", |b| {
        b.iter_batched(
            || {
                n += 1;
                wal.reader(&format!("r{n}")).unwrap()
            },
            |mut r| {
                let mut samples = 0usize;
                while let Some(e) = r.try_next().unwrap() {
                    if let WalRecord::Samples(s) = e.record {
                        samples += s.len();
                    }
                }
                assert_eq!(samples as u64, SERIES * batches);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
