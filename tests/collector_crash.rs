//! Crash safety: with the receiver down, the collector scrapes for a while
//! and is killed with SIGKILL; it restarts on the same `--storage.path`,
//! the receiver comes back, and every sample scraped before the kill
//! arrives — checked at the receiver per series per timestamp.
//!
//! The fixture body is `seq N` with N the number of the request, so the
//! fixture knows exactly which scrapes were served before the kill.
//! (Prometheus agent does not pass this test: after a restart its remote
//! write skips WAL samples older than its start.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::agent::{Agent, Kind};
use common::capture::{Capture, Samples, select};
use common::fixture::{Fixture, Route};
use common::pair::{WAIT, config, fill, tail};
use common::{STALE_NAN_BITS, wait_until};

/// How the receiver is down before the kill.
#[derive(Clone, Copy)]
enum Down {
    /// Answers 500 to every write.
    Answers500,
    /// Nothing listens on its port (connection refused).
    NotStarted,
}

/// Waits until a scrape was served and then ~400 ms passed with no new one
/// (so the last body is surely appended), at least `min` served in all;
/// returns the number served.
fn quiet_after_scrape(fx: &Fixture, path: &str, min: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no quiet moment after {min} scrapes"
        );
        let k = fx.hits(path);
        if k >= min {
            std::thread::sleep(Duration::from_millis(400));
            if fx.hits(path) == k {
                return k;
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `seq` value -> timestamps, and the timestamps of every series by name.
fn by_ts(
    p: &Samples,
) -> (
    BTreeMap<u64, BTreeSet<i64>>,
    BTreeMap<String, BTreeSet<i64>>,
) {
    let mut seq = BTreeMap::<u64, BTreeSet<i64>>::new();
    let mut names = BTreeMap::<String, BTreeSet<i64>>::new();
    for (l, s) in p {
        let name = common::capture::label(l, "__name__")
            .unwrap_or("")
            .to_string();
        for &(t, b) in s {
            if b == STALE_NAN_BITS {
                continue;
            }
            if name == "seq" {
                seq.entry(f64::from_bits(b) as u64).or_default().insert(t);
            }
            names.entry(name.clone()).or_default().insert(t);
        }
    }
    (seq, names)
}

fn crash_and_recover(down: Down) {
    let fx = Fixture::start();
    fx.set("/seq", Route::text("seq {seq}\nconst 1\n").with_seq());
    let dir = tempfile::tempdir().unwrap();
    let recv_addr: SocketAddr = format!("127.0.0.1:{}", common::prom::free_port())
        .parse()
        .unwrap();
    let mut cap = match down {
        Down::Answers500 => {
            let c = Capture::start_on(recv_addr);
            c.fail_with(Some(500));
            Some(c)
        }
        Down::NotStarted => None,
    };
    let url = format!("http://{recv_addr}/api/v1/write");
    let sc = fill(
        "  - job_name: crash\n    metrics_path: /seq\n    static_configs: [{targets: ['{addr}']}]\n",
        &fx,
        dir.path(),
    );
    let cfg = config("", &sc, &url);
    let kind = Kind::ours();
    let agent = Agent::start(kind, dir.path(), &cfg);
    let served = quiet_after_scrape(&fx, "/seq", 5);
    let log_before = agent.log();
    agent.kill();
    if let Some(c) = &cap {
        assert!(
            c.refused() > 0,
            "the sender tried while the receiver failed"
        );
        assert!(c.snapshot().is_empty());
    }
    // Restart on the same storage, then bring the receiver up.
    let agent = Agent::start(kind, dir.path(), &cfg);
    match &cap {
        Some(c) => c.fail_with(None),
        None => cap = Some(Capture::start_on(recv_addr)),
    }
    let cap = cap.unwrap();
    let want: BTreeSet<u64> = (1..=served).collect();
    let ok = wait_until(WAIT, || {
        let (seq, _) = by_ts(&cap.snapshot());
        want.iter().all(|n| seq.contains_key(n))
    });
    let p = cap.snapshot();
    let (seq, names) = by_ts(&p);
    let missing: Vec<u64> = want
        .iter()
        .filter(|n| !seq.contains_key(n))
        .copied()
        .collect();
    assert!(
        ok,
        "scrapes 1..={served} served before SIGKILL; not delivered: {missing:?}\n\
--- log before kill ---\n{}\n--- log after restart ---\n{}",
        tail(&log_before, 30),
        tail(&agent.log(), 30)
    );
    assert_eq!(cap.rejected(), Vec::<String>::new());
    // Per series per timestamp: every scrape before the kill delivered all
    // its series (body and synthetic) at the scrape's timestamp, once.
    for n in &want {
        let ts = &seq[n];
        assert_eq!(ts.len(), 1, "seq {n} at one timestamp: {ts:?}");
        let t = ts.first().unwrap();
        for name in [
            "const",
            "up",
            "scrape_duration_seconds",
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
            "scrape_series_added",
        ] {
            assert!(
                names.get(name).is_some_and(|s| s.contains(t)),
                "{name} has no sample at {t}, the timestamp of scrape {n}"
            );
        }
    }
    let up = select(&p, &[("__name__", "up")]);
    assert!(
        up.values()
            .flatten()
            .all(|(_, b)| f64::from_bits(*b) == 1.0 || *b == STALE_NAN_BITS),
        "up: {up:?}"
    );
    drop(agent);
}

#[test]
fn sigkill_with_receiver_answering_500_loses_nothing_scraped() {
    crash_and_recover(Down::Answers500);
}

#[test]
fn sigkill_with_receiver_not_started_loses_nothing_scraped() {
    crash_and_recover(Down::NotStarted);
}
