//! Prometheus agent and the side under test, on the same config (only the
//! remote_write URL differs), scraping the same fixture server.

use std::time::Duration;

use super::agent::{Agent, Kind, Options};
use super::capture::{Capture, Samples};
use super::compare;
use super::fixture::Fixture;
use super::{now_ms, wait_until};

/// How long any single wait in a scenario may take.
pub const WAIT: Duration = Duration::from_secs(45);

/// A prometheus.yml: 1 s interval, a fast remote_write queue to `url`.
/// `{addr}` in `scrape_configs` becomes the fixture address, `{dir}` the
/// scenario's directory.
pub fn config(global_extra: &str, scrape_configs: &str, url: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{global_extra}\
scrape_configs:\n{scrape_configs}\
remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 200ms\n      \
min_backoff: 50ms\n      max_backoff: 500ms\n    metadata_config:\n      send: false\n"
    )
}

/// Fills `{addr}` and `{dir}`.
pub fn fill(template: &str, fixture: &Fixture, dir: &std::path::Path) -> String {
    template
        .replace("{addr}", &fixture.addr())
        .replace("{dir}", &dir.display().to_string())
}

/// Both agents, their receivers, the fixture and the scenario dir.
pub struct Pair {
    // Agents first: they are dropped (killed) before the servers.
    pub prom: Agent,
    pub ours: Agent,
    pub prom_cap: Capture,
    pub ours_cap: Capture,
    pub fixture: Fixture,
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// Starts both agents on `scrape_configs` (see [`config`]).
    pub fn start(fixture: Fixture, global_extra: &str, scrape_configs: &str) -> Pair {
        let dir = tempfile::tempdir().expect("temp dir");
        let sc = fill(scrape_configs, &fixture, dir.path());
        let prom_cap = Capture::start();
        let ours_cap = Capture::start();
        let prom = Agent::start(
            Kind::Prometheus,
            dir.path(),
            &config(global_extra, &sc, &prom_cap.url()),
        );
        let ours = Agent::start_with(
            Kind::ours(),
            &ours_dir(dir.path()),
            &config(global_extra, &sc, &ours_cap.url()),
            &Options::default(),
        );
        Pair {
            prom,
            ours,
            prom_cap,
            ours_cap,
            fixture,
            dir,
        }
    }

    /// Waits until both receivers hold at least `k` samples of every
    /// `up` series matching `matchers` with a timestamp after `since_ms`
    /// (a scrape that started after an event saw its effect) and at least
    /// one such series. Panics with both logs on timeout.
    pub fn wait_up(&self, matchers: &[(&str, &str)], k: usize, since_ms: i64) {
        for (who, cap, agent) in [
            ("prometheus", &self.prom_cap, &self.prom),
            ("ours", &self.ours_cap, &self.ours),
        ] {
            let ok = wait_until(WAIT, || up_count(cap, matchers, since_ms) >= k);
            assert!(
                ok,
                "{who}: fewer than {k} `up` samples {matchers:?} after {since_ms} within {WAIT:?} \
(have {}; rejected requests: {:?})\n--- log ---\n{}",
                up_count(cap, matchers, since_ms),
                cap.rejected(),
                tail(&agent.log(), 60)
            );
        }
    }

    /// Waits `k` scrapes of `up{matchers}` after now on both sides.
    pub fn settle(&self, matchers: &[(&str, &str)], k: usize) {
        self.wait_up(matchers, k, now_ms());
    }

    /// Snapshots of both receivers `(prometheus, ours)` after checking no
    /// request broke a sender rule.
    pub fn snapshots(&self) -> (Samples, Samples) {
        assert_eq!(
            self.prom_cap.rejected(),
            Vec::<String>::new(),
            "prometheus broke a rule"
        );
        assert_eq!(
            self.ours_cap.rejected(),
            Vec::<String>::new(),
            "ours broke a sender rule"
        );
        (self.prom_cap.snapshot(), self.ours_cap.snapshot())
    }

    /// Asserts both sides delivered the same series with the same
    /// signatures; returns the reference samples for scenario checks.
    pub fn assert_agree(&self) -> Samples {
        let (p, o) = self.snapshots();
        let d = compare::diff(&p, &o);
        assert!(
            d.is_empty(),
            "{} difference(s) between prometheus and {}:\n{}",
            d.len(),
            self.ours.kind.name(),
            d.join("\n")
        );
        p
    }
}

/// The directory of the side under test (its own config, storage, log).
fn ours_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.join("ours");
    std::fs::create_dir_all(&d).expect("create ours dir");
    d
}

/// The smallest count, over `up` series matching `matchers`, of samples
/// after `since_ms`; 0 when there is no such series.
pub fn up_count(cap: &Capture, matchers: &[(&str, &str)], since_ms: i64) -> usize {
    let mut m = vec![("__name__", "up")];
    m.extend_from_slice(matchers);
    let sel = cap.select(&m);
    sel.values()
        .map(|s| {
            s.iter()
                .filter(|(t, b)| *t > since_ms && *b != super::STALE_NAN_BITS)
                .count()
        })
        .min()
        .unwrap_or(0)
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
