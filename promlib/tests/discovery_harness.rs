//! The real-Prometheus harness itself: starts, answers, lists pools.

mod common;

use std::time::Duration;

#[test]
fn harness_starts_prometheus_and_lists_pools() {
    let prom = common::Prometheus::start(
        "scrape_configs:\n- job_name: harness_a\n  static_configs: [{targets: ['127.0.0.1:1']}]\n- job_name: harness_b\n  static_configs: [{targets: ['127.0.0.1:2']}]\n  relabel_configs: [{action: drop, source_labels: [__address__], regex: '.*'}]\n",
    );
    let missing = prom.wait_for_pools(&["harness_a", "harness_b"], Duration::from_secs(30));
    assert!(
        missing.is_empty(),
        "missing pools {missing:?}\n{}",
        prom.log()
    );
    let a = prom.targets(Some("harness_a"));
    assert_eq!(a.active_targets.len(), 1);
    assert_eq!(a.active_targets[0].scrape_url, "http://127.0.0.1:1/metrics");
    let b = prom.targets(Some("harness_b"));
    assert!(b.active_targets.is_empty());
    assert_eq!(b.dropped_targets.len(), 1);
    let v = prom.get_json("/api/v1/status/flags");
    assert_eq!(v["data"]["web.enable-remote-write-receiver"], "true");
}
