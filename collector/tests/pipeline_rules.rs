//! Relabeling, honor_labels / honor_timestamps, limits, duplicates,
//! metadata, external labels, the series cache and define_all.

mod pipeline_common;

use pipeline_common::*;
use promshard_collector::series::{AppendBatch, is_stale_marker};
use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::{Action, Regex, RelabelConfig};

fn drop_rule(name_regex: &str) -> RelabelConfig {
    RelabelConfig {
        source_labels: vec!["__name__".into()],
        regex: Regex::new(name_regex).unwrap(),
        action: Action::Drop,
        ..RelabelConfig::default()
    }
}

#[test]
fn metric_relabel_drops_series_and_counts_post_relabel() {
    let mut s = settings();
    s.metric_relabel_configs = vec![drop_rule("go_.*")];
    let mut p = pipeline(s, &[("job", "j")]);
    for ts in [1000, 2000] {
        let mut out = AppendBatch::default();
        let r = p.on_scrape(b"go_x 1\ngo_y 1\nkeep 2\n", TEXT, ts, ms(1), &mut out);
        assert_eq!((r.samples_scraped, r.samples_post_relabel), (3, 1));
        assert!(value_of(&p, &out, "go_x{job=\"j\"}").is_none());
        assert_eq!(value_of(&p, &out, "keep{job=\"j\"}"), Some((ts, 2.0)));
        assert_eq!(
            value_of(&p, &out, "scrape_samples_post_metric_relabeling{job=\"j\"}"),
            Some((ts, 1.0))
        );
    }
    // The dropped ones are cached as dropped (3 raw strings cached).
    assert_eq!(p.cached_raw_series(), 3);
}

#[test]
fn relabel_removing_name_fails_the_scrape() {
    let mut s = settings();
    s.metric_relabel_configs = vec![RelabelConfig {
        regex: Regex::new("__name__").unwrap(),
        action: Action::LabelDrop,
        ..RelabelConfig::default()
    }];
    let mut p = pipeline(s, &[("job", "j")]);
    let mut out = AppendBatch::default();
    let r = p.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut out);
    assert_eq!(
        r.error.as_deref(),
        Some("missing metric name (__name__ label)")
    );
}

#[test]
fn metric_relabel_does_not_touch_synthetic_series() {
    let mut s = settings();
    s.metric_relabel_configs = vec![drop_rule("up|scrape_.*")];
    let mut p = pipeline(s, &[("job", "j")]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"up 5\n", TEXT, 1000, ms(1), &mut out);
    assert_eq!(value_of(&p, &out, "up{job=\"j\"}"), Some((1000, 1.0)));
}

#[test]
fn honor_labels_false_renames_conflicts_to_exported() {
    let mut p = pipeline(settings(), &[("job", "outer"), ("instance", "h:1")]);
    let mut out = AppendBatch::default();
    p.on_scrape(
        b"a{job=\"inner\",exported_job=\"e\"} 1\n",
        TEXT,
        1000,
        ms(1),
        &mut out,
    );
    assert!(
        value_of(
            &p,
            &out,
            "a{exported_exported_job=\"inner\", exported_job=\"e\", instance=\"h:1\", job=\"outer\"}"
        )
        .is_some()
    );
}

#[test]
fn honor_labels_true_keeps_scraped_values() {
    let mut s = settings();
    s.honor_labels = true;
    let mut p = pipeline(s, &[("job", "outer"), ("instance", "h:1")]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a{job=\"inner\"} 1\n", TEXT, 1000, ms(1), &mut out);
    assert!(value_of(&p, &out, "a{instance=\"h:1\", job=\"inner\"}").is_some());
    // The synthetic series always carry the target's labels.
    assert!(value_of(&p, &out, "up{instance=\"h:1\", job=\"outer\"}").is_some());
}

#[test]
fn honor_timestamps_false_ignores_explicit_timestamps() {
    let mut s = settings();
    s.honor_timestamps = false;
    let mut p = pipeline(s, &[]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a 1 500\n", TEXT, 1000, ms(1), &mut out);
    assert_eq!(value_of(&p, &out, "a"), Some((1000, 1.0)));
    // ...and so the series takes part in staleness.
    let mut out = AppendBatch::default();
    p.on_scrape(b"", TEXT, 2000, ms(1), &mut out);
    assert!(is_stale_marker(value_of(&p, &out, "a").unwrap().1));
}

#[test]
fn explicit_timestamps_are_kept_and_not_tracked_for_staleness() {
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a 1 500\n", TEXT, 1000, ms(1), &mut out);
    assert_eq!(value_of(&p, &out, "a"), Some((500, 1.0)));
    let mut out = AppendBatch::default();
    let r = p.on_scrape(b"b 1\n", TEXT, 2000, ms(1), &mut out);
    assert_eq!(r.stale_markers, 0);
    assert!(value_of(&p, &out, "a").is_none());
}

#[test]
fn out_of_order_explicit_timestamps_are_skipped() {
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a 1 900\n", TEXT, 1000, ms(1), &mut out);
    let mut out = AppendBatch::default();
    let r = p.on_scrape(b"a 2 800\n", TEXT, 2000, ms(1), &mut out);
    assert_eq!(r.out_of_order, 1);
    assert!(value_of(&p, &out, "a").is_none());
    assert_eq!(r.error, None);
    // Increasing timestamps in one body are all written.
    let mut out = AppendBatch::default();
    p.on_scrape(b"a 3 1000\na 4 1100\n", TEXT, 3000, ms(1), &mut out);
    assert_eq!(all_values(&p, &out, "a"), vec![(1000, 3.0), (1100, 4.0)]);
}

#[test]
fn far_future_timestamps_are_out_of_bounds() {
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    let r = p.on_scrape(b"a 1 700000\n", TEXT, 1000, ms(1), &mut out);
    assert_eq!(r.out_of_bounds, 1);
    assert!(value_of(&p, &out, "a").is_none());
}

#[test]
fn duplicate_series_are_all_written_as_the_agent_does() {
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    // The same labels written twice, once in another label order.
    let r = p.on_scrape(
        b"a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n",
        TEXT,
        1000,
        ms(1),
        &mut out,
    );
    assert_eq!(r.error, None);
    assert_eq!(r.duplicates, 1);
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series),
        (2, 2, 1)
    );
    // The 2.42 agent appends both (its order check is against the last
    // committed sample and refuses only earlier timestamps).
    assert_eq!(
        all_values(&p, &out, "a{x=\"1\", y=\"2\"}"),
        vec![(1000, 1.0), (1000, 2.0)]
    );
}

#[test]
fn sample_limit_fails_the_whole_scrape() {
    let mut s = settings();
    s.sample_limit = 2;
    s.metric_relabel_configs = vec![drop_rule("dropped")];
    let mut p = pipeline(s, &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    // Dropped samples do not count against the limit.
    let r = p.on_scrape(b"a 1\nb 1\ndropped 1\n", TEXT, 1000, ms(1), &mut b1);
    assert_eq!(r.error, None);
    let mut b2 = AppendBatch::default();
    let r = p.on_scrape(
        b"a 1\nb 1\nc 1\nd 1\ndropped 1\n",
        TEXT,
        2000,
        ms(1),
        &mut b2,
    );
    assert_eq!(r.error.as_deref(), Some("sample limit exceeded"));
    // As Prometheus 2.42: every sample is counted, series_added only
    // counts new series within the limit (here none: a and b are known).
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series_added),
        (5, 4, 0)
    );
    assert!(value_of(&p, &b2, "c{job=\"j\"}").is_none());
    // As the 2.42 binary: a and b were taken before the limit was hit, so
    // they count as seen and get no stale marker.
    assert!(value_of(&p, &b2, "a{job=\"j\"}").is_none());
    assert!(value_of(&p, &b2, "b{job=\"j\"}").is_none());
    assert_eq!(value_of(&p, &b2, "up{job=\"j\"}"), Some((2000, 0.0)));
    assert_eq!(
        value_of(&p, &b2, "scrape_samples_scraped{job=\"j\"}"),
        Some((2000, 5.0))
    );
    assert_eq!(
        value_of(&p, &b2, "scrape_samples_post_metric_relabeling{job=\"j\"}"),
        Some((2000, 4.0))
    );
}

#[test]
fn label_limits_fail_the_scrape() {
    type SetLimit = fn(&mut promshard_collector::pipeline::JobSettings);
    let cases: [(SetLimit, &str); 3] = [
        (
            |s| s.label_limit = 2,
            "label_limit exceeded (metric: b, number of labels: 3, limit: 2)",
        ),
        (
            |s| s.label_name_length_limit = 8,
            "label_name_length_limit exceeded",
        ),
        (
            |s| s.label_value_length_limit = 3,
            "label_value_length_limit exceeded",
        ),
    ];
    for (set, msg) in cases {
        let mut s = settings();
        set(&mut s);
        let mut p = pipeline(s, &[("job", "j")]);
        let mut b1 = AppendBatch::default();
        p.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut b1);
        let mut b2 = AppendBatch::default();
        let r = p.on_scrape(
            b"a 1\nb{long_name=\"long\"} 1\nc 1\n",
            TEXT,
            2000,
            ms(1),
            &mut b2,
        );
        let err = r.error.unwrap();
        assert!(err.starts_with(msg), "{err}");
        assert_eq!(r.samples_scraped, 2, "{msg}");
        assert_eq!(r.samples_post_relabel, 1, "{msg}");
        // `a` was read before the failing series: no stale marker.
        assert!(value_of(&p, &b2, "a{job=\"j\"}").is_none(), "{msg}");
        assert_eq!(value_of(&p, &b2, "up{job=\"j\"}"), Some((2000, 0.0)));
    }
}

#[test]
fn external_labels_are_added_where_absent() {
    let mut s = settings();
    s.external_labels = Labels::from_pairs([("region", "eu"), ("job", "ext")]);
    let mut p = pipeline(s, &[("job", "j")]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a{region=\"us\"} 1\nb 1\n", TEXT, 1000, ms(1), &mut out);
    assert!(value_of(&p, &out, "a{job=\"j\", region=\"us\"}").is_some());
    assert!(value_of(&p, &out, "b{job=\"j\", region=\"eu\"}").is_some());
    assert!(value_of(&p, &out, "up{job=\"j\", region=\"eu\"}").is_some());
}

#[test]
fn metadata_is_emitted_when_first_seen_or_changed() {
    let mut p = pipeline(settings(), &[]);
    let body = b"# HELP a The a.\n# TYPE a counter\na 1\n# TYPE g gauge\ng 1\n";
    let mut out = AppendBatch::default();
    p.on_scrape(body, TEXT, 1000, ms(1), &mut out);
    let mut names: Vec<_> = out
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.as_str(),
                m.kind.as_str(),
                m.help.as_str(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, vec![("a", "counter", "The a."), ("g", "gauge", "")]);
    let mut out = AppendBatch::default();
    p.on_scrape(body, TEXT, 2000, ms(1), &mut out);
    assert!(out.metadata.is_empty());
    let mut out = AppendBatch::default();
    p.on_scrape(
        b"# HELP a Changed.\n# TYPE a counter\na 1\n",
        TEXT,
        3000,
        ms(1),
        &mut out,
    );
    assert_eq!(out.metadata.len(), 1);
    assert_eq!(out.metadata[0].help, "Changed.");
    // OpenMetrics units.
    let mut out = AppendBatch::default();
    let r = p.on_scrape(
        b"# TYPE t_seconds gauge\n# UNIT t_seconds seconds\nt_seconds 1\n# EOF\n",
        OPENMETRICS,
        4000,
        ms(1),
        &mut out,
    );
    assert_eq!(r.error, None);
    assert_eq!(out.metadata.len(), 1);
    assert_eq!(
        (out.metadata[0].kind.as_str(), out.metadata[0].unit.as_str()),
        ("gauge", "seconds")
    );
}

#[test]
fn cached_series_skip_label_work_and_cache_stays_bounded() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    for i in 0..50 {
        let body = format!("steady 1\nchurn{{i=\"{i}\"}} 1\n");
        let mut out = AppendBatch::default();
        let r = p.on_scrape(body.as_bytes(), TEXT, 1000 * (i + 1), ms(1), &mut out);
        assert_eq!(r.series_added, if i == 0 { 2 } else { 1 });
        assert!(p.cached_raw_series() <= 2, "{}", p.cached_raw_series());
        // Series entries: the live ones plus those going stale.
        assert!(p.known_series().len() <= 2 + 5 + 2);
    }
}

#[test]
fn set_settings_keeps_staleness_and_relabels_again() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\nb 1\n", TEXT, 1000, ms(1), &mut b1);
    let mut s = settings();
    s.metric_relabel_configs = vec![drop_rule("b")];
    p.set_settings(std::sync::Arc::new(s));
    let mut b2 = AppendBatch::default();
    let r = p.on_scrape(b"a 1\nb 1\n", TEXT, 2000, ms(1), &mut b2);
    assert_eq!(r.samples_post_relabel, 1);
    assert!(is_stale_marker(
        value_of(&p, &b2, "b{job=\"j\"}").unwrap().1
    ));
    assert_eq!(value_of(&p, &b2, "a{job=\"j\"}"), Some((2000, 1.0)));
    assert_defined_before_use(&[b1, b2]);
}

#[test]
fn define_all_defines_every_ref_the_batch_uses() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\nb 1\n", TEXT, 1000, ms(1), &mut b1);
    let mut b2 = AppendBatch::default();
    p.on_scrape(b"a 2\n", TEXT, 2000, ms(1), &mut b2);
    // b2 uses refs defined in b1 only (a, the stale b, the synthetic ones).
    assert!(b2.series.is_empty());
    p.define_all(&mut b2);
    let used: std::collections::HashSet<_> = b2.samples.iter().map(|s| s.series).collect();
    let defined: std::collections::HashSet<_> = b2.series.iter().map(|d| d.series).collect();
    assert_eq!(used, defined);
    assert_eq!(b2.series.len(), 2 + 5);
    assert_defined_before_use(&[b2]);
}
