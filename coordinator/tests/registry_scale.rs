//! Scale check of the registry and the load model: 100,000 targets in 100
//! file groups. Slow in a debug build (about 8 s), so ignored by default:
//! `cargo test -p promshard-coordinator --test registry_scale -- --ignored --nocapture`
//! prints the figures.

use std::time::{Instant, SystemTime};

use promshard_coordinator::registry::{LoadModel, Registry};
use promshard_promlib::config::load_str;
use promshard_promlib::discovery::{TargetGroup, Update};
use promshard_promlib::labels::Labels;
use promshard_proto::v1::{TargetHealth, TargetReport};

#[test]
#[ignore = "scale figures; run with --ignored --nocapture"]
fn hundred_thousand_targets() {
    let cfg = load_str(
        "scrape_configs:\n- job_name: n\n  file_sd_configs: [{files: [x.json]}]\n  relabel_configs:\n  - {source_labels: [__meta_x], target_label: x}\n",
        "p.yml",
    )
    .unwrap();
    let mut r = Registry::new(&cfg);
    let groups: Vec<TargetGroup> = (0..100)
        .map(|g| TargetGroup {
            source: format!("x.json:{g}"),
            targets: (0..1000)
                .map(|i| {
                    Labels::from_pairs([
                        ("__address__", format!("h{g}-{i}:9100")),
                        ("__meta_x", format!("{i}")),
                    ])
                })
                .collect(),
            labels: Labels::from_pairs([("dc", "a")]),
        })
        .collect();
    let start = Instant::now();
    let c = r.apply(Update {
        job: "n".into(),
        provider: "file/0".into(),
        groups,
    });
    let apply = start.elapsed();
    assert_eq!(c.added.len(), 100_000);

    let mut m = LoadModel::default();
    let start = Instant::now();
    m.sync(&r, &c);
    let reports: Vec<TargetReport> = c
        .added
        .iter()
        .map(|&id| TargetReport {
            target_id: id,
            series: id % 5000,
            samples_per_scrape: id % 5000,
            interval_seconds: 15.0,
            health: TargetHealth::Up as i32,
            ..Default::default()
        })
        .collect();
    // As 200 shard reports of 500 targets each.
    let mut taken = 0;
    for chunk in reports.chunks(500) {
        taken += m.ingest(chunk, SystemTime::now());
    }
    assert_eq!(taken, 100_000);
    let model = start.elapsed();
    // A planning pass reads every load (the job median is computed once).
    let start = Instant::now();
    let mut series = 0u64;
    for &id in &c.added {
        series += m.load_of(id).0.series;
    }
    let reads = start.elapsed();
    assert!(series > 0);

    let start = Instant::now();
    let relabeled = load_str(
        "scrape_configs:\n- job_name: n\n  file_sd_configs: [{files: [x.json]}]\n",
        "p.yml",
    )
    .unwrap();
    let c2 = r.set_config(&relabeled);
    let reload = start.elapsed();
    assert_eq!(c2.removed.len(), 100_000);
    assert_eq!(c2.added.len(), 100_000);
    eprintln!(
        "100k targets: apply {apply:?}, sync+ingest {model:?}, load_of all {reads:?}, reload with relabel change {reload:?}"
    );
}
