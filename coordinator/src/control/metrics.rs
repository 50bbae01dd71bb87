//! The coordinator's `/metrics`: OpenMetrics text built with
//! prometheus-client from the control loop's state at each request.
//! Counters are named without `_total` here; the encoder appends it.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Shared, lock};
use crate::provider::ShardProvider;

type Labels = Vec<(&'static str, String)>;

/// One metric family with its samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

fn gauge(name: &'static str, help: &'static str, v: f64) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        samples: vec![(Vec::new(), v)],
    }
}

fn counter(name: &'static str, help: &'static str, samples: Vec<(Labels, f64)>) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        samples,
    }
}

fn labelled(name: &'static str, help: &'static str, samples: Vec<(Labels, f64)>) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        samples,
    }
}

/// Everything `/metrics` shows, read under the state lock once.
fn families(shared: &Shared, provider: &ShardProvider) -> Vec<Family> {
    let st = lock(&shared.state);
    let mut by_state: BTreeMap<&'static str, f64> = [
        ("assigned", 0.0),
        ("unassigned", 0.0),
        ("migrating", 0.0),
        ("oversized", 0.0),
    ]
    .into_iter()
    .collect();
    let oversized = st
        .last_plan
        .as_ref()
        .map(|p| p.oversized.clone())
        .unwrap_or_default();
    for t in st.registry.targets() {
        let s = if st.migrating.contains_key(&t.id) {
            "migrating"
        } else if !st.assignment.contains_key(&t.id) {
            "unassigned"
        } else if oversized.contains(&t.id) {
            "oversized"
        } else {
            "assigned"
        };
        *by_state.entry(s).or_default() += 1.0;
    }
    let loads = st.shard_loads();
    let mut series = Vec::new();
    let mut sps = Vec::new();
    let mut util = Vec::new();
    let mut targets = Vec::new();
    let mut up = 0.0;
    for s in st.shards.values() {
        let (load, n) = loads.get(&s.id).copied().unwrap_or_default();
        let l = vec![("shard", s.id.0.clone())];
        series.push((l.clone(), load.series as f64));
        sps.push((l.clone(), load.samples_per_second));
        util.push((l.clone(), s.capacity.utilization(load)));
        targets.push((l, n as f64));
        if s.attached() {
            up += 1.0;
        }
    }
    let mut per_job: BTreeMap<String, f64> = BTreeMap::new();
    for t in st.registry.targets() {
        *per_job.entry(t.job.clone()).or_default() += 1.0;
    }
    let c = &st.counters;
    let plan = st.last_plan.as_ref();
    let hub = shared.hub.stats();
    let explore = shared
        .explorer
        .as_ref()
        .map(|e| e.stats())
        .unwrap_or_default();
    let kind = |k: &'static str| vec![("kind", k.to_string())];
    vec![
        labelled(
            "promshard_coordinator_targets",
            "Targets by state (assigned, unassigned, migrating, oversized).",
            by_state
                .into_iter()
                .map(|(k, v)| (vec![("state", k.to_string())], v))
                .collect(),
        ),
        labelled(
            "promshard_coordinator_discovered_targets",
            "Targets after relabeling, by job.",
            per_job
                .into_iter()
                .map(|(j, v)| (vec![("job", j)], v))
                .collect(),
        ),
        gauge(
            "promshard_coordinator_shards_attached",
            "Shards attached right now.",
            up,
        ),
        labelled(
            "promshard_coordinator_shard_series",
            "Series of the targets assigned to each shard (load model).",
            series,
        ),
        labelled(
            "promshard_coordinator_shard_samples_per_second",
            "Samples per second of the targets assigned to each shard.",
            sps,
        ),
        labelled(
            "promshard_coordinator_shard_utilization",
            "Each shard's load over its capacity (the larger ratio).",
            util,
        ),
        labelled(
            "promshard_coordinator_shard_targets",
            "Targets assigned to each shard.",
            targets,
        ),
        gauge(
            "promshard_coordinator_imbalance",
            "Max over mean shard utilization at the last round.",
            plan.map_or(0.0, |p| p.imbalance),
        ),
        gauge(
            "promshard_coordinator_desired_shards",
            "Shards the load needs at the target utilization (for autoscalers).",
            plan.map_or(0.0, |p| p.desired_shards as f64),
        ),
        counter(
            "promshard_coordinator_moves_total",
            "Targets placed or moved, by reason.",
            c.moves
                .iter()
                .map(|(r, v)| (vec![("reason", (*r).to_string())], *v as f64))
                .collect(),
        ),
        counter(
            "promshard_coordinator_moves_cancelled_total",
            "Handovers cancelled because an acknowledgement missed its deadline.",
            vec![(Vec::new(), c.moves_cancelled as f64)],
        ),
        counter(
            "promshard_coordinator_delta_failures_total",
            "Assignment deltas refused or not acknowledged in time.",
            vec![(Vec::new(), c.delta_failures as f64)],
        ),
        counter(
            "promshard_coordinator_plan_rounds_total",
            "Planning rounds run.",
            vec![(Vec::new(), c.rounds as f64)],
        ),
        counter(
            "promshard_coordinator_reloads_total",
            "Config reloads by result.",
            vec![
                (vec![("result", "success".to_string())], c.reloads as f64),
                (
                    vec![("result", "failure".to_string())],
                    c.reload_failures as f64,
                ),
            ],
        ),
        counter(
            "promshard_coordinator_explores_total",
            "Explore scrapes of new targets by result.",
            vec![
                (
                    vec![("result", "success".to_string())],
                    explore.succeeded as f64,
                ),
                (
                    vec![("result", "failure".to_string())],
                    explore.failed as f64,
                ),
            ],
        ),
        counter(
            "promshard_coordinator_grpc_messages_received_total",
            "promshard.v1 messages received from shards, by kind.",
            vec![
                (kind("hello"), hub.messages_in.hello as f64),
                (kind("report"), hub.messages_in.report as f64),
                (kind("ack"), hub.messages_in.ack as f64),
                (kind("pong"), hub.messages_in.pong as f64),
            ],
        ),
        counter(
            "promshard_coordinator_grpc_messages_sent_total",
            "promshard.v1 messages sent to shards, by kind.",
            vec![
                (kind("jobs"), hub.messages_out.jobs as f64),
                (kind("assignment"), hub.messages_out.assignment as f64),
                (kind("ping"), hub.messages_out.ping as f64),
            ],
        ),
        counter(
            "promshard_coordinator_grpc_acks_total",
            "Assignment acknowledgements by result.",
            vec![
                (vec![("result", "ok".to_string())], hub.acks.ok as f64),
                (
                    vec![("result", "failed".to_string())],
                    hub.acks.failed as f64,
                ),
                (
                    vec![("result", "timeout".to_string())],
                    hub.acks.timeout as f64,
                ),
            ],
        ),
        gauge(
            "promshard_coordinator_ready",
            "1 once discovery settled and a round ran.",
            f64::from(u8::from(
                shared.ready.load(std::sync::atomic::Ordering::Relaxed),
            )),
        ),
        labelled(
            "promshard_coordinator_provider_shards",
            "Shards the provider runs (local) by provider kind.",
            vec![(
                vec![("provider", provider.kind().to_string())],
                provider.shards().len() as f64,
            )],
        ),
    ]
}

struct Snapshot(Vec<Family>);

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        for fam in &self.0 {
            let base = match fam.kind {
                MetricType::Counter => fam.name.strip_suffix("_total").unwrap_or(fam.name),
                _ => fam.name,
            };
            let mut m = enc.encode_descriptor(base, fam.help, None, fam.kind)?;
            for (labels, v) in &fam.samples {
                if labels.is_empty() {
                    match fam.kind {
                        MetricType::Counter => {
                            m.encode_counter::<NoLabelSet, _, f64>(v, None)?;
                        }
                        _ => m.encode_gauge(v)?,
                    }
                    // A family without labels has one sample.
                    break;
                }
                let mut fm = m.encode_family(labels)?;
                match fam.kind {
                    MetricType::Counter => fm.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    _ => fm.encode_gauge(v)?,
                }
            }
        }
        Ok(())
    }
}

/// The OpenMetrics text of the coordinator's metrics.
pub(crate) fn render(shared: &Shared, provider: &ShardProvider) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(families(shared, provider))));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
