//! `promshard demo` (the README's first command) runs end to end: fleet,
//! coordinator, native shards (child processes) and sink on loopback, and
//! the sink sees no gap, duplicate or out-of-order sample.

use std::process::Command;

#[test]
fn demo_runs_and_the_sink_sees_no_gap_or_duplicate() {
    let out = Command::new(env!("CARGO_BIN_EXE_promshard"))
        .args([
            "demo",
            "--targets=5",
            "--series=20",
            "--interval=1s",
            "--duration=10s",
            "--shards=2",
            "--status.every=2s",
            "--web.listen-address=127.0.0.1:0",
            "--grpc.listen-address=127.0.0.1:0",
            "--fleet.base=127.0.11.1",
        ])
        .output()
        .expect("run promshard demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let done = stdout
        .lines()
        .find(|l| l.starts_with("done:"))
        .unwrap_or_else(|| panic!("no final line:\n{stdout}"));
    assert!(
        done.contains("gaps 0 duplicates 0 out-of-order 0"),
        "{done}"
    );
    // 5 targets x (20 fleet series + 5 synthetic) after a few scrapes.
    let series: u64 = done
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(series >= 100, "{done}");
}
