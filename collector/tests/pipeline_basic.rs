//! The pipeline of one target: parse, target labels, staleness, synthetic
//! series, relabeling, limits, metadata.

mod pipeline_common;

use pipeline_common::*;
use promshard_collector::pipeline::ScrapeReport;
use promshard_collector::series::{AppendBatch, is_stale_marker};

#[test]
fn first_scrape_defines_series_before_samples_and_adds_target_labels() {
    let mut p = pipeline(settings(), &[("job", "node"), ("instance", "h:9100")]);
    let mut out = AppendBatch::default();
    let r = p.on_scrape(b"a 1\nb{x=\"y\"} 2\n", TEXT, 1000, ms(5), &mut out);
    assert_eq!(r.error, None);
    assert_eq!(
        (
            r.samples_scraped,
            r.samples_post_relabel,
            r.series_added,
            r.series
        ),
        (2, 2, 2, 2)
    );
    let a = value_of(&p, &out, "a{instance=\"h:9100\", job=\"node\"}").unwrap();
    assert_eq!(a, (1000, 1.0));
    assert!(value_of(&p, &out, "b{instance=\"h:9100\", job=\"node\", x=\"y\"}").is_some());
    assert_eq!(
        value_of(&p, &out, "up{instance=\"h:9100\", job=\"node\"}"),
        Some((1000, 1.0))
    );
    assert_eq!(
        value_of(
            &p,
            &out,
            "scrape_duration_seconds{instance=\"h:9100\", job=\"node\"}"
        ),
        Some((1000, 0.005))
    );
    assert_eq!(
        value_of(
            &p,
            &out,
            "scrape_samples_scraped{instance=\"h:9100\", job=\"node\"}"
        ),
        Some((1000, 2.0))
    );
    assert_eq!(
        value_of(
            &p,
            &out,
            "scrape_series_added{instance=\"h:9100\", job=\"node\"}"
        ),
        Some((1000, 2.0))
    );
    assert_defined_before_use(&[out]);
}

#[test]
fn disappeared_series_get_one_stale_marker() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\nb 2\n", TEXT, 1000, ms(1), &mut b1);
    let mut b2 = AppendBatch::default();
    let r = p.on_scrape(b"a 1\n", TEXT, 2000, ms(1), &mut b2);
    assert_eq!(r.stale_markers, 1);
    let (ts, v) = value_of(&p, &b2, "b{job=\"j\"}").unwrap();
    assert_eq!(ts, 2000);
    assert!(is_stale_marker(v));
    let mut b3 = AppendBatch::default();
    let r = p.on_scrape(b"a 1\n", TEXT, 3000, ms(1), &mut b3);
    assert_eq!(r.stale_markers, 0);
    assert!(value_of(&p, &b3, "b{job=\"j\"}").is_none());
}

#[test]
fn scraped_nan_is_not_a_stale_marker() {
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    p.on_scrape(b"a NaN\n", TEXT, 1000, ms(1), &mut out);
    let (_, v) = value_of(&p, &out, "a").unwrap();
    assert!(v.is_nan() && !is_stale_marker(v));
}

#[test]
fn failed_scrape_marks_everything_stale_and_reports_up_0() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\nb 2\n", TEXT, 1000, ms(1), &mut b1);
    let mut b2 = AppendBatch::default();
    let r = p.on_failure("connection refused", 2000, ms(3), &mut b2);
    assert_eq!(r.error.as_deref(), Some("connection refused"));
    assert_eq!(r.stale_markers, 2);
    assert_eq!(value_of(&p, &b2, "up{job=\"j\"}"), Some((2000, 0.0)));
    assert!(is_stale_marker(
        value_of(&p, &b2, "a{job=\"j\"}").unwrap().1
    ));
    assert!(is_stale_marker(
        value_of(&p, &b2, "b{job=\"j\"}").unwrap().1
    ));
    // Coming back: defined again before use.
    let mut b3 = AppendBatch::default();
    p.on_scrape(b"a 1\n", TEXT, 3000, ms(1), &mut b3);
    assert!(
        b3.series
            .iter()
            .any(|d| d.labels.to_string() == "{__name__=\"a\", job=\"j\"}")
    );
    assert_defined_before_use(&[b1, b2, b3]);
}

#[test]
fn parse_error_fails_the_scrape_with_its_line() {
    let mut p = pipeline(settings(), &[]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\nz 1\n", TEXT, 1000, ms(1), &mut b1);
    let mut b2 = AppendBatch::default();
    let r = p.on_scrape(b"a 1\nb 2\nc{ 3\n", TEXT, 2000, ms(1), &mut b2);
    let err = r.error.unwrap();
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(r.samples_scraped, 2);
    // As Prometheus 2.42 (checked against the binary in
    // pipeline_differential): `a` was read before the error, so it is not
    // marked stale; `z` was not, so it is.
    assert!(value_of(&p, &b2, "a").is_none());
    assert!(is_stale_marker(value_of(&p, &b2, "z").unwrap().1));
    assert!(value_of(&p, &b2, "b").is_none());
    assert_eq!(value_of(&p, &b2, "up"), Some((2000, 0.0)));
}

#[test]
fn garbage_and_invalid_utf8_give_errors_not_panics() {
    // (A NUL byte alone is not here: Prometheus' text lexer reads it as the
    // end of input, an empty successful scrape.)
    let mut p = pipeline(settings(), &[]);
    for body in [
        &b"\xff\xfe\x00garbage"[..],
        b"a{x=\"\xff\"} 1\n",
        b"{}}}",
        b"a 1 2 3 4\n",
    ] {
        let mut out = AppendBatch::default();
        let r = p.on_scrape(body, TEXT, 1000, ms(1), &mut out);
        assert!(r.error.is_some(), "{body:?} text: {r:?}");
        let mut out = AppendBatch::default();
        let r = p.on_scrape(body, OPENMETRICS, 1000, ms(1), &mut out);
        assert!(r.error.is_some(), "{body:?} openmetrics: {r:?}");
    }
}

#[test]
fn on_stop_marks_series_and_synthetic_stale_unless_handover() {
    let mut p = pipeline(settings(), &[("job", "j")]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut b1);
    let mut none = AppendBatch::default();
    let mut q = pipeline(settings(), &[("job", "j")]);
    q.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut AppendBatch::default());
    q.on_stop(2000, true, &mut none);
    assert!(none.is_empty());
    let mut b2 = AppendBatch::default();
    p.on_stop(2000, false, &mut b2);
    assert_eq!(b2.samples.len(), 6);
    assert!(
        b2.samples
            .iter()
            .all(|s| is_stale_marker(s.value) && s.timestamp_ms == 2000)
    );
    for name in promshard_collector::pipeline::SYNTHETIC_NAMES {
        assert!(
            value_of(&p, &b2, &format!("{name}{{job=\"j\"}}")).is_some(),
            "{name}"
        );
    }
}

#[test]
fn empty_report_is_default() {
    assert_eq!(ScrapeReport::default().error, None);
}

#[test]
fn a_repeated_label_name_counts_as_scraped_then_fails() {
    // Prometheus 2.42 parses the line and its appender refuses it: the
    // sample counts in scrape_samples_scraped, not post-relabeling.
    let mut p = pipeline(settings(), &[]);
    let mut out = AppendBatch::default();
    let r = p.on_scrape(
        b"ok 1\ndup{x=\"1\",x=\"2\"} 1\n",
        TEXT,
        1000,
        ms(1),
        &mut out,
    );
    let err = r.error.unwrap();
    assert!(err.contains("is not unique"), "{err}");
    assert_eq!((r.samples_scraped, r.samples_post_relabel), (2, 1));
}

#[test]
fn stale_markers_at_the_last_sample_timestamp_are_written() {
    // Open question 4, settled from the agent's appender (it refuses only
    // a timestamp before the series' last one): a marker at the same
    // timestamp as the last sample is written.
    let mut p = pipeline(settings(), &[]);
    let mut b1 = AppendBatch::default();
    p.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut b1);
    let mut b2 = AppendBatch::default();
    p.on_stop(1000, false, &mut b2);
    assert!(is_stale_marker(value_of(&p, &b2, "a").unwrap().1));
    assert!(is_stale_marker(value_of(&p, &b2, "up").unwrap().1));
    // Before the last sample: nothing.
    let mut q = pipeline(settings(), &[]);
    let mut c1 = AppendBatch::default();
    q.on_scrape(b"a 1\n", TEXT, 1000, ms(1), &mut c1);
    let mut c2 = AppendBatch::default();
    q.on_stop(999, false, &mut c2);
    assert!(c2.samples.is_empty());
}
