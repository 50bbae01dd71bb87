//! The pipeline on a 1000-series node_exporter-like body: the first scrape
//! (every series is label work) against the cached steady state.

#[path = "../tests/pipeline_common/mod.rs"]
mod pipeline_common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_common::{node_body, node_settings};
use promshard_collector::pipeline::{RefAllocator, TargetPipeline};
use promshard_collector::series::AppendBatch;
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;

const SERIES: usize = 1000;

fn target() -> Labels {
    Labels::from_pairs([("job", "node"), ("instance", "10.0.0.1:9100")])
}

fn bench(c: &mut Criterion) {
    let body = node_body(SERIES, 0);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("first_scrape_1000", |b| {
        b.iter(|| {
            let mut p =
                TargetPipeline::new(node_settings(), target(), Arc::new(RefAllocator::new(1)));
            let mut out = AppendBatch::default();
            let r = p.on_scrape(
                &body,
                Format::Text,
                1000,
                Duration::from_millis(5),
                &mut out,
            );
            black_box((r, out));
        })
    });
    g.bench_function("cached_steady_state_1000", |b| {
        let mut p = TargetPipeline::new(node_settings(), target(), Arc::new(RefAllocator::new(1)));
        let mut ts = 1000;
        let mut out = AppendBatch::default();
        p.on_scrape(&body, Format::Text, ts, Duration::from_millis(5), &mut out);
        b.iter(|| {
            ts += 1000;
            out.series.clear();
            out.samples.clear();
            out.metadata.clear();
            let r = p.on_scrape(&body, Format::Text, ts, Duration::from_millis(5), &mut out);
            assert_eq!(out.samples.len(), SERIES + 5);
            black_box(r);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
