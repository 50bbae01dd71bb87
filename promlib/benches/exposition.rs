//! Parse throughput on a node_exporter-like body: HELP/TYPE lines, counters,
//! gauges and histograms; 1k and 10k lines. Each sample is parsed to
//! (series bytes, value, timestamp), what a scrape loop needs per sample.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promshard_promlib::exposition::{Entry, Format, Parser};

/// A body of about `lines` lines; returns it and its number of samples.
fn node_exporter_like(lines: usize) -> (String, usize) {
    let mut out = String::new();
    let mut n_lines = 0;
    let mut samples = 0;
    let mut family = 0;
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    while n_lines < lines {
        match family % 3 {
            0 => {
                out.push_str(&format!(
                    "# HELP node_cpu_seconds_total_{family} Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total_{family} counter\n"
                ));
                n_lines += 2;
                for cpu in 0..4 {
                    for m in modes {
                        out.push_str(&format!(
                            "node_cpu_seconds_total_{family}{{cpu=\"{cpu}\",mode=\"{m}\"}} {}.{}\n",
                            123_456 + cpu * 1000 + m.len(),
                            family % 100
                        ));
                        n_lines += 1;
                        samples += 1;
                    }
                }
            }
            1 => {
                out.push_str(&format!(
                    "# HELP node_memory_MemFree_bytes_{family} Memory information field MemFree_bytes.\n# TYPE node_memory_MemFree_bytes_{family} gauge\n"
                ));
                out.push_str(&format!(
                    "node_memory_MemFree_bytes_{family} 1.234567168e+09\n"
                ));
                out.push_str(&format!(
                    "node_filesystem_avail_bytes_{family}{{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}} 4.2887872512e+10\n"
                ));
                n_lines += 4;
                samples += 2;
            }
            _ => {
                out.push_str(&format!(
                    "# HELP http_request_duration_seconds_{family} A histogram of latencies.\n# TYPE http_request_duration_seconds_{family} histogram\n"
                ));
                n_lines += 2;
                for le in [
                    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                    "+Inf",
                ] {
                    out.push_str(&format!(
                        "http_request_duration_seconds_{family}_bucket{{handler=\"/api/v1/query\",le=\"{le}\"}} {}\n",
                        1000 + le.len()
                    ));
                    n_lines += 1;
                    samples += 1;
                }
                out.push_str(&format!(
                    "http_request_duration_seconds_{family}_sum{{handler=\"/api/v1/query\"}} 53.42\nhttp_request_duration_seconds_{family}_count{{handler=\"/api/v1/query\"}} 1012\n"
                ));
                n_lines += 2;
                samples += 2;
            }
        }
        family += 1;
    }
    (out, samples)
}

fn parse_samples(body: &[u8], format: Format) -> usize {
    let mut n = 0;
    for e in Parser::new(body, format) {
        if let Ok(Entry::Series(s)) = e {
            black_box((s.raw(), s.value, s.timestamp_ms));
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    for lines in [1_000, 10_000] {
        let (text, samples) = node_exporter_like(lines);
        let om = format!("{text}# EOF\n");
        eprintln!(
            "body {lines} lines: {} bytes, {samples} samples",
            text.len()
        );
        assert_eq!(parse_samples(text.as_bytes(), Format::Text), samples);
        assert_eq!(parse_samples(om.as_bytes(), Format::OpenMetrics), samples);
        let mut g = c.benchmark_group(format!("exposition_{lines}_lines"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("text", |b| {
            b.iter(|| parse_samples(black_box(text.as_bytes()), Format::Text))
        });
        g.bench_function("openmetrics", |b| {
            b.iter(|| parse_samples(black_box(om.as_bytes()), Format::OpenMetrics))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
