//! `promshard check config`: promtool-like output and exit codes.

use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("promlib/tests/testdata/configs")
        .join(rel)
}

#[test]
fn valid_files_succeed_with_job_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_promshard"))
        .args(["check", "config"])
        .arg(fixture("valid/full.yml"))
        .arg(fixture("valid/defaults.yml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Checking "), "{stdout}");
    assert!(stdout.contains("(11 scrape configs found)"), "{stdout}");
    assert!(stdout.contains("(4 scrape configs found)"), "{stdout}");
    assert!(out.stderr.is_empty());
}

#[test]
fn an_invalid_file_fails_but_the_next_is_still_checked() {
    let bad = fixture("invalid/duplicate_job.yml");
    let out = Command::new(env!("CARGO_BIN_EXE_promshard"))
        .args(["check", "config"])
        .arg(&bad)
        .arg(fixture("valid/anchors.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("(3 scrape configs found)"), "{stdout}");
    let expected = format!(
        "{}:7:5: found multiple scrape configs with job name \"node\"",
        bad.display()
    );
    assert_eq!(stderr.trim(), expected);
}
