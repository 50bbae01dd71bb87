//! The backend's config file: the shard's `global` (and, for Prometheus,
//! `remote_write`) plus every job from the coordinator with its service
//! discovery and `relabel_configs` replaced by one `http_sd_configs` entry
//! pointing at the sidecar.
//!
//! The file is written as JSON (valid YAML, which both Prometheus and
//! vmagent read) after a comment line: the job's YAML is parsed into a
//! generic tree, so that every field the coordinator sent survives, even
//! those promshard does not model.

use std::path::Path;

use serde_json::{Map, Value};

use super::ExternalKind;

/// Keys of a job that the sidecar takes over (its targets come from the
/// coordinator with final labels) or that would send the backend's scrape
/// of the sidecar's proxy elsewhere.
fn is_removed_job_key(key: &str) -> bool {
    key.ends_with("_sd_configs")
        || matches!(
            key,
            "static_configs"
                | "relabel_configs"
                // The sidecar's proxy adds the job's params from the final
                // labels; the backend must not send its own to the proxy.
                | "params"
                // The backend reaches the proxy directly; the proxy uses the
                // job's proxy settings towards the target.
                | "proxy_url"
                | "no_proxy"
                | "proxy_from_environment"
                | "proxy_connect_header"
        )
}

/// `global` keys vmagent 1.79 accepts.
const VMAGENT_GLOBAL_KEYS: &[&str] = &["scrape_interval", "scrape_timeout", "external_labels"];

/// Why a YAML document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{what}: not YAML: {message}")]
    Yaml { what: String, message: String },
    #[error("{what}: not a mapping")]
    NotMapping { what: String },
}

/// Parses YAML into a generic tree (`what` names it in errors).
pub fn parse_yaml(text: &str, what: &str) -> Result<Value, RenderError> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| RenderError::Yaml {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(RenderError::NotMapping {
            what: what.to_string(),
        }),
    }
}

/// The parts of a whole config that go into the backend's file:
/// `global` and `remote_write` (relative `*_file` paths made absolute
/// against `base_dir`).
pub fn base_sections(config: &Value, base_dir: &Path) -> Value {
    let mut out = Map::new();
    for key in ["global", "remote_write"] {
        if let Some(v) = config.get(key)
            && !v.is_null()
        {
            let mut v = v.clone();
            absolutize_files(&mut v, base_dir);
            out.insert(key.to_string(), v);
        }
    }
    Value::Object(out)
}

/// A job for the backend: `job` (a parsed scrape config) without its
/// discovery and relabeling, with one `http_sd_configs` entry at `sd_url`
/// polled every `refresh` (`None` for vmagent: it refuses the field and
/// polls every `-promscrape.httpSDCheckInterval`).
pub fn backend_job(job: &Value, sd_url: &str, refresh: Option<&str>, base_dir: &Path) -> Value {
    let mut out = Map::new();
    if let Value::Object(m) = job {
        for (k, v) in m {
            if !is_removed_job_key(k) {
                let mut v = v.clone();
                absolutize_files(&mut v, base_dir);
                out.insert(k.clone(), v);
            }
        }
    }
    let mut sd = Map::new();
    sd.insert("url".to_string(), Value::String(sd_url.to_string()));
    if let Some(refresh) = refresh {
        sd.insert(
            "refresh_interval".to_string(),
            Value::String(refresh.to_string()),
        );
    }
    out.insert(
        "http_sd_configs".to_string(),
        Value::Array(vec![Value::Object(sd)]),
    );
    Value::Object(out)
}

/// The whole file: `base` (from [`base_sections`]) and `jobs` in order.
pub fn config_text(kind: ExternalKind, base: &Value, jobs: Vec<Value>) -> String {
    let mut root = Map::new();
    if let Some(Value::Object(g)) = base.get("global") {
        let g = match kind {
            ExternalKind::Prometheus => g.clone(),
            ExternalKind::Vmagent => g
                .iter()
                .filter(|(k, _)| VMAGENT_GLOBAL_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        root.insert("global".to_string(), Value::Object(g));
    }
    // vmagent takes its remote write from -remoteWrite.url flags only.
    if kind == ExternalKind::Prometheus
        && let Some(rw) = base.get("remote_write")
    {
        root.insert("remote_write".to_string(), rw.clone());
    }
    root.insert("scrape_configs".to_string(), Value::Array(jobs));
    let body =
        serde_json::to_string_pretty(&Value::Object(root)).unwrap_or_else(|_| "{}".to_string());
    format!(
        "# Written by promshard sidecar ({}); do not edit: it is rewritten when the coordinator's jobs change.\n{body}\n",
        kind.name()
    )
}

/// Joins every relative string under a key ending in `_file` with `dir`:
/// the backend resolves relative paths against its own config file's
/// directory, which need not be the shard's.
fn absolutize_files(v: &mut Value, dir: &Path) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k.ends_with("_file")
                    && let Value::String(s) = v
                {
                    if !s.is_empty() && Path::new(s.as_str()).is_relative() {
                        *s = dir.join(s.as_str()).to_string_lossy().into_owned();
                    }
                } else {
                    absolutize_files(v, dir);
                }
            }
        }
        Value::Array(a) => {
            for v in a {
                absolutize_files(v, dir);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_loses_discovery_relabeling_params_and_proxy_and_gains_http_sd() {
        let job = parse_yaml(
            "job_name: a\nscrape_interval: 5s\nstatic_configs: [{targets: ['x:1']}]\n\
             file_sd_configs: [{files: [f.json]}]\ndns_sd_configs: [{names: [n]}]\n\
             relabel_configs: [{action: drop}]\nmetric_relabel_configs: [{action: keep, regex: x}]\n\
             params: {a: [b]}\nproxy_url: http://p:1\n\
             authorization: {credentials_file: tok}\n",
            "job a",
        )
        .unwrap();
        let out = backend_job(
            &job,
            "http://127.0.0.1:9/http_sd/a",
            Some("5s"),
            Path::new("/etc/ps"),
        );
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "authorization",
                "http_sd_configs",
                "job_name",
                "metric_relabel_configs",
                "scrape_interval"
            ]
        );
        assert_eq!(
            out["http_sd_configs"][0]["url"],
            "http://127.0.0.1:9/http_sd/a"
        );
        assert_eq!(
            out["authorization"]["credentials_file"], "/etc/ps/tok",
            "relative files are made absolute"
        );
    }

    #[test]
    fn vmagent_gets_no_remote_write_and_only_its_global_keys() {
        let cfg = parse_yaml(
            "global: {scrape_interval: 1s, evaluation_interval: 1m, external_labels: {a: b}}\n\
             remote_write: [{url: 'http://x/w'}]\nscrape_configs: [{job_name: z}]\n",
            "f",
        )
        .unwrap();
        let base = base_sections(&cfg, Path::new("/"));
        let vm = config_text(ExternalKind::Vmagent, &base, vec![]);
        assert!(!vm.contains("remote_write") && !vm.contains("evaluation_interval"));
        assert!(vm.contains("external_labels"));
        let prom = config_text(ExternalKind::Prometheus, &base, vec![]);
        assert!(prom.contains("remote_write") && prom.contains("evaluation_interval"));
        // The comment line then JSON, which is YAML.
        let back = parse_yaml(&prom, "out").unwrap();
        assert_eq!(back["scrape_configs"], Value::Array(vec![]));
        assert!(parse_yaml("[1]", "x").is_err());
        assert!(parse_yaml("a: [", "x").is_err());
    }
}
