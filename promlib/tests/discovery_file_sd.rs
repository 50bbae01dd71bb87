//! Discovery: static and file_sd groups, one-shot and continuous (file
//! watching), with temp dirs. Every wait is bounded.

use std::time::Duration;

use promshard_promlib::config;
use promshard_promlib::discovery::{
    self, Discoverer, DiscoveryError, FILEPATH_LABEL, FileSd, TargetSets, Update,
};
use tokio::sync::mpsc;

fn load(yaml: &str, dir: &std::path::Path) -> config::Config {
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, yaml).unwrap();
    config::load_file(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn addrs(groups: &[discovery::TargetGroup]) -> Vec<String> {
    let mut v: Vec<String> = groups
        .iter()
        .flat_map(|g| {
            g.targets
                .iter()
                .map(|t| t.get("__address__").unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn discover_once_static_and_files_with_sources_and_filepath() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sd")).unwrap();
    std::fs::write(
        d.join("sd/a.json"),
        r#"[{"targets":["a:1"],"labels":{"x":"1"}},{"targets":["b:2"]}]"#,
    )
    .unwrap();
    std::fs::write(d.join("sd/c.yml"), "- targets: ['c:3']\n").unwrap();
    std::fs::write(d.join("sd/ignored.txt"), "junk").unwrap();
    let cfg = load(
        "scrape_configs:\n- job_name: j\n  static_configs: [{targets: ['s:1']}, {targets: ['s:2'], labels: {g: v}}]\n  file_sd_configs: [{files: ['sd/*.json', 'sd/*.yml']}]\n- job_name: empty\n",
        d,
    );
    let all = discovery::discover_once(&cfg).unwrap();
    let j = &all["j"];
    assert_eq!(addrs(j), ["a:1", "b:2", "c:3", "s:1", "s:2"]);
    assert_eq!(j[0].source, "0");
    assert_eq!(j[1].source, "1");
    assert_eq!(j[1].labels.get("g"), Some("v"));
    let a = d.join("sd/a.json").to_string_lossy().into_owned();
    let fa: Vec<_> = j.iter().filter(|g| g.source.starts_with(&a)).collect();
    assert_eq!(fa.len(), 2);
    assert_eq!(fa[0].source, format!("{a}:0"));
    assert_eq!(fa[1].source, format!("{a}:1"));
    assert!(
        fa.iter()
            .all(|g| g.labels.get(FILEPATH_LABEL) == Some(a.as_str()))
    );
    assert_eq!(fa[0].labels.get("x"), Some("1"));
    assert!(all["empty"].is_empty());
}

#[test]
fn discover_once_rejects_glob_outside_last_element_naming_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = load(
        "scrape_configs:\n- job_name: j\n  file_sd_configs: [{files: ['x.json']}]\n",
        dir.path(),
    );
    cfg.scrape_configs[0].file_sd_configs[0].files = vec!["*/x.json".into()];
    let e = discovery::discover_once(&cfg).unwrap_err();
    assert!(matches!(e, DiscoveryError::InvalidFilePath { .. }), "{e}");
    assert!(
        e.to_string().contains("\"j\"") && e.to_string().contains("*/x.json"),
        "{e}"
    );
}

#[test]
fn invalid_file_keeps_previous_groups_and_shrinking_file_empties_tail() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    let fs = f.to_string_lossy().into_owned();
    std::fs::write(&f, r#"[{"targets":["a:1"]},{"targets":["b:1"]}]"#).unwrap();
    let mut sd = FileSd::new(vec![fs.clone()]);
    let (changed, errors) = sd.refresh();
    assert_eq!(changed.len(), 2);
    assert!(errors.is_empty());

    // Invalid: error names the file, groups kept, nothing changed.
    std::fs::write(&f, r#"[{"targets":["a:1"],"labels":{"bad-name":"x"}}]"#).unwrap();
    let (changed, errors) = sd.refresh();
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains(&fs), "{}", errors[0]);
    assert_eq!(addrs(&sd.groups()), ["a:1", "b:1"]);

    // Shrink: the vanished second source comes as an empty group.
    std::fs::write(&f, r#"[{"targets":["a:1"]}]"#).unwrap();
    let (changed, _) = sd.refresh();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].source, format!("{fs}:1"));
    assert!(changed[0].targets.is_empty());

    // Gone: every source emptied.
    std::fs::remove_file(&f).unwrap();
    let (changed, _) = sd.refresh();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].source, format!("{fs}:0"));
    assert!(changed[0].targets.is_empty());
    assert!(sd.groups().is_empty());
}

/// Receives updates into `sets` until `cond` holds (bounded).
async fn wait_until(
    rx: &mut mpsc::Receiver<Update>,
    sets: &mut TargetSets,
    what: &str,
    cond: impl Fn(&TargetSets) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond(sets) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(u)) => {
                sets.apply(u);
            }
            Ok(None) => panic!("discoverer stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; have {:?}", sets.all()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoverer_follows_file_create_modify_invalid_delete() {
    let dir = tempfile::tempdir().unwrap();
    // refresh_interval 1h: only file watching can deliver these changes.
    let cfg = load(
        "scrape_configs:\n- job_name: files\n  file_sd_configs: [{files: ['*.json', '*.yaml'], refresh_interval: 1h}]\n- job_name: st\n  static_configs: [{targets: ['s:1']}]\n",
        dir.path(),
    );
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(Discoverer::new(&cfg).unwrap().run(tx));
    let mut sets = TargetSets::new();
    wait_until(&mut rx, &mut sets, "static targets", |s| {
        addrs(&s.groups("st")) == ["s:1"]
    })
    .await;

    let a = dir.path().join("a.json");
    std::fs::write(&a, r#"[{"targets":["a:1"]}]"#).unwrap();
    wait_until(&mut rx, &mut sets, "created a.json", |s| {
        addrs(&s.groups("files")) == ["a:1"]
    })
    .await;

    std::fs::write(dir.path().join("b.yaml"), "- targets: ['b:1', 'b:2']\n").unwrap();
    wait_until(&mut rx, &mut sets, "created b.yaml", |s| {
        addrs(&s.groups("files")) == ["a:1", "b:1", "b:2"]
    })
    .await;

    std::fs::write(&a, r#"[{"targets":["a:9"],"labels":{"v":"2"}}]"#).unwrap();
    wait_until(&mut rx, &mut sets, "modified a.json", |s| {
        addrs(&s.groups("files")) == ["a:9", "b:1", "b:2"]
    })
    .await;

    // An invalid file keeps its targets (as Prometheus); then a later valid
    // write is picked up again.
    std::fs::write(&a, "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(u) = rx.try_recv() {
        sets.apply(u);
    }
    assert_eq!(addrs(&sets.groups("files")), ["a:9", "b:1", "b:2"]);

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    wait_until(&mut rx, &mut sets, "deleted b.yaml", |s| {
        addrs(&s.groups("files")) == ["a:9"]
    })
    .await;

    std::fs::write(&a, r#"[{"targets":["a:10"]}]"#).unwrap();
    wait_until(&mut rx, &mut sets, "a.json valid again", |s| {
        addrs(&s.groups("files")) == ["a:10"]
    })
    .await;

    // Writes to a file no pattern matches produce no update.
    for i in 0..20 {
        std::fs::write(dir.path().join("app.log"), format!("line {i}")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        rx.try_recv().is_err(),
        "update after writes to an unmatched file"
    );

    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("discoverer ends when the receiver is dropped")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoverer_periodic_refresh_sees_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet, so it cannot be watched at first:
    // the periodic refresh must find the file.
    let cfg = load(
        "scrape_configs:\n- job_name: late\n  file_sd_configs: [{files: ['later/*.json'], refresh_interval: 300ms}]\n",
        dir.path(),
    );
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(Discoverer::new(&cfg).unwrap().run(tx));
    let mut sets = TargetSets::new();
    std::fs::create_dir(dir.path().join("later")).unwrap();
    std::fs::write(dir.path().join("later/x.json"), r#"[{"targets":["x:1"]}]"#).unwrap();
    wait_until(&mut rx, &mut sets, "file in a late directory", |s| {
        addrs(&s.groups("late")) == ["x:1"]
    })
    .await;
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
