//! Reload of `promshard collector` end to end: `POST /-/reload` and SIGHUP
//! apply a changed config without a gap in the series that did not change,
//! an invalid config is refused with the reason (500) and the running one
//! keeps scraping, a removed job's series get staleness markers, and
//! `/api/v1/targets` follows.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::agent::{Agent, Kind};
use common::capture::Capture;
use common::fixture::{Fixture, Route};
use common::pair::{WAIT, config, fill, up_count};
use common::{STALE_NAN_BITS, now_ms, wait_until};

/// `POST path` on 127.0.0.1:port; (status, body).
fn post(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

const JOB_A: &str = "  - job_name: a\n    static_configs: [{targets: ['{addr}'], labels: {__metrics_path__: /a}}]\n";
const JOB_A_DROP_OTHER: &str = "  - job_name: a\n    static_configs: [{targets: ['{addr}'], labels: {__metrics_path__: /a}}]\n    metric_relabel_configs: [{source_labels: [__name__], regex: other, action: drop}]\n";
const JOB_B: &str = "  - job_name: b\n    static_configs: [{targets: ['{addr}'], labels: {__metrics_path__: /b}}]\n";

#[test]
fn reload_applies_changes_without_a_gap_refuses_invalid_config_and_stales_removed_jobs() {
    // Always promshard, also in the harness self-check mode: slot
    // timestamps and the reload answer are promshard behaviour.
    let fx = Fixture::start();
    fx.set("/a", Route::text("m{k=\"x\"} {seq}\nother 1\n").with_seq());
    fx.set("/b", Route::text("bm 7\n"));
    let cap = Capture::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = |jobs: &str| config("", &fill(jobs, &fx, dir.path()), &cap.url());
    let agent = Agent::start(Kind::Promshard, dir.path(), &cfg(JOB_A));
    let cfg_file = dir.path().join("promshard.yml");
    assert!(
        wait_until(WAIT, || up_count(&cap, &[("job", "a")], 0) >= 3),
        "job a scraped"
    );

    // 1. POST /-/reload: job a gets a metric_relabel rule, job b is added.
    std::fs::write(&cfg_file, cfg(&format!("{JOB_A_DROP_OTHER}{JOB_B}"))).expect("write");
    let (status, body) = post(agent.port(), "/-/reload");
    assert_eq!(status, 200, "reload: {body}");
    let t1 = now_ms();
    assert!(
        wait_until(WAIT, || up_count(&cap, &[("job", "b")], 0) >= 3
            && up_count(&cap, &[("job", "a")], t1) >= 3),
        "job b scraped after the reload"
    );
    let other = cap.select(&[("__name__", "other")]);
    let other = other.values().next().expect("other was delivered");
    assert_eq!(
        other.last().map(|(_, b)| *b),
        Some(STALE_NAN_BITS),
        "`other`, now dropped by metric relabeling, ends with a staleness marker: {other:?}"
    );

    // 2. An invalid config is refused with the reason; scraping goes on.
    std::fs::write(
        &cfg_file,
        "scrape_configs:\n  - job_name: a\n    scrape_interval: banana\n",
    )
    .expect("write");
    let (status, body) = post(agent.port(), "/-/reload");
    assert_eq!(status, 500, "invalid config: {body}");
    assert!(
        body.contains("promshard.yml"),
        "the error names the file: {body}"
    );
    let t2 = now_ms();
    assert!(
        wait_until(WAIT, || up_count(&cap, &[("job", "b")], t2) >= 2),
        "the old config keeps scraping after a refused reload"
    );

    // 3. SIGHUP with job b removed: its series end with staleness markers.
    std::fs::write(&cfg_file, cfg(JOB_A_DROP_OTHER)).expect("write");
    agent.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || {
            let b = cap.select(&[("job", "b")]);
            !b.is_empty()
                && b.values()
                    .all(|s| s.last().map(|(_, v)| *v) == Some(STALE_NAN_BITS))
        }),
        "job b's series (bm and the synthetic ones) end stale after SIGHUP"
    );
    let (code, targets) = agent.get("/api/v1/targets").expect("targets API");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&targets).expect("JSON");
    let active = v["data"]["activeTargets"]
        .as_array()
        .expect("activeTargets");
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["labels"]["job"], "a");
    assert_eq!(active[0]["health"], "up");
    assert_eq!(
        active[0]["series"], 1,
        "m only; `other` is dropped: {targets}"
    );

    // 4. Across all of it, job a's series `m` never missed a slot: the
    // loop was kept, so its samples are one interval apart. (Steps 1-3 can
    // take less than 9 s on a fast run: wait for enough samples to judge.)
    assert!(
        wait_until(WAIT, || {
            cap.select(&[("__name__", "m")])
                .values()
                .next()
                .is_some_and(|s| s.len() >= 10)
        }),
        "m keeps being delivered after the reloads"
    );
    let m = cap.select(&[("__name__", "m")]);
    let m = m.values().next().expect("m delivered");
    let mut ts: Vec<i64> = m.iter().map(|(t, _)| *t).collect();
    ts.sort();
    ts.dedup();
    let steps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(ts.len() >= 9, "enough samples: {ts:?}");
    // A scrape that starts more than the slot tolerance late (a loaded
    // test host) carries its real start time, so allow jitter, not a gap.
    assert!(
        steps.iter().all(|s| (500..1500).contains(s)),
        "m is scraped on every 1 s slot across reloads: steps {steps:?}"
    );
    drop(agent);
}
