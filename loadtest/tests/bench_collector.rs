//! `bench-collector` end to end on a tiny fleet: vmagent and the Prometheus
//! agent are measured for real; promshard is given a binary that exits at
//! once (or none), which must be reported, not crash the run.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use promshard_loadtest::bench::{self, BenchConfig, Binaries, ContenderKind, Outcome};

fn tiny(contenders: Vec<ContenderKind>, binaries: Binaries) -> BenchConfig {
    BenchConfig {
        targets: 5,
        series_per_target: 20,
        zipf_exponent: 0.0,
        churn_fraction: 0.0,
        churn_every: 10,
        fleet_base: SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, 1), 0),
        fleet_threads: 1,
        interval: Duration::from_secs(2),
        warmup: Duration::from_secs(5),
        duration: Duration::from_secs(6),
        drain: Duration::from_secs(10),
        // Prometheus must accept the queue_config the bench writes.
        max_samples_per_send: 10_000,
        contenders,
        binaries,
    }
}

/// The real senders must be installed (.ci/run installs them).
fn installed(binary: &str) -> PathBuf {
    let path = PathBuf::from(binary);
    assert!(
        path.is_file(),
        "{binary} is not installed (apt-get install prometheus victoria-metrics)"
    );
    path
}

#[test]
fn tiny_run_measures_vmagent_and_prometheus_and_reports_a_failing_promshard() {
    let binaries = Binaries {
        promshard: PathBuf::from("/bin/false"),
        vmagent: installed("/usr/bin/vmagent"),
        prometheus: installed("/usr/bin/prometheus"),
    };
    let started = Instant::now();
    let report = bench::run(&tiny(ContenderKind::ALL.to_vec(), binaries)).unwrap();
    let table = report.to_table();
    eprintln!("{table}");
    // 3 contenders; promshard fails at once, each other one takes at most
    // warm-up + window + drain (21 s) plus start and stop.
    assert!(
        started.elapsed() < Duration::from_secs(70),
        "took {:?}",
        started.elapsed()
    );

    assert_eq!(report.workload.series_total, 100);
    let promshard = &report.contenders[0];
    assert_eq!(promshard.contender, ContenderKind::Promshard);
    match &promshard.outcome {
        Outcome::Failed(why) => assert!(why.contains("exited early"), "{why}"),
        other => panic!("a promshard that exits must be Failed, not {other:?}"),
    }
    assert!(promshard.measured.is_none());

    for c in &report.contenders[1..] {
        let name = c.contender.name();
        assert_eq!(c.outcome, Outcome::Ran, "{name}: {table}");
        let m = c.measured.as_ref().unwrap();
        // 100 series x 3 intervals of the 6 s window.
        assert_eq!(m.expected_samples, 300, "{name}");
        // An idle vmagent may use less than one clock tick in 6 s on a fast
        // machine; CPU accounting itself is tested in procfs.
        assert!(m.cpu_seconds >= 0.0, "{name}: {m:?}");
        assert!(m.peak_rss_bytes > 1 << 20, "{name}: {m:?}");
        assert!(m.max_sampled_rss_bytes > 0, "{name}: {m:?}");
        assert!(
            m.peak_rss_bytes >= m.max_sampled_rss_bytes,
            "{name}: the high-water mark is below a sampled RSS: {m:?}"
        );
        // A scrape's timestamp near an edge of the window may fall on
        // either side (more so on a busy machine): one target's scrape
        // (20 samples) more or less at each edge.
        assert!(
            m.delivered_samples.abs_diff(m.expected_samples) <= 2 * 20,
            "{name}: delivered {} of {}: {table}",
            m.delivered_samples,
            m.expected_samples
        );
        assert!(m.cpu_seconds_per_million_samples.is_finite());
        assert!(m.cpu_seconds_per_million_samples >= 0.0);
        assert!(m.received_during_window > 0, "{name}: {m:?}");
        assert!(m.scrapes_served >= 10, "{name}: {m:?}");
        // The fleet's CPU for 15 tiny scrapes is below one clock tick;
        // its measurement is tested in procfs.
        assert!(m.fleet_cpu_seconds >= 0.0, "{name}: {m:?}");
        assert_eq!((m.duplicates, m.out_of_order), (0, 0), "{name}: {m:?}");
        assert_eq!(m.rejected_requests, 0, "{name}: {m:?}");
        assert!(c.command.contains("127.0.0.1:"), "{}", c.command);
    }
    assert_eq!(report.ratios.len(), 2);
    assert!(
        report
            .ratios
            .iter()
            .all(|r| r.cpu_per_million_samples.is_none())
    );
    assert!(table.contains("promshard   FAILED"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["contenders"][1]["outcome"]["status"], "ran");
}

#[test]
fn missing_binaries_are_skipped_without_running() {
    let binaries = Binaries {
        promshard: PathBuf::from("/nonexistent/promshard"),
        vmagent: PathBuf::from("/nonexistent/vmagent"),
        prometheus: PathBuf::from("/nonexistent/prometheus"),
    };
    let started = Instant::now();
    let report = bench::run(&tiny(ContenderKind::ALL.to_vec(), binaries)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    for c in &report.contenders {
        match &c.outcome {
            Outcome::Skipped(why) => assert!(why.contains("/nonexistent/"), "{why}"),
            other => panic!("{:?}: {other:?}", c.contender),
        }
    }
    assert!(report.to_table().contains("vmagent     skipped"));
}

#[test]
fn a_window_that_is_not_whole_intervals_is_refused() {
    let mut config = tiny(
        vec![],
        Binaries::with_promshard(PathBuf::from("/bin/false")),
    );
    config.duration = Duration::from_secs(5);
    let err = bench::run(&config).unwrap_err();
    assert!(
        err.to_string().contains("whole number of intervals"),
        "{err}"
    );
}
