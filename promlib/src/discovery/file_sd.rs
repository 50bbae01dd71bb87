//! `file_sd_configs`: target groups from JSON and YAML files, as Prometheus
//! 2.42's `discovery/file` reads them.
//!
//! - Only `*.json`, `*.yml`, `*.yaml` (any case) paths; only the last path
//!   element may hold a `*` glob.
//! - Each group gets the source `PATH:INDEX` and the label
//!   `__meta_filepath=PATH`.
//! - A file that cannot be read or parsed keeps its previous groups (the
//!   error is logged with the file); a file that disappears, or now has
//!   fewer groups, gets empty groups for its vanished sources.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::TargetGroup;
use crate::labels::{self, Labels};

/// The label every file_sd target carries: the file it came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// A file whose target groups cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    #[error("file_sd {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("file_sd {path}: {message}")]
    Parse { path: String, message: String },
    #[error("file_sd {path}: nil target group item found (index {index})")]
    NilGroup { path: String, index: usize },
    #[error("file_sd {path}: unhandled file extension (want .json, .yml or .yaml)")]
    Extension { path: String },
}

/// Whether `path` is accepted by Prometheus as a file_sd path:
/// `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
pub fn is_valid_path(path: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$").ok())
        .as_ref()
        .is_some_and(|re| re.is_match(path))
}

/// One group as written in a file or served by an http_sd endpoint
/// (Prometheus' `targetgroup.Group`: unknown fields rejected, label names
/// validated).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<Labels>,
}

enum Format {
    Json,
    Yaml,
}

fn format_of(path: &str) -> Option<Format> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rfind('.').map(|i| name[i..].to_ascii_lowercase())?;
    match ext.as_str() {
        ".json" => Some(Format::Json),
        ".yml" | ".yaml" => Some(Format::Yaml),
        _ => None,
    }
}

/// Parses the text of a file_sd file named `path` (the name decides JSON or
/// YAML and appears in sources, `__meta_filepath` and errors).
pub fn parse_groups(path: &str, text: &str) -> Result<Vec<TargetGroup>, FileSdError> {
    let parse_err = |message: String| FileSdError::Parse {
        path: path.to_string(),
        message,
    };
    let raw: Vec<Option<FileGroup>> = match format_of(path) {
        Some(Format::Json) => serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?,
        Some(Format::Yaml) => {
            // An empty YAML document is no groups, as in Go's yaml.v2.
            let doc: Option<Vec<Option<FileGroup>>> =
                serde_saphyr::from_str(text).map_err(|e| parse_err(e.to_string()))?;
            doc.unwrap_or_default()
        }
        None => {
            return Err(FileSdError::Extension {
                path: path.to_string(),
            });
        }
    };
    groups_of(raw, path, FILEPATH_LABEL).map_err(|index| FileSdError::NilGroup {
        path: path.to_string(),
        index,
    })
}

/// The groups of `origin` (a file or URL) with their sources and the meta
/// label `meta` set to `origin`; `Err(index)` names a `null` group.
pub(super) fn groups_of(
    raw: Vec<Option<FileGroup>>,
    origin: &str,
    meta: &'static str,
) -> Result<Vec<TargetGroup>, usize> {
    let mut out = Vec::with_capacity(raw.len());
    for (index, g) in raw.into_iter().enumerate() {
        let Some(g) = g else {
            return Err(index);
        };
        let mut group_labels = g.labels.unwrap_or_default();
        group_labels.insert(meta, origin);
        out.push(TargetGroup {
            source: source_name(origin, index),
            targets: g
                .targets
                .unwrap_or_default()
                .into_iter()
                .map(|t| Labels::from_pairs([(labels::ADDRESS, t)]))
                .collect(),
            labels: group_labels,
        });
    }
    Ok(out)
}

/// Reads and parses one file.
pub fn read_groups(path: &str) -> Result<Vec<TargetGroup>, FileSdError> {
    if format_of(path).is_none() {
        return Err(FileSdError::Extension {
            path: path.to_string(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| FileSdError::Io {
        path: path.to_string(),
        source,
    })?;
    parse_groups(path, &text)
}

/// The source of the `index`-th group of `path`.
pub fn source_name(path: &str, index: usize) -> String {
    format!("{path}:{index}")
}

/// Expands the patterns into existing files (sorted per pattern, as Go's
/// `filepath.Glob`); bad patterns are logged and skipped.
pub fn list_files(patterns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        match glob::glob(p) {
            Ok(paths) => {
                for entry in paths {
                    match entry {
                        Ok(pb) => out.push(pb.to_string_lossy().into_owned()),
                        Err(e) => {
                            tracing::debug!(glob = %p, error = %e, "file_sd: unreadable glob entry")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(glob = %p, error = %e, "file_sd: error expanding glob"),
        }
    }
    out
}

/// The state of one `file_sd_configs` entry between refreshes.
#[derive(Debug, Clone)]
pub struct FileSd {
    patterns: Vec<String>,
    /// Per file, the groups of the last good read.
    last: BTreeMap<String, Vec<TargetGroup>>,
}

impl FileSd {
    /// `patterns` already resolved against the config's directory.
    pub fn new(patterns: Vec<String>) -> Self {
        FileSd {
            patterns,
            last: BTreeMap::new(),
        }
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The directories to watch: each pattern's parent (`./` for a bare name).
    pub fn watch_dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .patterns
            .iter()
            .map(|p| match p.rfind('/') {
                Some(0) => "/".to_string(),
                Some(i) => p[..i].to_string(),
                None => "./".to_string(),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Re-reads every matching file. Returns the groups that changed since
    /// the last refresh (a vanished source as an empty group) and the read
    /// errors (those files keep their previous groups).
    pub fn refresh(&mut self) -> (Vec<TargetGroup>, Vec<FileSdError>) {
        let mut now: BTreeMap<String, Vec<TargetGroup>> = BTreeMap::new();
        let mut errors = Vec::new();
        for path in list_files(&self.patterns) {
            if now.contains_key(&path) {
                continue;
            }
            match read_groups(&path) {
                Ok(groups) => {
                    now.insert(path, groups);
                }
                Err(e) => {
                    tracing::error!(path = %path, error = %e, "file_sd: error reading file, keeping its previous targets");
                    if let Some(prev) = self.last.get(&path) {
                        now.insert(path, prev.clone());
                    }
                    errors.push(e);
                }
            }
        }
        let mut changed = Vec::new();
        for (path, groups) in &now {
            let prev = self.last.get(path).map(Vec::as_slice).unwrap_or_default();
            for (i, g) in groups.iter().enumerate() {
                if prev.get(i) != Some(g) {
                    changed.push(g.clone());
                }
            }
            for i in groups.len()..prev.len() {
                changed.push(TargetGroup::empty(source_name(path, i)));
            }
        }
        for (path, prev) in &self.last {
            if !now.contains_key(path) {
                tracing::debug!(path = %path, "file_sd: file gone, removing its targets");
                changed.extend((0..prev.len()).map(|i| TargetGroup::empty(source_name(path, i))));
            }
        }
        self.last = now;
        (changed, errors)
    }

    /// Every current group (non-empty files in order).
    pub fn groups(&self) -> Vec<TargetGroup> {
        self.last.values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_validation_matches_prometheus() {
        assert!(is_valid_path("a/b.json"));
        assert!(is_valid_path("a/*.yml"));
        assert!(is_valid_path("a/x*.YAML"));
        assert!(!is_valid_path("a/*/b.json"));
        assert!(!is_valid_path("a/b.txt"));
        assert!(!is_valid_path("a/b.Json"));
        assert!(!is_valid_path("*.json/x.yml"));
    }

    #[test]
    fn parses_json_and_yaml_with_sources_and_filepath() {
        let j = parse_groups(
            "/d/t.json",
            r#"[{"targets":["a:1","b"],"labels":{"x":"1"}},{"targets":[]}]"#,
        )
        .unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].source, "/d/t.json:0");
        assert_eq!(j[1].source, "/d/t.json:1");
        assert_eq!(j[0].targets[1].get("__address__"), Some("b"));
        assert_eq!(j[0].labels.get(FILEPATH_LABEL), Some("/d/t.json"));
        assert_eq!(j[1].labels.get(FILEPATH_LABEL), Some("/d/t.json"));
        let y = parse_groups("/d/t.YML", "- targets: [a:1]\n  labels: {x: '1'}\n").unwrap();
        assert_eq!(y[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(y[0].labels.get("x"), Some("1"));
        assert!(parse_groups("/d/e.yml", "").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_label_names_unknown_fields_and_null_groups() {
        let e =
            parse_groups("/d/t.json", r#"[{"targets":["a"],"labels":{"1x":"v"}}]"#).unwrap_err();
        assert!(
            e.to_string().contains("/d/t.json") && e.to_string().contains("1x"),
            "{e}"
        );
        let e = parse_groups("/d/t.yml", "- targets: [a]\n  bogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("/d/t.yml"), "{e}");
        let e = parse_groups("/d/t.json", "[null]").unwrap_err();
        assert!(matches!(e, FileSdError::NilGroup { .. }), "{e}");
        assert!(parse_groups("/d/t.json", "").is_err());
    }
}
