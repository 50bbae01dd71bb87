//! The target set every strategy places: Zipf-sized targets spread over
//! several jobs, each with the label set Prometheus and vmagent would see
//! after relabeling (`__address__`, `__scheme__`, `__metrics_path__`,
//! `__scrape_interval__`, `__scrape_timeout__`, `job`, `instance`, and
//! Kubernetes-style labels).

use std::collections::BTreeSet;

use promshard_promlib::labels::{Labels, target_id};

use crate::zipf::zipf_sizes;

/// One scrape target.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareTarget {
    /// promshard's stable id: [`target_id`] of the job and `labels`.
    pub id: u64,
    pub job: String,
    /// `__address__` (also what the OpenTelemetry allocator keys on: its
    /// `TargetURL` is the discovered `__address__`; no rule here rewrites it).
    pub address: String,
    /// The labels after `relabel_configs`, meta labels removed, before
    /// the `instance` default: what vmagent 1.79 hashes for cluster mode.
    pub relabeled: Labels,
    /// Prometheus' final labels: `relabeled` plus `instance` = `__address__`
    /// when relabeling did not set it.
    pub labels: Labels,
    pub series: u64,
    pub samples_per_second: f64,
}

/// How the target set is built.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TargetSetConfig {
    pub targets: usize,
    pub jobs: usize,
    /// Zipf exponent of the sizes (0: every target has `series` series).
    pub zipf: f64,
    /// Mean series per target.
    pub series: usize,
    pub seed: u64,
}

/// splitmix64: a small deterministic generator (no dependency, the same
/// sequence on every platform).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (n > 0; the modulo bias is negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The kinds of job the set mixes, each with its own scrape settings and
/// labels.
#[derive(Clone, Copy, Debug)]
enum JobKind {
    /// kubernetes_sd role pod (Prometheus Operator PodMonitor style).
    Pods,
    /// node_exporter from file_sd, `instance` set to the host name.
    Node,
    /// kubelet cAdvisor over https.
    Cadvisor,
    /// kubernetes_sd role endpoints (ServiceMonitor style).
    Endpoints,
    /// Database exporters from static_configs, DNS names.
    Static,
}

struct JobTemplate {
    name: &'static str,
    kind: JobKind,
    /// Go's `time.Duration.String()` form, as vmagent puts it in
    /// `__scrape_interval__`.
    interval: &'static str,
    interval_seconds: f64,
    timeout: &'static str,
    scheme: &'static str,
    metrics_path: &'static str,
    port: u16,
}

const TEMPLATES: [JobTemplate; 5] = [
    JobTemplate {
        name: "kubernetes-pods",
        kind: JobKind::Pods,
        interval: "30s",
        interval_seconds: 30.0,
        timeout: "10s",
        scheme: "http",
        metrics_path: "/metrics",
        port: 8080,
    },
    JobTemplate {
        name: "node-exporter",
        kind: JobKind::Node,
        interval: "30s",
        interval_seconds: 30.0,
        timeout: "10s",
        scheme: "http",
        metrics_path: "/metrics",
        port: 9100,
    },
    JobTemplate {
        name: "kubelet-cadvisor",
        kind: JobKind::Cadvisor,
        interval: "15s",
        interval_seconds: 15.0,
        timeout: "10s",
        scheme: "https",
        metrics_path: "/metrics/cadvisor",
        port: 10250,
    },
    JobTemplate {
        name: "service-endpoints",
        kind: JobKind::Endpoints,
        interval: "1m0s",
        interval_seconds: 60.0,
        timeout: "10s",
        scheme: "http",
        metrics_path: "/metrics",
        port: 9090,
    },
    JobTemplate {
        name: "databases",
        kind: JobKind::Static,
        interval: "1m0s",
        interval_seconds: 60.0,
        timeout: "30s",
        scheme: "http",
        metrics_path: "/metrics",
        port: 9104,
    },
];

const NAMESPACES: [&str; 8] = [
    "default",
    "payments",
    "checkout",
    "search",
    "monitoring",
    "ingress",
    "batch",
    "identity",
];

/// Builds the set: target `i` of `jobs` jobs (round-robin over the job
/// kinds; job names get a suffix past the fifth), a unique pod IP (or DNS
/// name), and a size from [`zipf_sizes`] shuffled over the targets so that
/// size does not follow job or address. Deterministic for a config.
pub fn build(cfg: &TargetSetConfig) -> Vec<CompareTarget> {
    let mut rng = SplitMix64::new(cfg.seed);
    let jobs = cfg.jobs.max(1);
    let mut sizes = zipf_sizes(cfg.targets, cfg.series, cfg.zipf);
    rng.shuffle(&mut sizes);

    let mut used_ips = BTreeSet::new();
    let mut out = Vec::with_capacity(cfg.targets);
    for (i, size) in sizes.into_iter().enumerate() {
        let j = (rng.below(jobs as u64)) as usize;
        let tpl = &TEMPLATES[j % TEMPLATES.len()];
        let job = if j < TEMPLATES.len() {
            tpl.name.to_string()
        } else {
            format!("{}-{}", tpl.name, j / TEMPLATES.len())
        };
        // A unique address in 10.0.0.0/8 (pods and nodes share the space).
        let ip = loop {
            let v = (rng.next_u64() & 0x00ff_ffff) as u32;
            if used_ips.insert(v) {
                break v;
            }
        };
        let ip = format!("10.{}.{}.{}", ip >> 16, (ip >> 8) & 0xff, ip & 0xff);
        let ns = NAMESPACES[rng.below(NAMESPACES.len() as u64) as usize];
        let node = format!("node-{:04}", rng.below(2000));
        let mut pairs: Vec<(String, String)> = vec![
            ("job".into(), job.clone()),
            ("__scheme__".into(), tpl.scheme.into()),
            ("__metrics_path__".into(), tpl.metrics_path.into()),
            ("__scrape_interval__".into(), tpl.interval.into()),
            ("__scrape_timeout__".into(), tpl.timeout.into()),
        ];
        let address = match tpl.kind {
            JobKind::Pods => {
                let addr = format!("{ip}:{}", tpl.port);
                pairs.push(("namespace".into(), ns.into()));
                pairs.push(("pod".into(), format!("app-{}-{:05x}", ns, i)));
                pairs.push(("container".into(), "app".into()));
                addr
            }
            JobKind::Node => {
                // file_sd node list; relabeling sets instance to the host.
                pairs.push(("instance".into(), format!("{node}-{i}")));
                format!("{ip}:{}", tpl.port)
            }
            JobKind::Cadvisor => {
                pairs.push(("node".into(), format!("{node}-{i}")));
                format!("{ip}:{}", tpl.port)
            }
            JobKind::Endpoints => {
                pairs.push(("namespace".into(), ns.into()));
                pairs.push(("service".into(), format!("svc-{}", i % 97)));
                pairs.push(("pod".into(), format!("svc-{}-{:05x}", i % 97, i)));
                pairs.push(("endpoint".into(), "http-metrics".into()));
                format!("{ip}:{}", tpl.port)
            }
            JobKind::Static => {
                pairs.push(("env".into(), "prod".into()));
                format!("db-{i:05}.{ns}.example.internal:{}", tpl.port)
            }
        };
        pairs.push(("__address__".into(), address.clone()));
        let relabeled = Labels::from_pairs(pairs);
        let mut labels = relabeled.clone();
        if !labels.contains("instance") {
            labels.insert("instance", address.clone());
        }
        let series = size as u64;
        out.push(CompareTarget {
            id: target_id(&job, &labels),
            job,
            address,
            relabeled,
            labels,
            series,
            samples_per_second: series as f64 / tpl.interval_seconds,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> TargetSetConfig {
        TargetSetConfig {
            targets: 500,
            jobs: 7,
            zipf: 1.0,
            series: 100,
            seed,
        }
    }

    #[test]
    fn the_set_is_deterministic_unique_and_sums_to_the_total() {
        let a = build(&cfg(1));
        assert_eq!(a, build(&cfg(1)));
        assert_ne!(a, build(&cfg(2)));
        assert_eq!(a.iter().map(|t| t.series).sum::<u64>(), 500 * 100);
        let ids: BTreeSet<u64> = a.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), a.len());
        let addrs: BTreeSet<&str> = a.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(addrs.len(), a.len());
        let jobs: BTreeSet<&str> = a.iter().map(|t| t.job.as_str()).collect();
        assert_eq!(jobs.len(), 7);
        for t in &a {
            assert_eq!(t.labels.get("__address__"), Some(t.address.as_str()));
            assert_eq!(t.labels.get("job"), Some(t.job.as_str()));
            assert!(t.labels.get("instance").is_some());
        }
    }
}
