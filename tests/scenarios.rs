//! The short versions of `promshard loadtest scenario NAME` through the
//! binary, one at a time (a whole system per scenario: 2 cores cannot run
//! two side by side), each verdict asserted claim by claim along with the
//! figures that decide it.
//!
//! `cargo test --test scenarios` (about 6-8 minutes in a debug build);
//! one scenario: `cargo test --test scenarios -- shard_kill`.

use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

/// One system at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `promshard loadtest scenario NAME --short --json` and returns its
/// report, after asserting that every claim passed.
fn run(name: &str) -> Value {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_promshard"))
        .args(["loadtest", "scenario", name, "--short", "--json"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run promshard loadtest scenario");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("scenario {name}: no JSON report ({e}); status {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status)
    });
    eprintln!(
        "scenario {name}: {}",
        serde_json::to_string(&report["delivery"]).unwrap_or_default()
    );
    let claims = report["claims"].as_array().cloned().unwrap_or_default();
    assert!(!claims.is_empty(), "scenario {name}: no claims\n{report:#}");
    let failed: Vec<&Value> = claims.iter().filter(|c| c["pass"] != true).collect();
    assert!(
        failed.is_empty(),
        "scenario {name}: claims failed: {failed:#?}\nreport:\n{report:#}\nstderr:\n{stderr}"
    );
    assert_eq!(report["pass"], true, "scenario {name}: verdict");
    assert!(out.status.success(), "scenario {name}: exit {}", out.status);
    let d = &report["delivery"];
    assert!(
        d["samples_expected"].as_u64().unwrap_or(0) > 1000,
        "scenario {name}: too few samples expected: {d}"
    );
    report
}

fn figure(report: &Value, key: &str) -> u64 {
    report["delivery"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("delivery.{key} in {report:#}"))
}

/// Claims of the scenarios that must lose nothing.
fn assert_lossless(name: &str, report: &Value) {
    assert_eq!(figure(report, "gaps"), 0, "{name}: gaps");
    assert_eq!(figure(report, "duplicates"), 0, "{name}: duplicates");
    assert_eq!(
        figure(report, "stale_markers_present_targets"),
        0,
        "{name}: staleness markers of live targets"
    );
    assert_eq!(
        figure(report, "samples_received"),
        figure(report, "samples_expected"),
        "{name}: every expected sample"
    );
}

#[test]
fn steady() {
    let r = run("steady");
    assert_lossless("steady", &r);
    assert_eq!(
        r["moves"]["targets_moved"], 0,
        "nothing moves when nothing happens"
    );
}

#[test]
fn coordinator_kill() {
    let r = run("coordinator-kill");
    assert_lossless("coordinator-kill", &r);
    assert_eq!(r["figures"]["moves_after_restart"].as_f64(), Some(0.0));
    assert_eq!(r["moves"]["targets_moved"], 0);
}

#[test]
fn shard_kill() {
    let r = run("shard-kill");
    let longest = r["figures"]["victim_longest_gap_ms"]
        .as_u64()
        .expect("figure");
    let bound = r["figures"]["gap_bound_ms"].as_u64().expect("figure");
    assert!(longest > 0, "a SIGKILLed shard's targets miss some slots");
    assert!(longest <= bound, "gap {longest} ms over {bound} ms");
    assert_eq!(r["figures"]["victim_missing_before_kill"], 0);
    assert_eq!(r["figures"]["other_targets_gaps"], 0);
}

#[test]
fn storage_outage() {
    let r = run("storage-outage");
    assert_eq!(figure(&r, "samples_missing"), 0, "samples lost");
    assert!(
        r["figures"]["requests_refused"].as_u64().unwrap_or(0) > 0,
        "the sink refused nothing: no outage happened"
    );
}

#[test]
fn churn() {
    let r = run("churn");
    assert_lossless("churn", &r);
    assert!(
        figure(&r, "stale_markers_departed_targets") > 0,
        "targets that left discovery get staleness markers"
    );
    assert_eq!(r["figures"]["joined_unscraped"], 0);
}

#[test]
fn heavy_target() {
    let r = run("heavy-target");
    assert_lossless("heavy-target", &r);
    assert_eq!(r["figures"]["heavy_target"]["state"], "oversized");
    assert!(r["moves"]["targets_moved"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn scale_out() {
    let r = run("scale-out");
    assert_lossless("scale-out", &r);
    assert!(
        r["moves"]["targets_moved"].as_u64().unwrap_or(0) > 0,
        "the new shard took targets"
    );
}

#[test]
fn scale_in() {
    let r = run("scale-in");
    assert_lossless("scale-in", &r);
    assert!(
        r["moves"]["targets_moved"].as_u64().unwrap_or(0) > 0,
        "the drained shard's targets moved"
    );
}
