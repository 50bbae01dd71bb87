//! The load model: reports, validation, and the fallbacks for targets
//! without history (job median, explore, defaults).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use promshard_coordinator::model::Load;
use promshard_coordinator::registry::{
    LoadDefaults, LoadModel, LoadSource, Registry, RejectReason, ReportLimits, ReportOutcome,
    median,
};
use promshard_promlib::config::load_str;
use promshard_proto::v1::{TargetHealth, TargetReport};
use proptest::prelude::*;

fn l(series: u64, sps: f64) -> Load {
    Load {
        series,
        samples_per_second: sps,
    }
}

fn report(id: u64, series: u64, samples: u64, interval: f64) -> TargetReport {
    TargetReport {
        target_id: id,
        series,
        samples_per_scrape: samples,
        interval_seconds: interval,
        health: TargetHealth::Up as i32,
        ..Default::default()
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn defaults() -> LoadDefaults {
    LoadDefaults {
        global: l(7, 0.7),
        per_job: HashMap::from([("special".to_string(), l(42, 4.2))]),
    }
}

#[test]
fn reported_load_is_series_and_samples_per_interval() {
    let mut m = LoadModel::default();
    m.track(1, "j");
    assert_eq!(
        m.record(&report(1, 600, 900, 30.0), at(100)),
        ReportOutcome::Taken
    );
    assert_eq!(m.load_of(1), (l(600, 30.0), LoadSource::Reported));
    let last = m.last_report(1).unwrap();
    assert_eq!(last.at, at(100));
    // A newer report replaces it.
    m.record(&report(1, 10, 10, 10.0), at(130));
    assert_eq!(m.load_of(1), (l(10, 1.0), LoadSource::Reported));
    assert_eq!(m.last_report(1).unwrap().at, at(130));
}

#[test]
fn fallbacks_in_order_median_explore_default() {
    let mut m = LoadModel::new(defaults(), ReportLimits::default());
    for id in 1..=5 {
        m.track(id, "j");
    }
    m.track(10, "special");
    m.track(20, "other");

    // Nothing known: defaults, per job then global.
    assert_eq!(m.load_of(1), (l(7, 0.7), LoadSource::Default));
    assert_eq!(m.load_of(10), (l(42, 4.2), LoadSource::Default));
    assert_eq!(
        m.load_of(999),
        (l(7, 0.7), LoadSource::Default),
        "untracked"
    );
    assert!(m.needs_explore(1));

    // An explore of target 1: it and its job mates use it.
    m.record_explore(1, Ok(l(100, 10.0)), at(1));
    assert_eq!(m.load_of(1), (l(100, 10.0), LoadSource::Explored));
    assert_eq!(m.load_of(2), (l(100, 10.0), LoadSource::Explored));
    assert_eq!(m.load_of(20), (l(7, 0.7), LoadSource::Default), "other job");
    assert!(!m.needs_explore(1));

    // Reports from three targets of the job: the others use their median.
    let reports = [
        report(3, 10, 10, 1.0),
        report(4, 1000, 1000, 1.0),
        report(5, 30, 60, 1.0),
    ];
    assert_eq!(m.ingest(&reports, at(2)), 3);
    assert!(m.job_has_history("j"));
    assert_eq!(m.load_of(2), (l(30, 60.0), LoadSource::JobMedian));
    assert_eq!(
        m.load_of(1),
        (l(30, 60.0), LoadSource::JobMedian),
        "a job median beats an explore"
    );
    assert_eq!(m.load_of(4), (l(1000, 1000.0), LoadSource::Reported));
    assert!(!m.needs_explore(2), "the job has history");
}

#[test]
fn a_failed_explore_is_a_failure_not_a_zero() {
    let mut m = LoadModel::new(defaults(), ReportLimits::default());
    m.track(1, "j");
    m.record_explore(1, Err("connection refused".into()), at(1));
    assert_eq!(m.load_of(1), (l(7, 0.7), LoadSource::Default));
    assert_eq!(m.explore_failures(), 1);
    assert!(!m.needs_explore(1), "not explored again and again");
}

#[test]
fn absurd_reports_are_rejected_and_counted() {
    let mut m = LoadModel::new(
        defaults(),
        ReportLimits {
            max_series: 1000,
            max_samples_per_scrape: 2000,
            max_interval_seconds: 3600.0,
        },
    );
    m.track(1, "j");
    let cases = [
        (report(1, 10, 10, -15.0), RejectReason::BadInterval),
        (report(1, 10, 10, 0.0), RejectReason::BadInterval),
        (report(1, 10, 10, f64::NAN), RejectReason::BadInterval),
        (report(1, 10, 10, f64::INFINITY), RejectReason::BadInterval),
        (report(1, 10, 10, 3601.0), RejectReason::BadInterval),
        (report(1, 1001, 10, 15.0), RejectReason::TooManySeries),
        (report(1, 10, 2001, 15.0), RejectReason::TooManySamples),
        (report(2, 10, 10, 15.0), RejectReason::UnknownTarget),
    ];
    for (r, reason) in &cases {
        assert_eq!(
            m.record(r, at(1)),
            ReportOutcome::Rejected(*reason),
            "{r:?}"
        );
    }
    assert_eq!(m.load_of(1).1, LoadSource::Default, "nothing taken");
    let rejected = m.rejected();
    assert_eq!(rejected[&RejectReason::BadInterval], 5);
    assert_eq!(rejected[&RejectReason::TooManySeries], 1);
    assert_eq!(rejected[&RejectReason::TooManySamples], 1);
    assert_eq!(rejected[&RejectReason::UnknownTarget], 1);
    // At the bounds: taken.
    assert_eq!(
        m.record(&report(1, 1000, 2000, 3600.0), at(2)),
        ReportOutcome::Taken
    );
}

#[test]
fn targets_leaving_the_registry_are_forgotten() {
    let cfg1 = load_str(
        "scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['a:1', 'a:2']}]\n",
        "p.yml",
    )
    .unwrap();
    let mut reg = Registry::new(&cfg1);
    let mut m = LoadModel::new(defaults(), ReportLimits::default());
    let all = promshard_coordinator::registry::Changes {
        added: reg.ids(),
        ..Default::default()
    };
    m.sync(&reg, &all);
    assert_eq!(m.len(), 2);
    let ids = reg.ids();
    m.ingest(&[report(ids[0], 50, 50, 10.0)], at(1));
    assert_eq!(m.load_of(ids[1]).1, LoadSource::JobMedian);

    // a's first target leaves: its report goes with it, so the job has no
    // history any more.
    let keep = reg
        .get(ids[1])
        .unwrap()
        .labels
        .get("instance")
        .unwrap()
        .to_string();
    let cfg2 = load_str(
        &format!("scrape_configs:\n- job_name: a\n  static_configs: [{{targets: ['{keep}']}}]\n"),
        "p.yml",
    )
    .unwrap();
    let changes = reg.set_config(&cfg2);
    assert_eq!(changes.removed, [ids[0]]);
    m.sync(&reg, &changes);
    assert_eq!(m.len(), 1);
    assert!(m.last_report(ids[0]).is_none());
    assert!(!m.job_has_history("a"));
    assert_eq!(m.load_of(ids[1]), (l(7, 0.7), LoadSource::Default));
    // A late report for the removed target is not taken.
    assert_eq!(
        m.record(&report(ids[0], 1, 1, 1.0), at(2)),
        ReportOutcome::Rejected(RejectReason::UnknownTarget)
    );
}

fn load_strategy() -> impl Strategy<Value = Load> {
    (0u64..u64::MAX, 0.0f64..1e12).prop_map(|(series, sps)| Load {
        series,
        samples_per_second: sps,
    })
}

proptest! {
    #[test]
    fn median_lies_between_min_and_max(loads in prop::collection::vec(load_strategy(), 1..64)) {
        let m = median(&loads).unwrap();
        let min_s = loads.iter().map(|l| l.series).min().unwrap();
        let max_s = loads.iter().map(|l| l.series).max().unwrap();
        let min_r = loads.iter().map(|l| l.samples_per_second).fold(f64::INFINITY, f64::min);
        let max_r = loads.iter().map(|l| l.samples_per_second).fold(f64::NEG_INFINITY, f64::max);
        prop_assert!(min_s <= m.series && m.series <= max_s);
        prop_assert!(min_r <= m.samples_per_second && m.samples_per_second <= max_r);
    }

    #[test]
    fn median_is_stable_under_permutation(
        (loads, perm) in prop::collection::vec(load_strategy(), 1..64)
            .prop_flat_map(|v| { let n = v.len(); (Just(v), Just((0..n).collect::<Vec<_>>()).prop_shuffle()) })
    ) {
        let shuffled: Vec<Load> = perm.iter().map(|&i| loads[i]).collect();
        prop_assert_eq!(median(&loads), median(&shuffled));
    }

    /// The model's job median is the median of its reported targets.
    #[test]
    fn job_median_is_the_median_of_reports(series in prop::collection::vec(0u64..1_000_000, 1..32)) {
        let mut m = LoadModel::default();
        let n = series.len() as u64;
        for id in 0..=n {
            m.track(id, "j");
        }
        let reports: Vec<TargetReport> = series
            .iter()
            .enumerate()
            .map(|(i, &s)| report(i as u64, s, s, 10.0))
            .collect();
        m.ingest(&reports, at(1));
        let expected: Vec<Load> = series.iter().map(|&s| l(s, s as f64 / 10.0)).collect();
        prop_assert_eq!(m.load_of(n), (median(&expected).unwrap(), LoadSource::JobMedian));
    }
}
