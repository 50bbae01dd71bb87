//! The report of a scenario run: figures, events and a verdict per claim.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::analysis::{Delivery, SeriesVerdict};

/// One claim of the issue and whether the run shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// What is claimed.
    pub claim: String,
    /// PASS or FAIL.
    pub pass: bool,
    /// The figure that decides it.
    pub detail: String,
}

impl Claim {
    /// A claim decided by `pass`.
    pub fn new(claim: impl Into<String>, pass: bool, detail: impl Into<String>) -> Claim {
        Claim {
            claim: claim.into(),
            pass,
            detail: detail.into(),
        }
    }
}

/// Utilization over time, sampled from `/api/v1/shards`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Utilization {
    /// Samples taken.
    pub samples: u64,
    /// The highest shard utilization seen.
    pub max: f64,
    /// The mean over samples of the mean shard utilization.
    pub mean: f64,
    /// The highest max/mean ratio seen (imbalance).
    pub max_imbalance: f64,
    /// max/mean at the end of the window.
    pub final_imbalance: f64,
    /// (seconds since the window started, shards up, max, mean), one per
    /// sample, at most 200 (evenly thinned).
    pub series: Vec<(f64, u64, f64, f64)>,
}

/// Targets and series that changed shard.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Moves {
    /// Targets seen on another shard than at the previous sample.
    pub targets_moved: u64,
    /// Their series (load model).
    pub series_moved: u64,
    /// The coordinator's `promshard_coordinator_moves_total` increase by
    /// reason during the window (a restarted coordinator counts from 0).
    pub by_reason: BTreeMap<String, f64>,
}

/// Something the scenario did, or saw, at a time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    /// Seconds since the window started (negative: before).
    pub at_secs: f64,
    /// What.
    pub what: String,
}

/// Everything a scenario run reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub scenario: String,
    /// The short (CI) version.
    pub short: bool,
    /// The scrape interval in ms.
    pub interval_ms: i64,
    /// Targets in the fleet (all that were ever in discovery).
    pub targets: usize,
    /// Series of the targets in discovery when the window opened (target
    /// series, not up/scrape_*).
    pub series: usize,
    /// The judged window's length in seconds.
    pub window_secs: f64,
    /// Seconds from start until the system first converged.
    pub startup_secs: f64,
    /// Seconds from the scenario's (last) disturbance until assignments
    /// stopped changing; for scale-out/scale-in until the new shard count
    /// was up with every target settled (None: no disturbance, or it never
    /// settled).
    pub converge_secs: Option<f64>,
    /// Delivery of every target series over the window.
    pub delivery: Delivery,
    /// Targets and series moved during the window.
    pub moves: Moves,
    /// Shard utilization over the window.
    pub utilization: Utilization,
    /// Scenario-specific figures.
    pub figures: BTreeMap<String, serde_json::Value>,
    /// What happened when.
    pub events: Vec<Event>,
    /// The worst series (at most 10) with their missing slots.
    pub faulty_series: Vec<SeriesVerdict>,
    /// Verdicts.
    pub claims: Vec<Claim>,
    /// PASS when every claim passes.
    pub pass: bool,
    /// Where the logs are (kept with --keep-dir or on FAIL), if anywhere.
    pub logs: Option<String>,
}

impl ScenarioReport {
    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let d = &self.delivery;
        let _ = writeln!(
            o,
            "scenario {}{}: {} targets, {} series, interval {} ms, window {:.0} s (startup {:.1} s)",
            self.scenario,
            if self.short { " (short)" } else { "" },
            self.targets,
            self.series,
            self.interval_ms,
            self.window_secs,
            self.startup_secs
        );
        let _ = writeln!(
            o,
            "  samples      expected {}  received {}  missing {}  ({} series never received)",
            d.samples_expected, d.samples_received, d.samples_missing, d.series_never_received
        );
        let _ = writeln!(
            o,
            "  gaps         {} (longest {} ms)  duplicates {}  out-of-order {}",
            d.gaps, d.longest_gap_ms, d.duplicates, d.out_of_order
        );
        let _ = writeln!(
            o,
            "  stale marks  {} for targets still in discovery, {} for targets that left",
            d.stale_markers_present_targets, d.stale_markers_departed_targets
        );
        let reasons: Vec<String> = self
            .moves
            .by_reason
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  moves        {} targets, {} series (coordinator: {})",
            self.moves.targets_moved,
            self.moves.series_moved,
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(", ")
            }
        );
        let u = &self.utilization;
        let _ = writeln!(
            o,
            "  utilization  max {:.3}  mean {:.3}  max/mean worst {:.3}, at the end {:.3} ({} samples)",
            u.max, u.mean, u.max_imbalance, u.final_imbalance, u.samples
        );
        match self.converge_secs {
            Some(s) => {
                let _ = writeln!(o, "  converged    {s:.1} s after the disturbance");
            }
            None => {
                let _ = writeln!(o, "  converged    n/a");
            }
        }
        for (k, v) in &self.figures {
            let _ = writeln!(o, "  {k:<12} {v}");
        }
        if !self.events.is_empty() {
            let _ = writeln!(o, "  events:");
            for e in &self.events {
                let _ = writeln!(o, "    {:>7.1} s  {}", e.at_secs, e.what);
            }
        }
        if !self.faulty_series.is_empty() {
            let _ = writeln!(o, "  worst series:");
            for v in &self.faulty_series {
                let runs: Vec<String> = v
                    .missing_runs
                    .iter()
                    .take(4)
                    .map(|r| format!("{} slots from {}", r.slots, r.from_ms))
                    .collect();
                let _ = writeln!(
                    o,
                    "    {} {}: expected {} received {} missing [{}] dup {} ooo {} stale {}",
                    v.instance,
                    v.series,
                    v.expected,
                    v.received,
                    runs.join("; "),
                    v.duplicates,
                    v.out_of_order,
                    v.stale_markers
                );
            }
        }
        let _ = writeln!(o, "  claims:");
        for c in &self.claims {
            let _ = writeln!(
                o,
                "    {}  {}: {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.claim,
                c.detail
            );
        }
        let _ = writeln!(o, "  verdict: {}", if self.pass { "PASS" } else { "FAIL" });
        if let Some(l) = &self.logs {
            let _ = writeln!(o, "  logs: {l}");
        }
        o
    }
}
