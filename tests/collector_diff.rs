//! Differential tests: `promshard collector` and real Prometheus 2.42 in
//! agent mode scrape the same fixtures on the same config and remote-write
//! to two capturing receivers; what arrives must agree series by series
//! (see `common::compare` for what "agree" means modulo timing). Each test
//! also checks the Prometheus side for the effect it is named after, so a
//! scenario that silently does nothing fails.
//!
//! Harness self-check: `PROMSHARD_DIFFTEST_OURS=prometheus cargo test
//! --test collector_diff` runs Prometheus on both sides.

mod common;

use common::capture::{Samples, label, select, values};
use common::compare::{PROM_NAN_BITS, sig};
use common::fixture::{Fixture, Route};
use common::pair::{Pair, WAIT};
use common::{STALE_NAN_BITS, now_ms, wait_until, write_atomic};

/// The only series of `samples` matching `m`; panics unless exactly one.
fn one(samples: &Samples, m: &[(&str, &str)]) -> (common::capture::Labels, Vec<(i64, u64)>) {
    let s = select(samples, m);
    assert_eq!(
        s.len(),
        1,
        "want exactly one series {m:?}, got {:?}",
        s.keys()
    );
    s.into_iter().next().unwrap()
}

#[test]
fn honor_labels_true_and_false_with_conflicting_labels() {
    let fx = Fixture::start();
    fx.set(
        "/hl",
        Route::text(
            "# TYPE conflict gauge\nconflict{job=\"from_body\",instance=\"body:1\",zone=\"a\"} 1\nplain 2\n",
        ),
    );
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: honor_true\n    honor_labels: true\n    metrics_path: /hl\n    \
static_configs: [{targets: ['{addr}'], labels: {zone: static}}]\n  \
- job_name: honor_false\n    metrics_path: /hl\n    \
static_configs: [{targets: ['{addr}'], labels: {zone: static}}]\n",
    );
    pair.settle(&[("job", "honor_true")], 3);
    pair.settle(&[("job", "honor_false")], 3);
    let p = pair.assert_agree();
    // honor_labels: true — the body's labels win.
    one(
        &p,
        &[
            ("__name__", "conflict"),
            ("job", "from_body"),
            ("instance", "body:1"),
            ("zone", "a"),
        ],
    );
    // false — the target's labels win, the body's get the exported_ prefix.
    let (l, _) = one(&p, &[("__name__", "conflict"), ("job", "honor_false")]);
    assert_eq!(label(&l, "exported_job"), Some("from_body"));
    assert_eq!(label(&l, "exported_instance"), Some("body:1"));
    assert_eq!(label(&l, "exported_zone"), Some("a"));
    assert_eq!(label(&l, "zone"), Some("static"));
}

#[test]
fn honor_timestamps_true_and_false_with_explicit_timestamps() {
    let fx = Fixture::start();
    // Empty at first: Prometheus' remote write skips samples older than
    // its WAL watcher's start, so the explicit timestamp must be later.
    fx.set("/ts", Route::text("without_ts 6\n"));
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: ts_true\n    honor_timestamps: true\n    metrics_path: /ts\n    \
static_configs: [{targets: ['{addr}']}]\n  \
- job_name: ts_false\n    honor_timestamps: false\n    metrics_path: /ts\n    \
static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "ts_true")], 1);
    pair.settle(&[("job", "ts_false")], 1);
    let t = now_ms();
    pair.fixture
        .set_body("/ts", format!("with_ts 5 {t}\nwithout_ts 6\n"));
    pair.settle(&[("job", "ts_true")], 3);
    pair.settle(&[("job", "ts_false")], 3);
    let p = pair.assert_agree();
    let (l, s) = one(&p, &[("__name__", "with_ts"), ("job", "ts_true")]);
    assert_eq!(
        sig(&l, &s).fixed_ts,
        Some(t),
        "honored timestamp {t}: {s:?}"
    );
    let (l, s) = one(&p, &[("__name__", "with_ts"), ("job", "ts_false")]);
    assert!(s.len() >= 2, "{s:?}");
    assert_eq!(sig(&l, &s).fixed_ts, None, "scrape times, not {t}: {s:?}");
}

#[test]
fn metric_relabel_configs_drop_keep_replace_labeldrop() {
    let fx = Fixture::start();
    fx.set(
        "/mr",
        Route::text(
            "keep_me{a=\"1\",drop_label=\"x\"} 1\ndrop_me 2\nrename_src{a=\"2\"} 3\nother 4\n",
        ),
    );
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: mr\n    metrics_path: /mr\n    static_configs: [{targets: ['{addr}']}]\n    \
metric_relabel_configs:\n      \
- {source_labels: [__name__], regex: drop_me, action: drop}\n      \
- {regex: drop_label, action: labeldrop}\n      \
- {source_labels: [__name__, a], separator: ';', regex: 'rename_src;(.*)', target_label: renamed, replacement: 'v$1', action: replace}\n      \
- {source_labels: [__name__], regex: 'keep_me|rename_src', action: keep}\n",
    );
    pair.settle(&[("job", "mr")], 3);
    let p = pair.assert_agree();
    assert!(select(&p, &[("__name__", "drop_me")]).is_empty());
    assert!(select(&p, &[("__name__", "other")]).is_empty());
    let (l, _) = one(&p, &[("__name__", "keep_me")]);
    assert_eq!(label(&l, "drop_label"), None);
    let (l, _) = one(&p, &[("__name__", "rename_src")]);
    assert_eq!(label(&l, "renamed"), Some("v2"));
    let (_, s) = one(&p, &[("__name__", "scrape_samples_post_metric_relabeling")]);
    assert_eq!(values(&s).last(), Some(&2.0));
}

#[test]
fn sample_limit_exceeded_sets_up_0_and_drops_the_body() {
    let fx = Fixture::start();
    fx.set("/sl", Route::text("a 1\nb 2\nc 3\n"));
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: sl\n    sample_limit: 3\n    metrics_path: /sl\n    \
static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "sl")], 3);
    let over = now_ms();
    pair.fixture.set_body("/sl", "a 1\nb 2\nc 3\nd 4\ne 5\n");
    pair.settle(&[("job", "sl")], 3);
    let p = pair.assert_agree();
    let (_, up) = one(&p, &[("__name__", "up")]);
    assert_eq!(values(&up).last(), Some(&0.0), "up after the limit: {up:?}");
    // No body sample of a scrape over the limit. Prometheus 2.42 writes NO
    // stale markers here either: the failed append leaves the series in its
    // staleness cache's current set, so the empty re-append finds nothing
    // stale (the issue text expects markers; the reference does not).
    for n in ["a", "b", "c"] {
        let (l, s) = one(&p, &[("__name__", n)]);
        assert!(
            s.iter().all(|(t, b)| *t <= over || *b == STALE_NAN_BITS),
            "{n}: no samples of failed scrapes: {s:?}"
        );
        assert!(
            !sig(&l, &s).stale,
            "{n}: Prometheus 2.42 marks nothing stale: {s:?}"
        );
    }
    assert!(select(&p, &[("__name__", "d")]).is_empty());
}

#[test]
fn series_that_disappears_gets_a_stale_marker() {
    let fx = Fixture::start();
    fx.set("/dis", Route::text("stay 1\ngo 2\n"));
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: dis\n    metrics_path: /dis\n    static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "dis")], 3);
    pair.fixture.set_body("/dis", "stay 1\n");
    pair.settle(&[("job", "dis")], 3);
    let p = pair.assert_agree();
    let (l, s) = one(&p, &[("__name__", "go")]);
    assert!(sig(&l, &s).ends_stale, "go: {s:?}");
    let (l, s) = one(&p, &[("__name__", "stay")]);
    assert!(!sig(&l, &s).stale, "stay: {s:?}");
}

#[test]
fn target_removed_from_file_sd_gets_stale_markers_for_all_series() {
    let fx = Fixture::start();
    fx.set("/stay", Route::text("stay_metric 1\n"));
    fx.set("/gone", Route::text("gone_metric 2\n"));
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("targets.json");
    let group = |inst: &str, addr: &str| {
        format!(
            "{{\"targets\": [\"{addr}\"], \"labels\": {{\"instance\": \"{inst}\", \"__metrics_path__\": \"/{inst}\"}}}}"
        )
    };
    let addr = fx.addr();
    write_atomic(
        &sd,
        &format!("[{}, {}]", group("stay", &addr), group("gone", &addr)),
    );
    let pair = Pair::start(
        fx,
        "",
        &format!(
            "  - job_name: fsd\n    file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n",
            sd.display()
        ),
    );
    pair.settle(&[("instance", "gone")], 3);
    pair.settle(&[("instance", "stay")], 2);
    write_atomic(&sd, &format!("[{}]", group("stay", &addr)));
    // Prometheus: discovery updates are throttled to 5 s, then the stale
    // markers come ~2.1 intervals after the loop stopped.
    for (who, cap) in [("prometheus", &pair.prom_cap), ("ours", &pair.ours_cap)] {
        let ok = wait_until(WAIT, || {
            let s = cap.select(&[("__name__", "up"), ("instance", "gone")]);
            s.iter().all(|(l, v)| sig(l, v).ends_stale) && !s.is_empty()
        });
        assert!(ok, "{who}: up{{instance=\"gone\"}} never went stale");
    }
    pair.settle(&[("instance", "stay")], 2);
    let p = pair.assert_agree();
    let gone = select(&p, &[("instance", "gone")]);
    assert_eq!(
        gone.len(),
        6,
        "gone_metric + 5 synthetic: {:?}",
        gone.keys()
    );
    for (l, s) in &gone {
        assert!(sig(l, s).ends_stale, "{l:?} ends stale: {s:?}");
    }
    drop(dir);
}

#[test]
fn external_labels_are_added_but_do_not_override() {
    let fx = Fixture::start();
    fx.set(
        "/ext",
        Route::text("ext_metric{region=\"body\"} 1\nplain 2\n"),
    );
    let pair = Pair::start(
        fx,
        "  external_labels:\n    region: eu\n    job: not_this\n    replica: r1\n",
        "  - job_name: ext\n    metrics_path: /ext\n    static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "ext")], 3);
    let p = pair.assert_agree();
    let (l, _) = one(&p, &[("__name__", "plain")]);
    assert_eq!(label(&l, "region"), Some("eu"));
    assert_eq!(label(&l, "replica"), Some("r1"));
    assert_eq!(label(&l, "job"), Some("ext"));
    let (l, _) = one(&p, &[("__name__", "ext_metric")]);
    assert_eq!(label(&l, "region"), Some("body"));
}

#[test]
fn openmetrics_body() {
    let fx = Fixture::start();
    fx.set(
        "/om",
        Route::openmetrics(
            "# TYPE om_counter counter\n# HELP om_counter A counter.\n\
om_counter_total 3 # {trace_id=\"abc\"} 1.0\nom_counter_created 1700000000.5\n\
# TYPE om_gauge gauge\nom_gauge{a=\"x\"} 1.5\n\
# TYPE om_hist histogram\nom_hist_bucket{le=\"1\"} 1\nom_hist_bucket{le=\"+Inf\"} 2\n\
om_hist_count 2\nom_hist_sum 3\n\
# TYPE om_info info\nom_info_info{version=\"1\"} 1\n\
# TYPE om_state stateset\nom_state{om_state=\"a\"} 1\nom_state{om_state=\"b\"} 0\n\
# EOF\n",
        ),
    );
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: om\n    metrics_path: /om\n    static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "om")], 3);
    let p = pair.assert_agree();
    let (_, s) = one(&p, &[("__name__", "om_counter_total")]);
    assert_eq!(values(&s).last(), Some(&3.0));
    one(&p, &[("__name__", "om_hist_bucket"), ("le", "+Inf")]);
}

#[test]
fn ordinary_nan_stays_ordinary_nan() {
    let fx = Fixture::start();
    fx.set("/nan", Route::text("nan_metric NaN\nnum 1\n"));
    let pair = Pair::start(
        fx,
        "",
        "  - job_name: nan\n    metrics_path: /nan\n    static_configs: [{targets: ['{addr}']}]\n",
    );
    pair.settle(&[("job", "nan")], 3);
    let p = pair.assert_agree();
    let (_, s) = one(&p, &[("__name__", "nan_metric")]);
    assert!(
        s.iter().all(|(_, b)| *b == PROM_NAN_BITS),
        "prometheus: {s:?}"
    );
    let o = pair.ours_cap.snapshot();
    let (_, s) = one(&o, &[("__name__", "nan_metric")]);
    assert!(
        s.iter()
            .all(|(_, b)| f64::from_bits(*b).is_nan() && *b != STALE_NAN_BITS),
        "ours sends a scraped NaN as an ordinary NaN, never the stale bits: {s:x?}"
    );
}
