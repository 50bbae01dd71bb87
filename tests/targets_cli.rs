//! `promshard targets`: JSON on stdout, failed targets on stderr, exit codes.

use std::process::Command;

fn promshard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_promshard"))
}

#[test]
fn targets_prints_prometheus_json_and_reports_failed_targets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        r#"[{"targets":["a.invalid:1",""],"labels":{"g":"1"}}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"[{"targets":["b:1"],"labels":{"1x":"v"}}]"#,
    )
    .unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "scrape_configs:\n- job_name: files\n  file_sd_configs: [{files: ['t.json', 'bad.json']}]\n- job_name: dropped\n  static_configs: [{targets: ['d.invalid:1']}]\n  relabel_configs: [{action: drop, source_labels: [__address__]}]\n",
    )
    .unwrap();
    let out = promshard()
        .arg("targets")
        .arg(format!("--config.file={}", cfg.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "success");
    let active = v["data"]["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{v}");
    assert_eq!(active[0]["scrapePool"], "files");
    assert_eq!(active[0]["labels"]["g"], "1");
    assert_eq!(active[0]["health"], "unknown");
    let file = dir.path().join("t.json").to_string_lossy().into_owned();
    assert_eq!(
        active[0]["discoveredLabels"]["__meta_filepath"],
        file.as_str()
    );
    let dropped = v["data"]["droppedTargets"].as_array().unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["discoveredLabels"]["job"], "dropped");
    // The empty address is in neither list, and logged naming its group.
    assert!(
        stderr.contains(&format!("instance 1 in group {file}:0")) && stderr.contains("no address"),
        "{stderr}"
    );

    // An invalid sd file is reported naming the file, and skipped.
    let bad = dir.path().join("bad.json").to_string_lossy().into_owned();
    assert!(stderr.contains(&bad) && stderr.contains("1x"), "{stderr}");

    let one = promshard()
        .args(["targets", "--job", "dropped"])
        .arg(format!("--config.file={}", cfg.display()))
        .output()
        .unwrap();
    assert!(one.status.success());
    let v: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert!(v["data"]["activeTargets"].as_array().unwrap().is_empty());
    assert_eq!(v["data"]["droppedTargets"].as_array().unwrap().len(), 1);
}

#[test]
fn targets_exits_1_on_config_errors_and_unknown_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yml");
    std::fs::write(&cfg, "scrape_configs:\n- job_name: x\n  bogus_field: 1\n").unwrap();
    let out = promshard()
        .arg("targets")
        .arg(format!("--config.file={}", cfg.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml"), "{err}");
    assert!(out.stdout.is_empty());

    let good = dir.path().join("good.yml");
    std::fs::write(&good, "scrape_configs:\n- job_name: x\n").unwrap();
    let out = promshard()
        .args(["targets", "--job", "nope"])
        .arg(format!("--config.file={}", good.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
