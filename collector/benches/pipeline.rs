//! The pipeline on a 1000-series node_exporter-like body: the first scrape
//! (every series is label work) against the cached steady state.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promshard_collector::pipeline::{JobSettings, RefAllocator, TargetPipeline};
use promshard_collector::series::AppendBatch;
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;

const SERIES: usize = 1000;

/// Families of 10-50 series with node_exporter's label shapes.
fn node_body() -> Vec<u8> {
    let mut b = String::new();
    let mut n = 0;
    let mut family = 0;
    while n < SERIES {
        let name = format!("node_family_{family}_total");
        b.push_str(&format!(
            "# HELP {name} Family {family} of node metrics.\n# TYPE {name} counter\n"
        ));
        for i in 0..(10 + family % 40) {
            if n == SERIES {
                break;
            }
            b.push_str(&format!(
                "{name}{{cpu=\"{}\",device=\"sda{}\",mode=\"user\"}} {}.25\n",
                i % 16,
                i,
                1_000_000 + n * 37
            ));
            n += 1;
        }
        family += 1;
    }
    b.into_bytes()
}

fn settings() -> Arc<JobSettings> {
    Arc::new(JobSettings {
        job_name: "node".into(),
        honor_labels: false,
        honor_timestamps: true,
        metric_relabel_configs: Vec::new(),
        sample_limit: 0,
        label_limit: 0,
        label_name_length_limit: 0,
        label_value_length_limit: 0,
        external_labels: Labels::from_pairs([("cluster", "c1")]),
    })
}

fn target() -> Labels {
    Labels::from_pairs([("job", "node"), ("instance", "10.0.0.1:9100")])
}

fn bench(c: &mut Criterion) {
    let body = node_body();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("first_scrape_1000", |b| {
        b.iter(|| {
            let mut p = TargetPipeline::new(settings(), target(), Arc::new(RefAllocator::new(1)));
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
        let mut p = TargetPipeline::new(settings(), target(), Arc::new(RefAllocator::new(1)));
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
