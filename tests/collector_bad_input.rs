//! Bad input from scrape targets: the process never crashes, a bad scrape
//! fails alone (up=0) and the next good one works, memory stays bounded.
//! Where Prometheus agent can serve as the reference the test is
//! differential (see `collector_diff.rs`); the rest check promshard alone.

mod common;

use std::time::{Duration, Instant};

use common::agent::{Agent, Kind};
use common::capture::{Capture, Samples, select, values};
use common::compare::sig;
use common::fixture::{Behaviour, Fixture, Route};
use common::pair::{Pair, WAIT, config, fill, tail, up_count};
use common::{STALE_NAN_BITS, now_ms, wait_until};

fn up_values(p: &Samples, m: &[(&str, &str)]) -> Vec<f64> {
    let mut mm = vec![("__name__", "up")];
    mm.extend_from_slice(m);
    let s = select(p, &mm);
    assert_eq!(s.len(), 1, "one up series {m:?}: {:?}", s.keys());
    let mut v: Vec<(i64, u64)> = s.into_values().next().unwrap();
    v.sort();
    values(&v)
}

/// Good body, then `bad` for a few scrapes, then good again: both sides
/// agree, `up` went 1 -> 0 -> 1 and `ok` is delivered again at the end.
fn good_bad_good(job_extra: &str, bad: Route) {
    let fx = Fixture::start();
    let good = Route::text("ok 1\n");
    fx.set("/t", good.clone());
    let pair = Pair::start(
        fx,
        "",
        &format!(
            "  - job_name: bad\n    metrics_path: /t\n{job_extra}    static_configs: [{{targets: ['{{addr}}']}}]\n"
        ),
    );
    pair.settle(&[("job", "bad")], 2);
    pair.fixture.set("/t", bad);
    pair.settle(&[("job", "bad")], 3);
    let healed = now_ms();
    pair.fixture.set("/t", good);
    pair.settle(&[("job", "bad")], 2);
    let p = pair.assert_agree();
    let up = up_values(&p, &[("job", "bad")]);
    assert_eq!(up.first(), Some(&1.0), "{up:?}");
    assert!(up.contains(&0.0), "the bad scrapes have up=0: {up:?}");
    assert_eq!(up.last(), Some(&1.0), "the next good scrape works: {up:?}");
    let ok = select(&p, &[("__name__", "ok")]);
    let (l, s) = ok.iter().next().expect("ok delivered");
    assert!(
        s.iter().any(|(t, b)| *t > healed && *b != STALE_NAN_BITS),
        "ok delivered after healing: {s:?}"
    );
    assert!(!sig(l, s).ends_stale);
    for (who, a) in [("prometheus", &pair.prom), ("ours", &pair.ours)] {
        assert_eq!(
            a.get("/-/healthy").map(|r| r.0),
            Ok(200),
            "{who} still healthy"
        );
    }
}

#[test]
fn malformed_body_fails_that_scrape_and_the_next_works() {
    good_bad_good("", Route::text("this is { not valid\nok 1\n"));
}

#[test]
fn body_over_body_size_limit_fails_that_scrape() {
    let big = format!(
        "ok 1\n{}",
        "# filler comment line to pass the limit\n".repeat(20)
    );
    good_bad_good("    body_size_limit: 200B\n", Route::text(big));
}

#[test]
fn invalid_utf8_label_value_fails_that_scrape() {
    good_bad_good("", Route::text(&b"ok{v=\"\xff\xfe\"} 1\nok 1\n"[..]));
}

#[test]
fn target_that_never_answers_or_never_closes_times_out() {
    let fx = Fixture::start();
    fx.set("/fine", Route::text("fine 1\n"));
    fx.set("/hang", Route::text("").with_behaviour(Behaviour::Hang));
    fx.set(
        "/never",
        Route::text("starts 1\n").with_behaviour(Behaviour::NeverClose),
    );
    let group = |p: &str| {
        format!("{{targets: ['{{addr}}'], labels: {{instance: {p}, __metrics_path__: /{p}}}}}")
    };
    let pair = Pair::start(
        fx,
        "",
        &format!(
            "  - job_name: slow\n    scrape_timeout: 500ms\n    static_configs: [{}, {}, {}]\n",
            group("fine"),
            group("hang"),
            group("never")
        ),
    );
    pair.settle(&[("instance", "hang")], 3);
    pair.settle(&[("instance", "never")], 3);
    pair.settle(&[("instance", "fine")], 2);
    let p = pair.assert_agree();
    assert!(
        up_values(&p, &[("instance", "hang")])
            .iter()
            .all(|v| *v == 0.0)
    );
    assert!(
        up_values(&p, &[("instance", "never")])
            .iter()
            .all(|v| *v == 0.0)
    );
    assert!(
        up_values(&p, &[("instance", "fine")])
            .iter()
            .all(|v| *v == 1.0)
    );
    assert!(select(&p, &[("__name__", "starts")]).is_empty());
}

/// A promshard collector alone with its receiver.
struct Solo {
    agent: Agent,
    cap: Capture,
    fixture: Fixture,
    _dir: tempfile::TempDir,
}

fn solo(fixture: Fixture, scrape_configs: &str) -> Solo {
    let dir = tempfile::tempdir().unwrap();
    let cap = Capture::start();
    let sc = fill(scrape_configs, &fixture, dir.path());
    let agent = Agent::start(Kind::ours(), dir.path(), &config("", &sc, &cap.url()));
    Solo {
        agent,
        cap,
        fixture,
        _dir: dir,
    }
}

#[test]
fn target_with_a_million_series_over_sample_limit_fails_alone_with_bounded_rss() {
    const SERIES: usize = 1_000_000;
    const RSS_BOUND_KIB: u64 = 1024 * 1024; // 1 GiB: generous, the body is ~30 MB.
    let fx = Fixture::start();
    let mut body = String::with_capacity(SERIES * 32);
    for i in 0..SERIES {
        body.push_str(&format!("big_metric{{i=\"{i}\"}} {i}\n"));
    }
    fx.set("/big", Route::text(body));
    fx.set("/small", Route::text("small 1\n"));
    let group = |p: &str| {
        format!("{{targets: ['{{addr}}'], labels: {{instance: {p}, __metrics_path__: /{p}}}}}")
    };
    let mut s = solo(
        fx,
        &format!(
            "  - job_name: big\n    scrape_interval: 5s\n    scrape_timeout: 5s\n    sample_limit: 1000\n    \
static_configs: [{}, {}]\n",
            group("big"),
            group("small")
        ),
    );
    let start = Instant::now();
    let mut peak = 0u64;
    let ok = wait_until(Duration::from_secs(60), || {
        if let Some((_, hwm)) = s.agent.rss_kib() {
            peak = peak.max(hwm);
        }
        up_count(&s.cap, &[("instance", "big")], 0) >= 3
    });
    assert!(
        ok,
        "3 scrapes of the big target within 60 s (fixture hits: {})\n{}",
        s.fixture.hits("/big"),
        tail(&s.agent.log(), 40)
    );
    assert!(s.agent.alive(), "the process survives");
    let p = s.cap.snapshot();
    let big_up = up_values(&p, &[("instance", "big")]);
    assert!(
        big_up.iter().all(|v| *v == 0.0),
        "big target up: {big_up:?}"
    );
    // The other target of the same process keeps working meanwhile.
    let small = select(&p, &[("instance", "small")]);
    assert!(
        up_values(&p, &[("instance", "small")])
            .iter()
            .all(|v| *v == 1.0),
        "small target up while the big one is scraped:\n{}",
        small
            .iter()
            .map(|(l, v)| format!(
                "{}: {}",
                common::compare::fmt_labels(l),
                common::compare::fmt_samples(v)
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(select(&p, &[("__name__", "big_metric")]).is_empty());
    let (rss, hwm) = s.agent.rss_kib().expect("read /proc status");
    peak = peak.max(hwm);
    eprintln!(
        "1M-series target: VmRSS {rss} KiB, VmHWM {peak} KiB after {:?}",
        start.elapsed()
    );
    // Prometheus 2.42 agent itself peaks at ~1.3 GiB here (it keeps every
    // series of the failed scrapes in its caches): the bound is promshard's.
    if s.agent.kind == Kind::Promshard {
        assert!(
            peak < RSS_BOUND_KIB,
            "peak RSS {peak} KiB over {RSS_BOUND_KIB} KiB"
        );
    }
}

#[test]
fn sigterm_delivers_what_the_wal_holds_and_exits_0() {
    let fx = Fixture::start();
    fx.set("/seq", Route::text("seq {seq}\nconst 1\n").with_seq());
    let dir = tempfile::tempdir().unwrap();
    let cap = Capture::start();
    cap.fail_with(Some(500));
    let sc = fill(
        "  - job_name: term\n    metrics_path: /seq\n    static_configs: [{targets: ['{addr}']}]\n",
        &fx,
        dir.path(),
    );
    let agent = Agent::start_with(
        Kind::ours(),
        dir.path(),
        &config("", &sc, &cap.url()),
        &common::agent::Options {
            shutdown_grace: Some("20s".into()),
        },
    );
    assert!(wait_until(WAIT, || fx.hits("/seq") >= 4), "4 scrapes");
    assert!(
        cap.refused() > 0,
        "the sender tried while the receiver failed"
    );
    let served = fx.hits("/seq");
    let log_agent = agent.log();
    // Heal the receiver 1 s after SIGTERM, well within the grace.
    let term = std::thread::scope(|sc| {
        let h = sc.spawn(move || agent.terminate(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_secs(1));
        cap.fail_with(None);
        h.join().unwrap()
    });
    let status = term.unwrap_or_else(|| panic!("no exit within 30 s\n{}", tail(&log_agent, 40)));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let p = cap.snapshot();
    let seq = select(&p, &[("__name__", "seq")]);
    let got: std::collections::BTreeSet<u64> = seq
        .values()
        .flatten()
        .filter(|(_, b)| *b != STALE_NAN_BITS)
        .map(|(_, b)| f64::from_bits(*b) as u64)
        .collect();
    // The scrape in flight at SIGTERM may be abandoned; every earlier one
    // must be delivered.
    let missing: Vec<u64> = (1..served).filter(|n| !got.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "scrapes served before SIGTERM not delivered: {missing:?} (got {got:?})"
    );
}
