//! Fixture configs: every valid one loads, every invalid one fails with the
//! expected message at the expected line, and Prometheus 2.42's promtool
//! agrees on valid/invalid.
//!
//! Invalid fixtures start with `# expect: LINE: message substring`, and may
//! carry `# promtool: skip|differs REASON` when promtool cannot be
//! compared (a discovery missing from Debian's build, a deliberate
//! promshard limit).

use std::path::{Path, PathBuf};
use std::process::Command;

use promshard_promlib::config::{self, ConfigError};

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/configs")
        .join(kind)
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

struct Expect {
    line: usize,
    message: String,
    promtool: Option<String>,
}

fn expectation(path: &Path) -> Expect {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: no '# expect:' header", path.display()));
    let (line, message) = rest.split_once(':').unwrap();
    let promtool = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("# promtool: "))
        .map(str::to_string);
    Expect {
        line: line.trim().parse().unwrap(),
        message: message.trim().to_string(),
        promtool,
    }
}

#[test]
fn valid_fixtures_load() {
    let files = fixtures("valid");
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        if let Err(e) = config::load_file(&f) {
            panic!("{} should load: {e}", f.display());
        }
    }
}

#[test]
fn invalid_fixtures_fail_with_message_and_line() {
    let files = fixtures("invalid");
    assert!(files.len() >= 25, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for f in files {
        let exp = expectation(&f);
        let err = match config::load_file(&f) {
            Ok(_) => {
                failures.push(format!("{} should fail", f.display()));
                continue;
            }
            Err(e) => e,
        };
        let shown = err.to_string();
        if !matches!(err, ConfigError::At { .. }) {
            failures.push(format!("no position: {shown}"));
        } else if err.line() != Some(exp.line) {
            failures.push(format!("line {} expected: {shown}", exp.line));
        } else if !shown.contains(&exp.message) {
            failures.push(format!("message lacks {:?}: {shown}", exp.message));
        } else if !shown.starts_with(&format!("{}:{}:", f.display(), exp.line)) {
            failures.push(format!("not FILE:LINE:COL: {shown}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn promtool_accepts(path: &Path) -> Option<bool> {
    let out = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(path)
        .output()
        .ok()?;
    Some(out.status.success())
}

#[test]
fn promtool_agrees_on_every_fixture() {
    // Like the Prometheus differential tests, this never skips: without
    // promtool it would pass having compared nothing.
    assert!(
        promtool_accepts(&dir("valid").join("empty.yml")).is_some(),
        "promtool not found on PATH (install Prometheus 2.42, e.g. `apt-get install prometheus`); this test never skips"
    );
    let mut compared = 0;
    for f in fixtures("valid") {
        assert_eq!(
            promtool_accepts(&f),
            Some(true),
            "promtool rejects {}",
            f.display()
        );
        compared += 1;
    }
    for f in fixtures("invalid") {
        let exp = expectation(&f);
        match exp.promtool.as_deref() {
            Some(p) if p.starts_with("skip") => continue,
            Some(p) if p.starts_with("differs") => {
                // A deliberate promshard limit: Prometheus accepts it.
                assert_eq!(promtool_accepts(&f), Some(true), "{}", f.display());
                assert!(config::load_file(&f).is_err());
                continue;
            }
            _ => {}
        }
        assert_eq!(
            promtool_accepts(&f),
            Some(false),
            "promtool accepts {} which we reject",
            f.display()
        );
        compared += 1;
    }
    assert!(compared >= 30, "compared only {compared}");
}
