//! `GET /metrics`: the collector's own metrics, OpenMetrics text built
//! with `prometheus-client` from the live counters at each request.
//!
//! Counters are named without `_total` here; the encoder appends it, so
//! the exposed names are the ones in [`METRICS`].

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::ApiState;
use crate::remote::{DropReason, RemoteStats};
use crate::scrape::Health;

/// Every metric family `/metrics` exposes (sample names), with its help.
pub const METRICS: &[(&str, &str)] = &[
    (
        "promshard_collector_scrapes_total",
        "Scrapes attempted by all scrape loops.",
    ),
    (
        "promshard_collector_scrape_failures_total",
        "Scrapes that failed (network error, timeout, bad status, parse error, limit exceeded).",
    ),
    (
        "promshard_collector_samples_appended_total",
        "Samples the scrape loops appended to the WAL (after relabeling, with synthetic series and staleness markers).",
    ),
    (
        "promshard_collector_append_failures_total",
        "Scrape results that could not be appended to the WAL.",
    ),
    (
        "promshard_collector_series",
        "Series of all running targets at their last scrape.",
    ),
    (
        "promshard_collector_targets",
        "Running targets by health (up, down, unknown).",
    ),
    (
        "promshard_collector_ready",
        "1 when the collector is ready.",
    ),
    (
        "promshard_collector_wal_bytes",
        "Bytes of all WAL segment files.",
    ),
    (
        "promshard_collector_wal_segments",
        "WAL segment files, including the one being written.",
    ),
    (
        "promshard_collector_wal_appended_samples_total",
        "Samples appended to the WAL since it was opened.",
    ),
    (
        "promshard_collector_wal_appended_bytes_total",
        "Bytes appended to the WAL since it was opened.",
    ),
    (
        "promshard_collector_wal_deleted_segments_total",
        "WAL segments deleted after every consumer delivered them.",
    ),
    (
        "promshard_collector_wal_dropped_segments_total",
        "WAL segments deleted by the size or age bound before every consumer delivered them.",
    ),
    (
        "promshard_collector_wal_dropped_samples_total",
        "Samples in WAL segments dropped by the size or age bound (an upper bound).",
    ),
    (
        "promshard_collector_wal_truncated_tails_total",
        "Torn or corrupt WAL segment tails cut off when the WAL was opened.",
    ),
    (
        "promshard_collector_wal_oldest_segment_age_seconds",
        "Time since the oldest WAL segment was last written.",
    ),
    (
        "promshard_collector_wal_consumer_backlog_bytes",
        "WAL bytes between a consumer's checkpoint and the head, per consumer.",
    ),
    (
        "promshard_collector_remote_samples_sent_total",
        "Samples the remote acknowledged (2xx), per remote.",
    ),
    (
        "promshard_collector_remote_samples_retried_total",
        "Sample sends retried (samples times attempts), per remote.",
    ),
    (
        "promshard_collector_remote_samples_dropped_total",
        "Samples dropped instead of delivered, per remote and reason (relabel, unknown_series, no_metric_name, client_error).",
    ),
    (
        "promshard_collector_remote_samples_pending",
        "Samples taken from the WAL and neither delivered nor dropped yet, per remote.",
    ),
    (
        "promshard_collector_remote_bytes_sent_total",
        "Compressed request bytes sent (every attempt), per remote.",
    ),
    (
        "promshard_collector_remote_failed_requests_total",
        "Failed send attempts (network error, timeout, non-2xx), per remote.",
    ),
    (
        "promshard_collector_remote_metadata_sent_total",
        "Metadata entries the remote acknowledged, per remote.",
    ),
    (
        "promshard_collector_remote_shards",
        "Current shards of the remote's queue.",
    ),
    (
        "promshard_collector_remote_highest_sent_timestamp_seconds",
        "Highest sample timestamp the remote acknowledged (absent before the first), per remote.",
    ),
    (
        "promshard_collector_remote_backlog_bytes",
        "WAL bytes not yet delivered to the remote.",
    ),
];

fn help(sample_name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _)| *n == sample_name)
        .map_or("", |(_, h)| h)
}

/// Writes one family: `name` is the sample name (with `_total` for
/// counters, which the encoder adds back).
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    kind: MetricType,
    items: &[(L, f64)],
) -> fmt::Result {
    let base = match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let mut m = enc.encode_descriptor(base, help(name), None, kind)?;
    for (labels, v) in items {
        let fam = m.encode_family(labels)?;
        value(fam, kind, *v)?;
    }
    Ok(())
}

fn value(mut m: MetricEncoder, kind: MetricType, v: f64) -> fmt::Result {
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, f64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

fn one(enc: &mut DescriptorEncoder, name: &str, kind: MetricType, v: f64) -> fmt::Result {
    let base = match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let m = enc.encode_descriptor(base, help(name), None, kind)?;
    value(m, kind, v)
}

const C: MetricType = MetricType::Counter;
const G: MetricType = MetricType::Gauge;

/// Reads the state at each encode.
pub(crate) struct StateCollector(pub ApiState);

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateCollector")
    }
}

type RemoteLabels = Vec<(&'static str, String)>;

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let st = &self.0;
        let s = &st.scrape_stats;
        one(
            &mut enc,
            "promshard_collector_scrapes_total",
            C,
            s.scrapes.load(Relaxed) as f64,
        )?;
        one(
            &mut enc,
            "promshard_collector_scrape_failures_total",
            C,
            s.scrape_failures.load(Relaxed) as f64,
        )?;
        one(
            &mut enc,
            "promshard_collector_samples_appended_total",
            C,
            s.samples_appended.load(Relaxed) as f64,
        )?;
        one(
            &mut enc,
            "promshard_collector_append_failures_total",
            C,
            s.append_failures.load(Relaxed) as f64,
        )?;

        let targets = (st.targets)();
        let series: u64 = targets.iter().map(|t| t.series).sum();
        one(&mut enc, "promshard_collector_series", G, series as f64)?;
        let by_health: Vec<([(&str, &str); 1], f64)> = [
            (Health::Up, "up"),
            (Health::Down, "down"),
            (Health::Unknown, "unknown"),
        ]
        .iter()
        .map(|(h, name)| {
            let n = targets.iter().filter(|t| t.health == *h).count();
            ([("health", *name)], n as f64)
        })
        .collect();
        family(&mut enc, "promshard_collector_targets", G, &by_health)?;
        let ready = st.ready.load(Relaxed);
        one(
            &mut enc,
            "promshard_collector_ready",
            G,
            f64::from(u8::from(ready)),
        )?;

        let w = st.wal.stats();
        one(
            &mut enc,
            "promshard_collector_wal_bytes",
            G,
            w.bytes_on_disk as f64,
        )?;
        one(
            &mut enc,
            "promshard_collector_wal_segments",
            G,
            w.segments as f64,
        )?;
        for (name, v) in [
            (
                "promshard_collector_wal_appended_samples_total",
                w.appended_samples,
            ),
            (
                "promshard_collector_wal_appended_bytes_total",
                w.appended_bytes,
            ),
            (
                "promshard_collector_wal_deleted_segments_total",
                w.deleted_segments,
            ),
            (
                "promshard_collector_wal_dropped_segments_total",
                w.dropped_segments,
            ),
            (
                "promshard_collector_wal_dropped_samples_total",
                w.dropped_samples,
            ),
            (
                "promshard_collector_wal_truncated_tails_total",
                w.truncated_tails,
            ),
        ] {
            one(&mut enc, name, C, v as f64)?;
        }
        one(
            &mut enc,
            "promshard_collector_wal_oldest_segment_age_seconds",
            G,
            w.oldest_segment_age.map_or(0.0, |d| d.as_secs_f64()),
        )?;
        let backlog: Vec<([(&str, String); 1], f64)> = w
            .consumers
            .iter()
            .map(|c| ([("consumer", c.name.clone())], c.backlog_bytes as f64))
            .collect();
        family(
            &mut enc,
            "promshard_collector_wal_consumer_backlog_bytes",
            G,
            &backlog,
        )?;

        let remotes = (st.remotes)();
        let labels = |name: &str, url: &str| -> RemoteLabels {
            vec![("remote", name.to_string()), ("url", url.to_string())]
        };
        let per_remote = |f: fn(&RemoteStats) -> &AtomicU64| -> Vec<(RemoteLabels, f64)> {
            remotes
                .iter()
                .map(|r| (labels(&r.name, &r.url), f(&r.stats).load(Relaxed) as f64))
                .collect()
        };
        type Stat = fn(&RemoteStats) -> &AtomicU64;
        let before_dropped: [(&str, MetricType, Stat); 2] = [
            ("promshard_collector_remote_samples_sent_total", C, |s| {
                &s.samples_sent
            }),
            ("promshard_collector_remote_samples_retried_total", C, |s| {
                &s.samples_retried
            }),
        ];
        for (name, kind, stat) in before_dropped {
            family(&mut enc, name, kind, &per_remote(stat))?;
        }
        let mut dropped = Vec::new();
        for r in &remotes {
            for (reason, label) in [
                (DropReason::Relabel, "relabel"),
                (DropReason::UnknownSeries, "unknown_series"),
                (DropReason::NoMetricName, "no_metric_name"),
                (DropReason::ClientError, "client_error"),
            ] {
                let mut l = labels(&r.name, &r.url);
                l.push(("reason", label.to_string()));
                dropped.push((l, r.stats.dropped(reason) as f64));
            }
        }
        family(
            &mut enc,
            "promshard_collector_remote_samples_dropped_total",
            C,
            &dropped,
        )?;
        let after_dropped: [(&str, MetricType, Stat); 5] = [
            ("promshard_collector_remote_samples_pending", G, |s| {
                &s.pending_samples
            }),
            ("promshard_collector_remote_bytes_sent_total", C, |s| {
                &s.bytes_sent
            }),
            ("promshard_collector_remote_failed_requests_total", C, |s| {
                &s.failed_requests
            }),
            ("promshard_collector_remote_metadata_sent_total", C, |s| {
                &s.metadata_sent
            }),
            ("promshard_collector_remote_shards", G, |s| {
                &s.current_shards
            }),
        ];
        for (name, kind, stat) in after_dropped {
            family(&mut enc, name, kind, &per_remote(stat))?;
        }
        let highest: Vec<(RemoteLabels, f64)> = remotes
            .iter()
            .filter_map(|r| {
                let ts = r.stats.highest_sent_timestamp_ms.load(Relaxed);
                (ts != i64::MIN).then(|| (labels(&r.name, &r.url), ts as f64 / 1000.0))
            })
            .collect();
        family(
            &mut enc,
            "promshard_collector_remote_highest_sent_timestamp_seconds",
            G,
            &highest,
        )?;
        let backlog: Vec<(RemoteLabels, f64)> = remotes
            .iter()
            .map(|r| (labels(&r.name, &r.url), r.backlog_bytes as f64))
            .collect();
        family(
            &mut enc,
            "promshard_collector_remote_backlog_bytes",
            G,
            &backlog,
        )?;
        Ok(())
    }
}

/// The body of `/metrics` (OpenMetrics text, ending in `# EOF`).
pub(crate) fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}
