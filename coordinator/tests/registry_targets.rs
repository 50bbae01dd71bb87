//! The target registry: discovery updates and reloads in, ids added and
//! removed out.

use std::time::Duration;

use promshard_coordinator::registry::{Changes, Registry};
use promshard_promlib::config::{Config, load_str};
use promshard_promlib::discovery::{Discoverer, TargetGroup, Update};
use promshard_promlib::labels::{Labels, target_id};

fn cfg(yaml: &str) -> Config {
    load_str(yaml, "prometheus.yml").expect("test config loads")
}

fn group(source: &str, addrs: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
    TargetGroup {
        source: source.to_string(),
        targets: addrs
            .iter()
            .map(|a| Labels::from_pairs([("__address__", *a)]))
            .collect(),
        labels: Labels::from_pairs(labels.iter().copied()),
    }
}

fn update(job: &str, provider: &str, groups: Vec<TargetGroup>) -> Update {
    Update {
        job: job.to_string(),
        provider: provider.to_string(),
        groups,
    }
}

fn instances(r: &Registry, job: &str) -> Vec<String> {
    let mut v: Vec<String> = r
        .job_targets(job)
        .iter()
        .map(|t| t.labels.get("instance").unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

const FILE_JOB: &str = "scrape_configs:\n- job_name: node\n  scrape_interval: 15s\n  file_sd_configs: [{files: [sd/*.json]}]\n";

#[test]
fn updates_add_and_remove_targets_by_id() {
    let mut r = Registry::new(&cfg(FILE_JOB));
    assert!(r.is_empty());
    let c = r.apply(update(
        "node",
        "file/0",
        vec![group("sd/a.json:0", &["a:1", "b:1"], &[("dc", "x")])],
    ));
    assert_eq!(c.added.len(), 2);
    assert!(c.removed.is_empty());
    let t = r.job_targets("node")[0].clone();
    assert_eq!(t.job, "node");
    assert_eq!(t.labels.get("dc"), Some("x"));
    assert_eq!(t.labels.get("__scrape_interval__"), Some("15s"));
    assert_eq!(t.interval(), Some(Duration::from_secs(15)));
    assert_eq!(t.public_labels().get("__address__"), None);
    assert!(t.public_labels().get("instance").is_some());
    assert_eq!(t.id, target_id("node", &t.labels));
    assert_eq!(t.discovered_labels.get("dc"), Some("x"));
    assert_eq!(r.get(t.id), Some(&t));

    // b leaves, c arrives, a stays: one removed, one added.
    let before = r.ids();
    let c = r.apply(update(
        "node",
        "file/0",
        vec![group("sd/a.json:0", &["a:1", "c:1"], &[("dc", "x")])],
    ));
    assert_eq!(c.added.len(), 1);
    assert_eq!(c.removed.len(), 1);
    assert!(before.contains(&c.removed[0]));
    assert!(!before.contains(&c.added[0]));
    assert_eq!(instances(&r, "node"), ["a:1", "c:1"]);

    // The source is gone.
    let c = r.apply(update(
        "node",
        "file/0",
        vec![TargetGroup::empty("sd/a.json:0")],
    ));
    assert_eq!(c.removed.len(), 2);
    assert!(r.is_empty());
}

#[test]
fn a_target_from_two_groups_counts_once_and_leaves_with_the_last() {
    let mut r = Registry::new(&cfg(FILE_JOB));
    let c = r.apply_all([
        update("node", "file/0", vec![group("sd/a.json:0", &["a:1"], &[])]),
        update(
            "node",
            "file/0",
            vec![group("sd/b.json:0", &["a:1", "b:1"], &[])],
        ),
    ]);
    assert_eq!(c.added.len(), 2, "a:1 from two groups is one target");
    assert_eq!(r.len(), 2);

    let c = r.apply(update(
        "node",
        "file/0",
        vec![TargetGroup::empty("sd/a.json:0")],
    ));
    assert_eq!(c, Changes::default(), "a:1 still comes from b.json");
    assert_eq!(r.len(), 2);

    let c = r.apply(update(
        "node",
        "file/0",
        vec![TargetGroup::empty("sd/b.json:0")],
    ));
    assert_eq!(c.removed.len(), 2);
    assert!(r.is_empty());
}

#[test]
fn dropped_targets_and_populate_errors_are_recorded_per_job() {
    let mut r = Registry::new(&cfg("scrape_configs:\n\
         - job_name: node\n  file_sd_configs: [{files: [sd/*.json]}]\n  relabel_configs:\n  \
         - {source_labels: [drop], regex: 'yes', action: drop}\n\
         - job_name: other\n  static_configs: [{targets: ['o:1']}]\n"));
    let mut bad = group("sd/a.json:0", &["a:1"], &[]);
    bad.targets.push(Labels::from_pairs([
        ("__address__", "b:1"),
        ("drop", "yes"),
    ]));
    // No address, a bad interval: cannot become targets; the others still do.
    bad.targets.push(Labels::from_pairs([("x", "1")]));
    bad.targets.push(Labels::from_pairs([
        ("__address__", "c:1"),
        ("__scrape_interval__", "bogus"),
    ]));
    let c = r.apply(update("node", "file/0", vec![bad]));
    assert_eq!(c.added.len(), 1);
    assert_eq!(instances(&r, "node"), ["a:1"]);
    let dropped = r.dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].job, "node");
    assert_eq!(dropped[0].discovered_labels.get("__address__"), Some("b:1"));
    assert_eq!(r.dropped_count("node"), 1);
    let failures = r.failures("node");
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].error, "no address");
    assert_eq!(failures[0].source, "sd/a.json:0");
    assert_eq!(failures[0].provider, "file/0");
    assert!(
        failures[1].error.contains("scrape interval"),
        "{}",
        failures[1].error
    );
    assert_eq!(r.failure_counts().get("node"), Some(&2));
    assert_eq!(r.failure_counts().get("other"), None);
    assert_eq!(instances(&r, "other"), ["o:1"]);

    // The group is fixed: its failures and drops go with the old version.
    let c = r.apply(update(
        "node",
        "file/0",
        vec![group("sd/a.json:0", &["a:1"], &[])],
    ));
    assert!(c.is_empty());
    assert!(r.failures("node").is_empty());
    assert_eq!(r.dropped_count("node"), 0);
}

#[test]
fn reload_with_a_relabel_change_changes_ids() {
    let mut r = Registry::new(&cfg(FILE_JOB));
    r.apply(update(
        "node",
        "file/0",
        vec![group("sd/a.json:0", &["a:1", "b:1"], &[])],
    ));
    let old = r.ids();

    let relabeled = cfg(&format!(
        "{FILE_JOB}  relabel_configs: [{{target_label: team, replacement: infra}}]\n"
    ));
    let c = r.set_config(&relabeled);
    assert_eq!(c.jobs_changed, ["node"]);
    assert_eq!(c.removed, old, "every old id leaves");
    assert_eq!(c.added.len(), 2);
    for t in r.job_targets("node") {
        assert_eq!(t.labels.get("team"), Some("infra"));
    }
    // The file groups were kept (file_sd_configs unchanged): no need to
    // wait for the discoverer.
    assert_eq!(instances(&r, "node"), ["a:1", "b:1"]);

    // The same config again: nothing.
    assert!(r.set_config(&relabeled).is_empty());
}

#[test]
fn reload_removes_a_jobs_targets_and_keeps_the_others() {
    let two = cfg("scrape_configs:\n\
         - job_name: a\n  static_configs: [{targets: ['a:1', 'a:2']}]\n\
         - job_name: b\n  static_configs: [{targets: ['b:1']}]\n");
    let mut r = Registry::new(&two);
    assert_eq!(r.len(), 3);
    let b_ids: Vec<u64> = r.job_targets("b").iter().map(|t| t.id).collect();
    let mut a_ids: Vec<u64> = r.job_targets("a").iter().map(|t| t.id).collect();
    a_ids.sort();

    let only_b = cfg("scrape_configs:\n- job_name: b\n  static_configs: [{targets: ['b:1']}]\n");
    let c = r.set_config(&only_b);
    assert_eq!(c.removed, a_ids);
    assert!(c.added.is_empty());
    assert_eq!(c.jobs_changed, ["a"]);
    assert_eq!(r.ids(), b_ids);
    assert!(r.job_config("a").is_none());
    assert_eq!(r.jobs().collect::<Vec<_>>(), ["b"]);

    // A late update of the removed job is ignored, not resurrected.
    let c = r.apply(update("a", "file/0", vec![group("f:0", &["a:9"], &[])]));
    assert!(c.is_empty());
    assert_eq!(r.ignored_updates(), 1);
    assert_eq!(r.len(), 1);
}

#[test]
fn reload_applies_static_config_edits_at_once() {
    let mut r = Registry::new(&cfg(
        "scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['a:1']}, {targets: ['a:2']}]\n",
    ));
    assert_eq!(r.len(), 2);
    let c = r.set_config(&cfg(
        "scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['a:1']}]\n",
    ));
    assert_eq!(c.removed.len(), 1);
    assert!(c.added.is_empty(), "a:1 keeps its id");
    assert_eq!(instances(&r, "a"), ["a:1"]);
}

#[test]
fn reload_forgets_file_groups_when_file_sd_changes() {
    let mut r = Registry::new(&cfg(FILE_JOB));
    r.apply(update(
        "node",
        "file/0",
        vec![group("sd/a.json:0", &["a:1"], &[])],
    ));
    let c = r.set_config(&cfg(
        "scrape_configs:\n- job_name: node\n  scrape_interval: 15s\n  file_sd_configs: [{files: [other/*.json]}]\n",
    ));
    assert_eq!(c.removed.len(), 1);
    assert!(r.is_empty());
}

/// The real discoverer feeds the registry: static and file_sd groups, then
/// a file edit that removes a target.
#[tokio::test]
async fn fed_by_the_real_discoverer() {
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("t.json");
    std::fs::write(
        &sd,
        r#"[{"targets": ["f:1", "f:2"], "labels": {"env": "p"}}]"#,
    )
    .unwrap();
    let yaml = format!(
        "scrape_configs:\n\
         - job_name: s\n  static_configs: [{{targets: ['s:1']}}]\n\
         - job_name: f\n  file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n",
        sd.display()
    );
    let config = cfg(&yaml);
    let mut r = Registry::new(&config);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(Discoverer::new(&config).unwrap().run(tx));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while instances(&r, "f") != ["f:1", "f:2"] {
        let u = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("file targets within 10s")
            .expect("discoverer running");
        r.apply(u);
    }
    assert_eq!(instances(&r, "s"), ["s:1"]);
    assert_eq!(r.job_targets("f")[0].labels.get("env"), Some("p"));

    std::fs::write(&sd, r#"[{"targets": ["f:1"], "labels": {"env": "p"}}]"#).unwrap();
    let mut removed = Vec::new();
    while instances(&r, "f") != ["f:1"] {
        let u = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("file edit seen within 10s")
            .expect("discoverer running");
        removed.extend(r.apply(u).removed);
    }
    assert_eq!(removed.len(), 1);
    drop(rx);
    task.abort();
}

mod properties {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// One discovery step: source `s` of provider `p` now lists `addrs`
    /// (empty: the source is gone).
    #[derive(Clone, Debug)]
    struct Step {
        provider: usize,
        source: usize,
        addrs: Vec<usize>,
    }

    fn step() -> impl Strategy<Value = Step> {
        (0..2usize, 0..3usize, prop::collection::vec(0..6usize, 0..4)).prop_map(
            |(provider, source, addrs)| Step {
                provider,
                source,
                addrs,
            },
        )
    }

    fn to_update(s: &Step) -> Update {
        let addrs: Vec<String> = s.addrs.iter().map(|a| format!("h{a}:1")).collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let source = format!("s{}", s.source);
        let g = if refs.is_empty() {
            TargetGroup::empty(source)
        } else {
            group(&source, &refs, &[])
        };
        update("node", &format!("file/{}", s.provider), vec![g])
    }

    proptest! {
        /// Whatever the order of updates: each apply's changes account
        /// exactly for the difference in ids, and the end state equals
        /// the final groups applied to a fresh registry.
        #[test]
        fn changes_account_for_every_id(steps in prop::collection::vec(step(), 1..24)) {
            let config = cfg(FILE_JOB);
            let mut r = Registry::new(&config);
            let mut last: BTreeMap<(usize, usize), Step> = BTreeMap::new();
            for s in &steps {
                let before: BTreeSet<u64> = r.ids().into_iter().collect();
                let c = r.apply(to_update(s));
                let after: BTreeSet<u64> = r.ids().into_iter().collect();
                let added: BTreeSet<u64> = c.added.iter().copied().collect();
                let removed: BTreeSet<u64> = c.removed.iter().copied().collect();
                prop_assert_eq!(&added, &after.difference(&before).copied().collect());
                prop_assert_eq!(&removed, &before.difference(&after).copied().collect());
                last.insert((s.provider, s.source), s.clone());
            }
            let mut fresh = Registry::new(&config);
            fresh.apply_all(last.values().map(to_update));
            prop_assert_eq!(r.ids(), fresh.ids());
            // Each distinct address is one target.
            let distinct: BTreeSet<usize> = last.values().flat_map(|s| s.addrs.iter().copied()).collect();
            prop_assert_eq!(r.len(), distinct.len());
        }
    }
}
