//! What one benchmark run found, as a table or JSON.

use std::fmt::Write as _;

use super::contender::ContenderKind;

/// How a contender's run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Outcome {
    /// Measured.
    Ran,
    /// Not run (its binary is missing).
    Skipped(String),
    /// Started but could not be measured (exited, or /proc unreadable).
    Failed(String),
}

/// The figures of one contender's measured window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Measured {
    /// Length of the window, seconds.
    pub window_secs: f64,
    /// CPU seconds (user + system, all threads) the contender used in the
    /// window.
    pub cpu_seconds: f64,
    /// `VmHWM` at the end of the window (the peak since it started).
    pub peak_rss_bytes: u64,
    /// Largest `VmRSS` sampled about once a second in the window.
    pub max_sampled_rss_bytes: u64,
    /// Samples the sink received whose timestamp lies in the window, of the
    /// fleet's series only (no `up`/`scrape_*`, no staleness markers),
    /// counted until they were all in or the drain time ran out.
    pub delivered_samples: u64,
    /// Fleet series x scrape intervals in the window.
    pub expected_samples: u64,
    /// `delivered_samples / expected_samples`, in percent.
    pub delivered_percent: f64,
    /// `cpu_seconds / (delivered_samples / 1e6)`.
    pub cpu_seconds_per_million_samples: f64,
    /// Every sample (any timestamp, any series) that reached the sink
    /// between the window's start and end.
    pub received_during_window: u64,
    /// Scrapes the fleet served in the window.
    pub scrapes_served: u64,
    /// Healthy targets x scrape intervals in the window.
    pub scrapes_expected: u64,
    /// CPU seconds the fleet (this process's fleet threads) used.
    pub fleet_cpu_seconds: f64,
    /// CPU seconds the sink (this process's sink threads) used.
    pub sink_cpu_seconds: f64,
    /// Fraction (0..=1) of the whole machine busy in the window.
    pub machine_busy_fraction: f64,
    /// Duplicate timestamps the sink saw over the whole run.
    pub duplicates: u64,
    /// Out-of-order samples the sink saw over the whole run.
    pub out_of_order: u64,
    /// Gaps the sink saw over the whole run.
    pub gaps: u64,
    /// Write requests the sink rejected.
    pub rejected_requests: u64,
}

/// One contender's line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContenderReport {
    /// Which contender.
    pub contender: ContenderKind,
    /// The command it ran with.
    pub command: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// The figures, when it ran.
    pub measured: Option<Measured>,
}

/// promshard's figure divided by another contender's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ratio {
    /// The other contender.
    pub versus: ContenderKind,
    /// CPU seconds per million samples delivered, promshard / other.
    pub cpu_per_million_samples: Option<f64>,
    /// Peak RSS, promshard / other.
    pub peak_rss: Option<f64>,
}

/// The workload every contender scraped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Workload {
    /// Targets in the fleet.
    pub targets: usize,
    /// Series one scrape of the whole fleet yields.
    pub series_total: usize,
    /// Scrape interval, seconds.
    pub interval_secs: f64,
    /// Warm-up before each window, seconds.
    pub warmup_secs: f64,
    /// Window length, seconds.
    pub window_secs: f64,
    /// CPUs of the machine.
    pub cpus: usize,
    /// `queue_config.max_samples_per_send` of promshard and Prometheus
    /// (0: Prometheus' default, 500).
    pub max_samples_per_send: usize,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// What was scraped.
    pub workload: Workload,
    /// One per contender, in run order.
    pub contenders: Vec<ContenderReport>,
    /// promshard against each other contender that ran.
    pub ratios: Vec<Ratio>,
    /// Signs the measurement may be limited by the machine, not the
    /// contender.
    pub warnings: Vec<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

impl BenchReport {
    /// Builds the ratios and warnings from the contenders' lines.
    pub fn new(workload: Workload, contenders: Vec<ContenderReport>) -> BenchReport {
        let measured = |kind| {
            contenders
                .iter()
                .find(|c| c.contender == kind)
                .and_then(|c| c.measured.as_ref())
        };
        let ours = measured(ContenderKind::Promshard);
        let ratios = [ContenderKind::Vmagent, ContenderKind::Prometheus]
            .into_iter()
            .filter(|&k| contenders.iter().any(|c| c.contender == k))
            .map(|versus| {
                let other = measured(versus);
                let both = ours.zip(other);
                Ratio {
                    versus,
                    cpu_per_million_samples: both.and_then(|(a, b)| {
                        ratio(
                            a.cpu_seconds_per_million_samples,
                            b.cpu_seconds_per_million_samples,
                        )
                    }),
                    peak_rss: both
                        .and_then(|(a, b)| ratio(a.peak_rss_bytes as f64, b.peak_rss_bytes as f64)),
                }
            })
            .collect();
        let mut warnings = Vec::new();
        for c in &contenders {
            let Some(m) = &c.measured else { continue };
            let name = c.contender.name();
            if m.scrapes_served * 100 < m.scrapes_expected * 99 {
                warnings.push(format!(
                    "{name}: the fleet served {} of {} scrapes in the window: the scraper or the fleet did not keep up",
                    m.scrapes_served, m.scrapes_expected
                ));
            }
            if m.machine_busy_fraction > 0.9 {
                warnings.push(format!(
                    "{name}: the machine was {:.0}% busy in the window: figures may be limited by the machine",
                    m.machine_busy_fraction * 100.0
                ));
            }
            if m.delivered_percent < 99.0 {
                warnings.push(format!(
                    "{name}: only {:.1}% of the expected samples were delivered",
                    m.delivered_percent
                ));
            }
        }
        BenchReport {
            workload,
            contenders,
            ratios,
            warnings,
        }
    }

    /// The report as a text table.
    pub fn to_table(&self) -> String {
        let w = &self.workload;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workload: {} targets, {} series per scrape of the fleet, scrape interval {}s, warm-up {}s, window {}s, {} CPUs, remote write requests of up to {} samples",
            w.targets,
            w.series_total,
            w.interval_secs,
            w.warmup_secs,
            w.window_secs,
            w.cpus,
            if w.max_samples_per_send == 0 {
                500
            } else {
                w.max_samples_per_send
            }
        );
        let _ = writeln!(
            out,
            "{:<11} {:>8} {:>12} {:>9} {:>9} {:>12} {:>12} {:>8} {:>8} {:>9} {:>9} {:>6} {:>11}",
            "contender",
            "CPU s",
            "CPU s/Msmpl",
            "peakRSS",
            "maxRSS",
            "delivered",
            "expected",
            "deliv%",
            "scrape%",
            "fleetCPU",
            "sinkCPU",
            "busy%",
            "dup/ooo/gap"
        );
        for c in &self.contenders {
            let name = c.contender.name();
            match (&c.outcome, &c.measured) {
                (Outcome::Ran, Some(m)) => {
                    let _ = writeln!(
                        out,
                        "{:<11} {:>8.2} {:>12.3} {:>8}M {:>8}M {:>12} {:>12} {:>8.2} {:>8.2} {:>8.2}s {:>8.2}s {:>6.0} {:>11}",
                        name,
                        m.cpu_seconds,
                        m.cpu_seconds_per_million_samples,
                        m.peak_rss_bytes >> 20,
                        m.max_sampled_rss_bytes >> 20,
                        m.delivered_samples,
                        m.expected_samples,
                        m.delivered_percent,
                        percent(m.scrapes_served, m.scrapes_expected),
                        m.fleet_cpu_seconds,
                        m.sink_cpu_seconds,
                        m.machine_busy_fraction * 100.0,
                        format!("{}/{}/{}", m.duplicates, m.out_of_order, m.gaps),
                    );
                }
                (Outcome::Skipped(why), _) => {
                    let _ = writeln!(out, "{name:<11} skipped: {why}");
                }
                (Outcome::Failed(why), _) => {
                    let _ = writeln!(out, "{name:<11} FAILED: {why}");
                }
                (Outcome::Ran, None) => {
                    let _ = writeln!(out, "{name:<11} ran but has no figures");
                }
            }
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "promshard/{}: CPU per Msample {}, peak RSS {}",
                r.versus.name(),
                show_ratio(r.cpu_per_million_samples),
                show_ratio(r.peak_rss)
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(
            out,
            "delivered = fleet samples (no up/scrape_*, no stale markers) with a timestamp in the window, as received by the sink; expected = fleet series x intervals in the window"
        );
        for c in &self.contenders {
            if !c.command.is_empty() {
                let _ = writeln!(out, "{}: {}", c.contender.name(), c.command);
            }
        }
        out
    }
}

/// `part / whole` in percent (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}x"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(kind: ContenderKind, cpu_per_m: f64, rss: u64) -> ContenderReport {
        ContenderReport {
            contender: kind,
            command: String::new(),
            outcome: Outcome::Ran,
            measured: Some(Measured {
                cpu_seconds_per_million_samples: cpu_per_m,
                peak_rss_bytes: rss,
                delivered_percent: 100.0,
                scrapes_served: 10,
                scrapes_expected: 10,
                ..Measured::default()
            }),
        }
    }

    fn workload() -> Workload {
        Workload {
            targets: 1,
            series_total: 1,
            interval_secs: 1.0,
            warmup_secs: 1.0,
            window_secs: 1.0,
            max_samples_per_send: 0,
            cpus: 2,
        }
    }

    #[test]
    fn ratios_are_promshard_over_the_other() {
        let r = BenchReport::new(
            workload(),
            vec![
                ran(ContenderKind::Promshard, 1.0, 100),
                ran(ContenderKind::Vmagent, 4.0, 400),
                ran(ContenderKind::Prometheus, 2.0, 50),
            ],
        );
        assert_eq!(r.ratios[0].versus, ContenderKind::Vmagent);
        assert_eq!(r.ratios[0].cpu_per_million_samples, Some(0.25));
        assert_eq!(r.ratios[0].peak_rss, Some(0.25));
        assert_eq!(r.ratios[1].cpu_per_million_samples, Some(0.5));
        assert_eq!(r.ratios[1].peak_rss, Some(2.0));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert!(
            r.to_table()
                .contains("promshard/vmagent: CPU per Msample 0.250x")
        );
    }

    #[test]
    fn a_skipped_promshard_leaves_ratios_unknown() {
        let r = BenchReport::new(
            workload(),
            vec![
                ContenderReport {
                    contender: ContenderKind::Promshard,
                    command: String::new(),
                    outcome: Outcome::Skipped("no binary".into()),
                    measured: None,
                },
                ran(ContenderKind::Vmagent, 4.0, 400),
            ],
        );
        assert_eq!(r.ratios.len(), 1);
        assert_eq!(r.ratios[0].cpu_per_million_samples, None);
        let table = r.to_table();
        assert!(table.contains("promshard   skipped: no binary"), "{table}");
        assert!(table.contains("CPU per Msample n/a"), "{table}");
    }
}
