//! Differential check against a real Prometheus 2.42: 40 generated jobs
//! (random relabel rule lists over random file_sd label sets, with empty
//! values, `__param_*`, `__meta_*`, IPv6, both schemes) were loaded into
//! Prometheus; `tests/data/relabel_prometheus_2_42.json` holds the config,
//! the discovered label sets and `/api/v1/targets?state=any`.
//! Every active target (discovered labels, public labels, scrape URL) and
//! every dropped target (discovered labels) must come out the same.

use std::collections::BTreeSet;

use promshard_promlib::config;
use promshard_promlib::labels::Labels;
use promshard_promlib::targets::{Populated, populate};
use serde_json::Value;

const FIXTURE: &str = include_str!("data/relabel_prometheus_2_42.json");

fn labels(v: &Value) -> Labels {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn targets_match_prometheus() {
    let fx: Value = serde_json::from_str(FIXTURE).unwrap();
    let cfg = config::load_str(fx["config"].as_str().unwrap(), "diff.yml").unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for job in fx["jobs"].as_array().unwrap() {
        let name = job["job"].as_str().unwrap();
        let sc = cfg
            .scrape_configs
            .iter()
            .find(|s| s.job_name == name)
            .unwrap();
        let mut active = BTreeSet::new();
        let mut seen_targets = BTreeSet::new();
        let mut dropped = Vec::new();
        for d in job["discovered"].as_array().unwrap() {
            match populate(sc, labels(d)) {
                Ok(Populated::Active(t)) => {
                    // Prometheus keeps one target per (labels, URL).
                    if seen_targets.insert((t.labels.clone(), t.url(sc))) {
                        active.insert((
                            t.discovered_labels.to_string(),
                            t.public_labels().to_string(),
                            t.url(sc),
                        ));
                    }
                }
                Ok(Populated::Dropped { discovered_labels }) => {
                    dropped.push(discovered_labels.to_string())
                }
                Err(e) => failures.push(format!("{name}: unexpected error {e}")),
            }
        }
        let want_active: BTreeSet<(String, String, String)> = job["active"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    labels(&a[0]).to_string(),
                    labels(&a[1]).to_string(),
                    a[2].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut want_dropped: Vec<String> = job["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| labels(d).to_string())
            .collect();
        want_dropped.sort();
        dropped.sort();
        compared += want_active.len() + want_dropped.len();
        for x in want_active.symmetric_difference(&active) {
            let side = if want_active.contains(x) {
                "prometheus only"
            } else {
                "ours only"
            };
            failures.push(format!("{name} active, {side}: {x:?}"));
        }
        if want_dropped != dropped {
            failures.push(format!(
                "{name} dropped:\n  prometheus {want_dropped:?}\n  ours       {dropped:?}"
            ));
        }
    }
    assert!(compared >= 100, "fixture too small: {compared}");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
