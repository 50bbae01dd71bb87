//! `promshard check metrics`: OpenMetrics bodies are validated strictly;
//! text-format bodies keep promtool's exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `check metrics` with `args` on `body`; returns exit code and stdout.
fn check(args: &[&str], body: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_promshard"))
        .args(["check", "metrics"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn openmetrics_rule_break_is_an_error() {
    // A histogram without a +Inf bucket: Prometheus 2.42 ingests it, but it
    // is not valid OpenMetrics 1.0.
    let body = "# HELP a help\n# TYPE a histogram\na_bucket{le=\"1\"} 0\n# EOF\n";
    let (code, out) = check(&["--format", "openmetrics"], body);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 3: invalid OpenMetrics 1.0: a: histogram without a +Inf bucket"),
        "{out}"
    );
}

#[test]
fn valid_openmetrics_is_clean() {
    let body =
        "# HELP a help\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_count 1\na_sum 2\n# EOF\n";
    let (code, out) = check(&["--format", "openmetrics"], body);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn text_format_advice_is_still_a_warning() {
    // Non-contiguous samples and a negative counter are advice in text.
    let body = "# HELP a_total help\n# TYPE a_total counter\na_total -1\n";
    let (code, out) = check(&["--format", "text"], body);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("warning:"), "{out}");
}
