//! Job definitions from the coordinator -> validated scrape configs.
//!
//! A job's YAML is parsed on its own with [`ScrapeConfig::from_yaml`],
//! then validated and completed (interval, timeout and limits from
//! `global`) exactly as a prometheus.yml would be, by loading it as the
//! only job of a config whose `global` is the shard's.

use std::path::Path;

use promshard_promlib::config::{
    self, Config, ConfigError, GlobalConfig, OriginalYaml, ScrapeConfig,
};
use promshard_proto::v1;

/// Lines put before the job's YAML when it is validated as a whole config.
const PREAMBLE_LINES: usize = 3;

/// Why a job definition or the global config was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job definition without a job name")]
    NoName,
    #[error("job {job:?}: {source}")]
    Yaml {
        job: String,
        #[source]
        source: ConfigError,
    },
    #[error("job {job:?}: its scrape_config names job {found:?}")]
    NameMismatch { job: String, found: String },
    #[error("global config from the coordinator: {0}")]
    Global(#[source] ConfigError),
}

/// The name a refusal of `def` is reported under (`<unnamed>` for a
/// definition without one).
pub fn reported_name(def: &v1::JobDefinition) -> String {
    if def.job_name.is_empty() {
        "<unnamed>".to_string()
    } else {
        def.job_name.clone()
    }
}

/// Builds the scrape config of `def` with `global`'s defaults; relative
/// `*_file` paths resolve against `base_dir` (the shard's config dir).
pub fn compile(
    def: &v1::JobDefinition,
    global: &GlobalConfig,
    base_dir: &Path,
) -> Result<ScrapeConfig, JobError> {
    let job = def.job_name.clone();
    if job.is_empty() {
        return Err(JobError::NoName);
    }
    let file = format!("scrape_config of job {job:?} from the coordinator");
    let yaml = strip_document_start(&def.scrape_config_yaml);
    let alone = ScrapeConfig::from_yaml(yaml, &file).map_err(|source| JobError::Yaml {
        job: job.clone(),
        source,
    })?;
    if alone.job_name != job {
        return Err(JobError::NameMismatch {
            job,
            found: alone.job_name,
        });
    }
    let text = format!(
        "global:\n  scrape_interval: {}\n  scrape_timeout: {}\nscrape_configs:\n{}",
        global.scrape_interval,
        global.scrape_timeout,
        as_sequence_item(yaml)
    );
    let mut cfg = config::load_str(&text, &file).map_err(|e| JobError::Yaml {
        job: job.clone(),
        source: unshift(e),
    })?;
    let Some(mut sc) = cfg.scrape_configs.pop() else {
        return Err(JobError::Yaml {
            job,
            source: ConfigError::Invalid {
                file,
                message: "empty scrape config".to_string(),
            },
        });
    };
    sc.original_yaml = OriginalYaml(yaml.to_string());
    sc.resolve_files(base_dir);
    Ok(sc)
}

/// Parses the coordinator's global config (a prometheus.yml without jobs:
/// `global`, `remote_write`); `scrape_configs` in it are ignored.
pub fn parse_global(yaml: &str, base_dir: &Path) -> Result<Config, JobError> {
    let mut cfg =
        config::load_str(yaml, "global config from the coordinator").map_err(JobError::Global)?;
    if !cfg.scrape_configs.is_empty() {
        tracing::warn!(
            jobs = cfg.scrape_configs.len(),
            "the coordinator's global config holds scrape_configs; ignored (jobs come as job definitions)"
        );
        cfg.scrape_configs.clear();
    }
    cfg.resolve_files(base_dir);
    Ok(cfg)
}

fn strip_document_start(yaml: &str) -> &str {
    let t = yaml.trim_start_matches(['\n', '\r']);
    match t.strip_prefix("---") {
        Some(rest) if rest.starts_with(['\n', '\r']) || rest.is_empty() => rest,
        _ => yaml,
    }
}

/// `yaml` (a mapping) as the item of a block sequence at column 0.
fn as_sequence_item(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    let mut first = true;
    for line in yaml.lines() {
        if first {
            out.push_str("- ");
            first = false;
        } else {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    if first {
        out.push_str("- {}\n");
    }
    out
}

/// Error positions of the composed text -> positions in the job's YAML.
fn unshift(e: ConfigError) -> ConfigError {
    match e {
        ConfigError::At {
            file,
            line,
            column,
            message,
        } if line > PREAMBLE_LINES => ConfigError::At {
            file,
            line: line - PREAMBLE_LINES,
            column: column.saturating_sub(2).max(1),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, yaml: &str) -> v1::JobDefinition {
        v1::JobDefinition {
            job_name: name.to_string(),
            config_hash: "h".to_string(),
            scrape_config_yaml: yaml.to_string(),
        }
    }

    #[test]
    fn fills_interval_and_timeout_from_global() {
        let g = GlobalConfig {
            scrape_interval: "7s".parse().unwrap(),
            scrape_timeout: "3s".parse().unwrap(),
            ..GlobalConfig::default()
        };
        let sc = compile(
            &def("a", "job_name: a\nstatic_configs:\n  - targets: [x:1]\n"),
            &g,
            Path::new("/etc"),
        )
        .unwrap();
        assert_eq!(sc.interval().as_millis(), 7000);
        assert_eq!(sc.timeout().as_millis(), 3000);
        assert_eq!(sc.job_name, "a");
    }

    #[test]
    fn refuses_bad_yaml_a_name_mismatch_and_invalid_fields() {
        let g = GlobalConfig::default();
        let p = Path::new(".");
        assert!(matches!(
            compile(&def("a", "job_name: [\n"), &g, p),
            Err(JobError::Yaml { .. })
        ));
        assert!(matches!(
            compile(&def("a", "job_name: b\n"), &g, p),
            Err(JobError::NameMismatch { .. })
        ));
        // Validation of the whole-config loader: timeout above interval.
        let e = compile(
            &def(
                "a",
                "job_name: a\nscrape_interval: 1s\nscrape_timeout: 5s\n",
            ),
            &g,
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("scrape timeout greater"), "{e}");
        assert!(matches!(
            compile(&def("", "job_name: a\n"), &g, p),
            Err(JobError::NoName)
        ));
    }

    #[test]
    fn global_config_keeps_remote_write_and_drops_jobs() {
        let cfg = parse_global(
            "global:\n  external_labels: {shard: s1}\nremote_write:\n  - url: http://127.0.0.1:1/w\nscrape_configs:\n  - job_name: x\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(cfg.remote_write.len(), 1);
        assert!(cfg.scrape_configs.is_empty());
        assert_eq!(cfg.global.external_labels.get("shard"), Some("s1"));
        assert!(parse_global("global: [", Path::new(".")).is_err());
    }
}
