//! The fleet over real loopback HTTP: valid bodies, growing counters, size
//! skew, churn, and the broken behaviours.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use promshard_loadtest::{Behaviour, Fleet, FleetConfig};

async fn scrape(addr: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// `series identity -> value` of every sample line.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn promtool_check(body: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn config(targets: usize, series: usize) -> FleetConfig {
    FleetConfig {
        targets,
        series_per_target: series,
        ..FleetConfig::default()
    }
}

#[tokio::test]
async fn bodies_parse_with_promtool_and_have_the_expected_series() {
    let fleet = Fleet::start(FleetConfig {
        zipf_exponent: 1.0,
        churn_fraction: 0.1,
        ..config(4, 300)
    })
    .await
    .unwrap();
    for (i, info) in fleet.target_infos().iter().enumerate() {
        let (status, body) = scrape(&info.address).await;
        assert_eq!(status, 200);
        let (rc, out) = promtool_check(&body);
        // 0 = clean; 3 = lint remarks only (node_exporter's own camelCase
        // memory names draw them); 1 = a parse error.
        assert!(rc == 0 || rc == 3, "target {i}: promtool rc {rc}: {out}");
        assert!(!out.contains("error"), "target {i}: {out}");
        assert_eq!(samples(&body).len(), info.series, "target {i}");
        assert_eq!(fleet.expected_series(i, 0).len(), info.series);
    }
    assert_eq!(fleet.expected_series_total(), 4 * 300);
}

#[tokio::test]
async fn targets_have_distinct_loopback_addresses() {
    let fleet = Fleet::start(config(300, 5)).await.unwrap();
    let targets = fleet.targets();
    let hosts: std::collections::HashSet<_> = targets
        .iter()
        .map(|t| t.rsplit_once(':').unwrap().0.to_owned())
        .collect();
    assert_eq!(hosts.len(), 300);
    assert!(targets.iter().all(|t| t.starts_with("127.")));
    let (status, _) = scrape(&targets[299]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn counters_grow_and_gauges_change_between_scrapes() {
    let fleet = Fleet::start(config(1, 500)).await.unwrap();
    let addr = &fleet.targets()[0];
    let first = samples(&scrape(addr).await.1);
    let second = samples(&scrape(addr).await.1);
    assert_eq!(first.len(), 500);
    let kinds: HashMap<String, bool> = fleet
        .expected_series(0, 0)
        .into_iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let id = if labels.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, labels.join(","))
            };
            (id, s.kind.counter_like())
        })
        .collect();
    assert_eq!(kinds.len(), 500);
    let counters = kinds.values().filter(|c| **c).count();
    assert!(
        counters > 100 && counters < 500,
        "{counters} counter-like series"
    );
    for (id, counter_like) in &kinds {
        let (a, b) = (first[id], second[id]);
        if *counter_like {
            assert!(b > a, "{id}: counter {a} -> {b}");
        } else {
            assert_ne!(a, b, "{id}: gauge did not change");
        }
    }
    assert_eq!(fleet.scrapes(0), 2);
}

#[tokio::test]
async fn zipf_sizes_sum_to_the_expected_total() {
    let fleet = Fleet::start(FleetConfig {
        zipf_exponent: 1.2,
        ..config(50, 40)
    })
    .await
    .unwrap();
    let sizes: Vec<usize> = fleet.target_infos().iter().map(|t| t.series).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 50 * 40);
    assert!(
        sizes[0] > 10 * sizes[49],
        "skewed: {} vs {}",
        sizes[0],
        sizes[49]
    );
    let mut served = 0;
    for t in fleet.targets() {
        served += samples(&scrape(&t).await.1).len();
    }
    assert_eq!(served, 2000);
}

#[tokio::test]
async fn churn_replaces_series_every_k_scrapes() {
    let fleet = Fleet::start(FleetConfig {
        churn_fraction: 0.2,
        churn_every: 2,
        ..config(1, 100)
    })
    .await
    .unwrap();
    let addr = &fleet.targets()[0];
    let names = |body: String| -> std::collections::BTreeSet<String> {
        samples(&body).into_keys().collect()
    };
    let s0 = names(scrape(addr).await.1);
    let s1 = names(scrape(addr).await.1);
    let s2 = names(scrape(addr).await.1);
    assert_eq!(s0, s1, "same churn generation");
    assert_eq!(s2.len(), 100);
    let replaced = s0.difference(&s2).count();
    assert_eq!(replaced, 20, "20% of the series replaced");
    assert!(s2.iter().any(|s| s.contains("session=\"g1-")));
    let expected: std::collections::BTreeSet<_> = fleet
        .expected_series(0, 1)
        .into_iter()
        .filter(|s| s.labels.iter().any(|(k, _)| k == "session"))
        .map(|s| s.labels[0].1.clone())
        .collect();
    assert_eq!(expected.len(), 20);
    assert!(expected.iter().all(|v| v.starts_with("g1-")));
}

#[tokio::test]
async fn slow_and_broken_targets_misbehave_as_configured() {
    let fleet = Fleet::start(FleetConfig {
        slow_targets: 1,
        slow_delay: Duration::from_millis(600),
        error_targets: 1,
        malformed_targets: 1,
        hanging_targets: 1,
        ..config(5, 20)
    })
    .await
    .unwrap();
    let infos = fleet.target_infos().to_vec();
    assert_eq!(infos[0].behaviour, Behaviour::Healthy);
    assert_eq!(infos[1].behaviour, Behaviour::Slow { delay_ms: 600 });
    assert_eq!(infos[2].behaviour, Behaviour::ServerError);
    assert_eq!(infos[3].behaviour, Behaviour::Malformed);
    assert_eq!(infos[4].behaviour, Behaviour::Hang);
    assert_eq!(fleet.expected_series_total(), 40);

    let started = Instant::now();
    let (status, body) = scrape(&infos[1].address).await;
    assert_eq!(status, 200);
    assert_eq!(samples(&body).len(), 20);
    assert!(started.elapsed() >= Duration::from_millis(600));

    assert_eq!(scrape(&infos[2].address).await.0, 500);
    let (status, body) = scrape(&infos[3].address).await;
    assert_eq!(status, 200);
    assert_eq!(promtool_check(&body).0, 1, "malformed body fails to parse");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let hung = client
        .get(format!("http://{}/metrics", infos[4].address))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
}

#[tokio::test]
async fn a_grown_target_keeps_its_old_series_and_adds_new_ones() {
    let mut fleet = Fleet::start(config(2, 100)).await.unwrap();
    let addr = fleet.targets()[0].clone();
    let (_, before) = scrape(&addr).await;
    let before: std::collections::HashSet<String> = samples(&before).into_keys().collect();
    fleet.set_series(0, 2600).unwrap();
    assert_eq!(fleet.target_infos()[0].series, 2600);
    assert_eq!(fleet.expected_series_total(), 2700);
    let (_, after) = scrape(&addr).await;
    let after: std::collections::HashSet<String> = samples(&after).into_keys().collect();
    assert_eq!(after.len(), 2600);
    // A series that vanished would get a staleness marker from its
    // scraper although its target is still there.
    let lost: Vec<&String> = before.difference(&after).collect();
    assert!(lost.is_empty(), "series gone after growing: {lost:?}");
    assert!(fleet.set_series(5, 10).is_err(), "no target 5");
}
