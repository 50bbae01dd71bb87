//! Real remote-write senders scraping a fleet and writing to the sink:
//! `prometheus --enable-feature=agent` and `vmagent` (Debian packages).
//! Each run is bounded (at most 60 s) and kills the process it started.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promshard_loadtest::sink::Matcher;
use promshard_loadtest::{Fleet, FleetConfig, Sink, SinkConfig};

const JOB: &str = "fleet";
const TARGETS: usize = 5;
const SERIES: usize = 60;

/// Kills the sender when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The fleet series of one target as the sink saw them: label sets without
/// `job` and `instance`, the sender's own `up`/`scrape_*` series left out.
fn seen_series(sink: &Sink, instance: &str) -> Vec<(BTreeSet<(String, String)>, u64)> {
    let m = Matcher::parse(&format!(r#"{{job="{JOB}",instance="{instance}"}}"#)).unwrap();
    sink.series(&m, 100_000)
        .into_iter()
        .filter(|s| {
            let name = s.labels["__name__"].as_str();
            name != "up" && !name.starts_with("scrape_")
        })
        .map(|s| {
            let labels = s
                .labels
                .into_iter()
                .filter(|(k, _)| k != "job" && k != "instance")
                .collect();
            (labels, s.samples)
        })
        .collect()
}

fn expected_series(fleet: &Fleet, target: usize) -> BTreeSet<BTreeSet<(String, String)>> {
    fleet
        .expected_series(target, 0)
        .into_iter()
        .map(|s| {
            let mut labels: BTreeSet<(String, String)> = s.labels.into_iter().collect();
            labels.insert(("__name__".into(), s.name));
            labels
        })
        .collect()
}

/// Starts `sender`, waits until the sink has at least `min_samples` of every
/// fleet series (at most 45 s), stops the sender, and checks what arrived.
async fn check_sender(name: &str, start: impl FnOnce(&Path, &Fleet, &Sink) -> Child) {
    let fleet = Fleet::start(FleetConfig {
        targets: TARGETS,
        series_per_target: SERIES,
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    let sink = Sink::start(SinkConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = Killed(start(dir.path(), &fleet, &sink));

    let min_samples = 4;
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let done = fleet.targets().iter().all(|t| {
            let seen = seen_series(&sink, t);
            seen.len() == SERIES && seen.iter().all(|(_, n)| *n >= min_samples)
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the sink did not see {min_samples} samples of every fleet series within 45 s: {:?}",
            sink.summary()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(child);
    // Let a request the sender had in flight land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (i, t) in fleet.targets().iter().enumerate() {
        let seen = seen_series(&sink, t);
        let labels: BTreeSet<_> = seen.iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(labels, expected_series(&fleet, i), "{name}: target {t}");
        let scrapes = fleet.scrapes(i);
        for (l, n) in &seen {
            // Every scrape yields one sample; the last few may not
            // have been sent before the sender was stopped.
            assert!(
                *n <= scrapes && *n + 3 >= scrapes,
                "{name}: {l:?}: {n} samples for {scrapes} scrapes"
            );
        }
    }
    let s = sink.summary();
    assert_eq!(s.totals.duplicates, 0, "{name}: {s:?}");
    assert_eq!(s.totals.out_of_order, 0, "{name}: {s:?}");
    assert_eq!(s.totals.counter_decreases, 0, "{name}: {s:?}");
    assert!(s.rejected.is_empty(), "{name}: {s:?}");
    assert!(
        s.jobs[JOB].series >= (TARGETS * SERIES) as u64,
        "{name}: {s:?}"
    );
    eprintln!("{name}: {s:?}");
}

/// The real sender must be installed (.ci/run installs it): a missing
/// binary fails the test instead of skipping it silently.
/// The real senders are required, not optional: a missing one fails the test.
fn require_installed(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is not installed (apt-get install prometheus victoria-metrics)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_agent_remote_write_is_decoded() {
    require_installed("/usr/bin/prometheus");
    check_sender("prometheus agent", |dir, fleet, sink| {
        let mut yml = fleet.prometheus_yml(JOB, "1s");
        yml.push_str(&format!(
            "remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 100ms\n",
            sink.write_url()
        ));
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, yml).unwrap();
        Command::new("/usr/bin/prometheus")
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.agent.path={}", dir.join("agent").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmagent_remote_write_is_decoded() {
    require_installed("/usr/bin/vmagent");
    check_sender("vmagent", |dir, fleet, sink| {
        let config = dir.join("scrape.yml");
        std::fs::write(&config, fleet.prometheus_yml(JOB, "1s")).unwrap();
        Command::new("/usr/bin/vmagent")
            .arg(format!("-promscrape.config={}", config.display()))
            .arg(format!("-remoteWrite.url={}", sink.write_url()))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.join("vmagent").display()
            ))
            .arg("-remoteWrite.flushInterval=500ms")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
    .await;
}
