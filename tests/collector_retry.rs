//! Remote write retry semantics end to end, against a receiver that
//! answers 500, 400 or 429 (with Retry-After) for a while: 500 then 204
//! resends the same data, 400 is dropped (not retried) and counted, 429
//! waits the Retry-After. promshard alone (Prometheus 2.42 drops 429
//! unless `retry_on_http_429`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::agent::{Agent, Kind};
use common::capture::{Capture, select};
use common::fixture::{Fixture, Route};
use common::pair::{WAIT, config, fill, tail};
use common::{STALE_NAN_BITS, wait_until};

struct Run {
    agent: Agent,
    cap: Capture,
    fx: Fixture,
    _dir: tempfile::TempDir,
}

/// A collector scraping `seq N` (N = request number) every second.
fn start(cap: Capture) -> Run {
    let fx = Fixture::start();
    fx.set("/seq", Route::text("seq {seq}\n").with_seq());
    let dir = tempfile::tempdir().unwrap();
    let sc = fill(
        "  - job_name: retry\n    metrics_path: /seq\n    static_configs: [{targets: ['{addr}']}]\n",
        &fx,
        dir.path(),
    );
    let agent = Agent::start(Kind::ours(), dir.path(), &config("", &sc, &cap.url()));
    Run {
        agent,
        cap,
        fx,
        _dir: dir,
    }
}

/// The `seq` values delivered.
fn delivered(cap: &Capture) -> BTreeSet<u64> {
    select(&cap.snapshot(), &[("__name__", "seq")])
        .values()
        .flatten()
        .filter(|(_, b)| *b != STALE_NAN_BITS)
        .map(|(_, b)| f64::from_bits(*b) as u64)
        .collect()
}

/// Sum of a counter's samples in `/metrics` whose line contains `filter`.
fn metric_sum(agent: &Agent, name: &str, filter: &str) -> Option<f64> {
    let (status, body) = agent.get("/metrics").ok()?;
    assert_eq!(status, 200, "/metrics: {body}");
    let mut found = None;
    for line in body.lines() {
        if line.starts_with(name)
            && line[name.len()..].starts_with(['{', ' '])
            && line.contains(filter)
        {
            let v: f64 = line.rsplit(' ').next()?.parse().ok()?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[test]
fn remote_500_then_204_resends_the_same_data() {
    let cap = Capture::start();
    cap.fail_with(Some(500));
    let r = start(cap);
    assert!(wait_until(WAIT, || r.fx.hits("/seq") >= 4 && r.cap.refused() >= 3));
    let served = r.fx.hits("/seq");
    r.cap.fail_with(None);
    let ok = wait_until(WAIT, || {
        let d = delivered(&r.cap);
        (1..=served).all(|n| d.contains(&n))
    });
    assert!(
        ok,
        "scrapes 1..={served} refused with 500 then resent: got {:?}\n{}",
        delivered(&r.cap),
        tail(&r.agent.log(), 30)
    );
}

#[test]
fn remote_400_is_dropped_not_retried_and_counted() {
    let cap = Capture::start();
    let r = start(cap);
    assert!(
        wait_until(WAIT, || delivered(&r.cap).contains(&1)),
        "first scrape delivered"
    );
    r.cap.fail_with(Some(400));
    let h0 = r.fx.hits("/seq");
    assert!(wait_until(WAIT, || r.fx.hits("/seq") >= h0 + 4 && r.cap.refused() >= 2));
    // Let the last scrape of the window be sent (and refused) before healing.
    std::thread::sleep(Duration::from_millis(800));
    let h1 = r.fx.hits("/seq");
    r.cap.fail_with(None);
    assert!(
        wait_until(WAIT, || delivered(&r.cap).iter().any(|n| *n > h1)),
        "scrapes after the 400s are delivered\n{}",
        tail(&r.agent.log(), 30)
    );
    // Scrapes wholly inside the 400 window are gone: not resent later.
    std::thread::sleep(Duration::from_secs(2));
    let d = delivered(&r.cap);
    let resent: Vec<u64> = (h0 + 1..h1).filter(|n| d.contains(n)).collect();
    assert!(
        resent.is_empty(),
        "400-refused scrapes were resent: {resent:?}"
    );
    let dropped = metric_sum(
        &r.agent,
        "promshard_collector_remote_samples_dropped_total",
        "client_error",
    );
    assert!(
        dropped.is_some_and(|v| v >= 1.0),
        "dropped samples counted in /metrics with reason client_error: {dropped:?}"
    );
}

#[test]
fn remote_429_with_retry_after_waits() {
    let cap = Capture::start();
    cap.fail_with_retry_after(429, 2);
    let r = start(cap);
    assert!(
        wait_until(WAIT, || r.cap.refused() >= 3),
        "three 429s\n{}",
        tail(&r.agent.log(), 30)
    );
    r.cap.fail_with(None);
    let log = r.cap.request_log();
    let refused: Vec<_> = log
        .iter()
        .filter(|(_, s)| *s == 429)
        .map(|(t, _)| *t)
        .collect();
    // min_backoff is 50 ms and max_backoff 500 ms: only Retry-After makes
    // the sender wait ~2 s between attempts (one shard: one sequence).
    for w in refused.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(1800),
            "retried {gap:?} after a 429 with Retry-After: 2"
        );
    }
    assert!(
        wait_until(WAIT, || delivered(&r.cap).contains(&1)),
        "the 429-refused data is delivered after all"
    );
}
