//! Loading: strict YAML deserialization, then Prometheus 2.42's defaults and
//! checks, each error placed at the line and column of the offending node.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::http::{HttpConfigIssue, url_problem};
use super::raw::{RawRemoteWriteConfig, RawScrapeConfig, null_default};
use super::sd::unsupported_sd_message;
use super::yaml_tree::{self, Node, Step};
use super::{
    ByteSize, Config, ConfigError, GlobalConfig, PassThrough, RemoteWriteConfig, ScrapeConfig,
};
use crate::duration::Duration;
use crate::labels::Labels;
use crate::relabel::RelabelConfig;

/// `global:` as written (absent intervals are filled by Prometheus' rules).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGlobal {
    scrape_interval: Option<Duration>,
    scrape_timeout: Option<Duration>,
    evaluation_interval: Option<Duration>,
    external_labels: Labels,
    query_log_file: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    global: Option<RawGlobal>,
    #[serde(deserialize_with = "null_default")]
    rule_files: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    scrape_configs: Vec<Option<RawScrapeConfig>>,
    #[serde(deserialize_with = "null_default")]
    remote_write: Vec<Option<RawRemoteWriteConfig>>,
    #[serde(deserialize_with = "null_default")]
    remote_read: Vec<PassThrough>,
    alerting: Option<PassThrough>,
    storage: Option<PassThrough>,
    tracing: Option<PassThrough>,
}

/// Headers remote write must not set (Prometheus 2.42 `reservedHeaders`).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Loads and validates a config file; relative `*_file` paths are joined
/// with the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.display().to_string(),
        source: e,
    })?;
    let mut cfg = load_str(&text, &path.display().to_string())?;
    let dir = path.parent().unwrap_or(Path::new(""));
    cfg.resolve_files(dir);
    cfg.source = Some(path.to_path_buf());
    Ok(cfg)
}

/// Turns a serde-saphyr error into `FILE:LINE:COL: message`.
pub(super) fn yaml_error(e: &serde_saphyr::Error, file: &str) -> ConfigError {
    let mut message = e.without_snippet().to_string();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // serde lists every known field after an unknown one; the key is enough.
    if message.starts_with("unknown field")
        && let Some(cut) = message.find(", expected")
    {
        message.truncate(cut);
    }
    match e.location() {
        Some(loc) if loc.line() > 0 => ConfigError::At {
            file: file.to_string(),
            line: loc.line() as usize,
            column: loc.column() as usize,
            message,
        },
        _ => ConfigError::Invalid {
            file: file.to_string(),
            message,
        },
    }
}

/// Label set errors are raised when the whole map has been read, so they
/// point at the map; move them to the offending key.
fn refine(err: ConfigError, tree: Option<&Node>) -> ConfigError {
    let ConfigError::At {
        file,
        line,
        column,
        message,
    } = err
    else {
        return err;
    };
    let name = message
        .strip_suffix("\" is not a valid label name")
        .or_else(|| {
            message
                .strip_prefix("duplicate label name \"")
                .and_then(|m| m.strip_suffix('"'))
        })
        .and_then(|m| m.strip_prefix('"').or(Some(m)));
    let found =
        name.and_then(|n| tree.and_then(|t| t.find_key_after(n, yaml_tree::Pos { line, column })));
    let (line, column) = found.map_or((line, column), |p| (p.line, p.column));
    ConfigError::At {
        file,
        line,
        column,
        message,
    }
}

/// Places errors found after deserialization.
struct Ctx<'a> {
    file: &'a str,
    tree: Option<&'a Node>,
}

impl Ctx<'_> {
    fn err(&self, path: &[Step<'_>], message: impl Into<String>) -> ConfigError {
        match self.tree {
            Some(t) => {
                let pos = t.locate_pos(path);
                ConfigError::At {
                    file: self.file.to_string(),
                    line: pos.line,
                    column: pos.column,
                    message: message.into(),
                }
            }
            None => ConfigError::Invalid {
                file: self.file.to_string(),
                message: message.into(),
            },
        }
    }

    fn http_err(&self, base: &[Step<'_>], issue: HttpConfigIssue) -> ConfigError {
        let mut path = base.to_vec();
        path.extend(issue.keys.iter().map(|k| Step::Key(k)));
        self.err(&path, issue.message)
    }
}

fn is_empty_document(tree: Option<&Node>) -> bool {
    match tree {
        None => true,
        Some(n) => matches!(&n.kind, yaml_tree::Kind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null"),
    }
}

/// Parses and validates config text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let tree = yaml_tree::parse(text);
    let raw: RawConfig =
        if is_empty_document(tree.as_ref()) && !text.contains(['[', '{', '"', '\'']) {
            // An empty file (or only comments) is a valid, empty config.
            match serde_saphyr::from_str::<Option<RawConfig>>(text) {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => return Err(yaml_error(&e, file)),
            }
        } else {
            serde_saphyr::from_str(text).map_err(|e| refine(yaml_error(&e, file), tree.as_ref()))?
        };
    let ctx = Ctx {
        file,
        tree: tree.as_ref(),
    };
    build(raw, &ctx, text)
}

fn build(raw: RawConfig, ctx: &Ctx<'_>, text: &str) -> Result<Config, ConfigError> {
    let global = build_global(raw.global.unwrap_or_default(), ctx)?;

    for (i, rf) in raw.rule_files.iter().enumerate() {
        if !valid_rule_path(rf) {
            return Err(ctx.err(
                &[Step::Key("rule_files"), Step::Index(i)],
                format!("invalid rule file path {rf:?}"),
            ));
        }
    }

    // Checks Prometheus makes while parsing each scrape config.
    let mut jobs: Vec<ScrapeConfig> = Vec::with_capacity(raw.scrape_configs.len());
    for (i, entry) in raw.scrape_configs.into_iter().enumerate() {
        let at = [Step::Key("scrape_configs"), Step::Index(i)];
        let Some(rsc) = entry else {
            return Err(ctx.err(&at, "empty or null scrape config section"));
        };
        let nulls = rsc.null_entries();
        let mut sc = ScrapeConfig::from(rsc);
        if sc.job_name.is_empty() {
            return Err(ctx.err(&at, "job_name is empty"));
        }
        sc.http.validate().map_err(|e| ctx.http_err(&at, e))?;
        let null_in = |key: &str, message: &str| ctx.err(&[at[0], at[1], Step::Key(key)], message);
        if nulls.static_configs {
            return Err(null_in(
                "static_configs",
                "empty or null section in static_configs",
            ));
        }
        if nulls.file_sd_configs {
            return Err(null_in(
                "file_sd_configs",
                "empty or null section in file_sd_configs",
            ));
        }
        for (key, null) in [
            ("http_sd_configs", nulls.http_sd_configs),
            ("dns_sd_configs", nulls.dns_sd_configs),
        ] {
            if null {
                return Err(null_in(key, &format!("empty or null section in {key}")));
            }
        }
        check_sd_configs(&mut sc, ctx, &at)?;
        if sc.relabel_configs.is_empty() {
            check_static_targets(&sc, ctx, &at)?;
        }
        if nulls.relabel_configs {
            return Err(null_in(
                "relabel_configs",
                "empty or null target relabeling rule in scrape config",
            ));
        }
        if nulls.metric_relabel_configs {
            return Err(null_in(
                "metric_relabel_configs",
                "empty or null metric relabeling rule in scrape config",
            ));
        }
        let owner = format!("scrape config with job name {:?}", sc.job_name);
        for (list, rules) in [
            ("relabel_configs", &sc.relabel_configs),
            ("metric_relabel_configs", &sc.metric_relabel_configs),
        ] {
            check_relabel(rules, list, &owner, ctx, &[at[0], at[1], Step::Key(list)])?;
        }
        sc.original_yaml = super::OriginalYaml(
            ctx.tree
                .map(|t| t.locate(&at).standalone_text(text))
                .unwrap_or_default(),
        );
        jobs.push(sc);
    }

    // Config-level checks: global fills, timeouts, unique job names.
    let mut names: HashSet<String> = HashSet::new();
    for (i, sc) in jobs.iter_mut().enumerate() {
        let at = [Step::Key("scrape_configs"), Step::Index(i)];
        fill_from_global(sc, &global)
            .map_err(|m| ctx.err(&[at[0], at[1], Step::Key("scrape_timeout")], m))?;
        if !names.insert(sc.job_name.clone()) {
            return Err(ctx.err(
                &[at[0], at[1], Step::Key("job_name")],
                format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ),
            ));
        }
    }

    let remote_write = build_remote_write(raw.remote_write, ctx)?;

    // promshard's own limit: discoveries it cannot run yet.
    for (i, sc) in jobs.iter().enumerate() {
        for (key, value) in &sc.unsupported_sd_configs {
            if let Some(m) = unsupported_sd_message(&sc.job_name, key, value) {
                return Err(ctx.err(
                    &[Step::Key("scrape_configs"), Step::Index(i), Step::Key(key)],
                    m,
                ));
            }
        }
    }

    Ok(Config {
        global,
        rule_files: raw.rule_files,
        scrape_configs: jobs,
        remote_write,
        remote_read: raw.remote_read,
        alerting: raw.alerting,
        storage: raw.storage,
        tracing: raw.tracing,
        source: None,
    })
}

fn build_global(g: RawGlobal, ctx: &Ctx<'_>) -> Result<GlobalConfig, ConfigError> {
    let defaults = GlobalConfig::default();
    let interval = match g.scrape_interval {
        Some(d) if d.as_millis() > 0 => d,
        _ => defaults.scrape_interval,
    };
    let timeout = g.scrape_timeout.unwrap_or_default();
    if timeout > interval {
        return Err(ctx.err(
            &[Step::Key("global"), Step::Key("scrape_timeout")],
            "global scrape timeout greater than scrape interval",
        ));
    }
    let timeout = if timeout.as_millis() == 0 {
        std::cmp::min(defaults.scrape_timeout, interval)
    } else {
        timeout
    };
    let evaluation_interval = match g.evaluation_interval {
        Some(d) if d.as_millis() > 0 => d,
        _ => defaults.evaluation_interval,
    };
    Ok(GlobalConfig {
        scrape_interval: interval,
        scrape_timeout: timeout,
        evaluation_interval,
        external_labels: g.external_labels,
        query_log_file: g.query_log_file,
        ..defaults
    })
}

/// Prometheus' `ScrapeConfig.Validate`: interval and timeout from global
/// (timeout capped at the interval), limits from global.
fn fill_from_global(sc: &mut ScrapeConfig, g: &GlobalConfig) -> Result<(), String> {
    let interval = match sc.scrape_interval {
        Some(d) if d.as_millis() > 0 => d,
        _ => g.scrape_interval,
    };
    sc.scrape_interval = Some(interval);
    let timeout = sc.scrape_timeout.unwrap_or_default();
    if timeout > interval {
        return Err(format!(
            "scrape timeout greater than scrape interval for scrape config with job name {:?}",
            sc.job_name
        ));
    }
    sc.scrape_timeout = Some(if timeout.as_millis() == 0 {
        std::cmp::min(g.scrape_timeout, interval)
    } else {
        timeout
    });
    fn fill(v: &mut Option<u64>, global: u64) {
        if v.unwrap_or(0) == 0 {
            *v = Some(global);
        }
    }
    if sc.body_size_limit.map_or(0, |b| b.0) == 0 {
        sc.body_size_limit = Some(ByteSize(g.body_size_limit.0));
    }
    fill(&mut sc.sample_limit, g.sample_limit);
    fill(&mut sc.target_limit, g.target_limit);
    fill(&mut sc.label_limit, g.label_limit);
    fill(&mut sc.label_name_length_limit, g.label_name_length_limit);
    fill(&mut sc.label_value_length_limit, g.label_value_length_limit);
    Ok(())
}

/// Prometheus 2.42's checks of `http_sd_configs` and `dns_sd_configs`
/// entries; the message names the entry and the job
/// (`dns_sd_configs[0] of scrape config with job name "j": ...`).
fn check_sd_configs(
    sc: &mut ScrapeConfig,
    ctx: &Ctx<'_>,
    at: &[Step<'_>; 2],
) -> Result<(), ConfigError> {
    let owner = format!("scrape config with job name {:?}", sc.job_name);
    for (k, h) in sc.http_sd_configs.iter_mut().enumerate() {
        let base = [at[0], at[1], Step::Key("http_sd_configs"), Step::Index(k)];
        if let Some((key, m)) = h.url_issue() {
            let mut path = base.to_vec();
            path.push(Step::Key(key));
            return Err(ctx.err(&path, format!("http_sd_configs[{k}] of {owner}: {m}")));
        }
        // Prometheus 2.42 never calls `HTTPClientConfig.Validate` for
        // http_sd: only what parsing checks is an error; the settings are
        // normalized (bearer_token into authorization) when they would
        // pass, else kept as written (the client applies Prometheus'
        // precedence).
        if let Err(issue) = h.http.parse_checks() {
            let message = format!("http_sd_configs[{k}] of {owner}: {}", issue.message);
            return Err(ctx.http_err(&base, HttpConfigIssue { message, ..issue }));
        }
        let mut normalized = h.http.clone();
        if normalized.validate().is_ok() {
            h.http = normalized;
        }
    }
    for (k, d) in sc.dns_sd_configs.iter().enumerate() {
        if let Some((key, m)) = d.issue() {
            // A key not written points at the entry.
            let path = [
                at[0],
                at[1],
                Step::Key("dns_sd_configs"),
                Step::Index(k),
                Step::Key(key),
            ];
            return Err(ctx.err(&path, format!("dns_sd_configs[{k}] of {owner}: {m}")));
        }
    }
    Ok(())
}

/// Prometheus' `checkStaticTargets`: without relabeling, a target must be
/// a host:port, not a URL.
fn check_static_targets(
    sc: &ScrapeConfig,
    ctx: &Ctx<'_>,
    at: &[Step<'_>; 2],
) -> Result<(), ConfigError> {
    for (g, group) in sc.static_configs.iter().enumerate() {
        for (t, target) in group.targets.iter().enumerate() {
            if target.contains('/') {
                return Err(ctx.err(
                    &[
                        at[0],
                        at[1],
                        Step::Key("static_configs"),
                        Step::Index(g),
                        Step::Key("targets"),
                        Step::Index(t),
                    ],
                    format!("{target:?} is not a valid hostname"),
                ));
            }
        }
    }
    Ok(())
}

fn check_relabel(
    rules: &[RelabelConfig],
    list: &str,
    owner: &str,
    ctx: &Ctx<'_>,
    at: &[Step<'_>],
) -> Result<(), ConfigError> {
    for (k, rule) in rules.iter().enumerate() {
        if let Err(m) = rule.validate() {
            let mut path = at.to_vec();
            path.push(Step::Index(k));
            return Err(ctx.err(&path, format!("{list}[{k}] of {owner}: {m}")));
        }
    }
    Ok(())
}

fn build_remote_write(
    entries: Vec<Option<RawRemoteWriteConfig>>,
    ctx: &Ctx<'_>,
) -> Result<Vec<RemoteWriteConfig>, ConfigError> {
    let mut out = Vec::with_capacity(entries.len());
    let mut names: BTreeMap<String, ()> = BTreeMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let at = [Step::Key("remote_write"), Step::Index(i)];
        let Some(raw) = entry else {
            return Err(ctx.err(&at, "empty or null remote write config section"));
        };
        let null_relabel = raw.has_null_relabel();
        let mut rw = RemoteWriteConfig::from(raw);
        if rw.url.is_empty() {
            return Err(ctx.err(&at, "url for remote_write is empty"));
        }
        if let Some(m) = url_problem(&rw.url) {
            return Err(ctx.err(&[at[0], at[1], Step::Key("url")], m));
        }
        if null_relabel {
            return Err(ctx.err(
                &[at[0], at[1], Step::Key("write_relabel_configs")],
                "empty or null relabeling rule in remote write config",
            ));
        }
        for header in rw.headers.keys() {
            let lower = header.to_ascii_lowercase();
            let msg = if lower == "authorization" {
                Some("authorization header must be changed via the basic_auth, authorization, oauth2, or sigv4 parameter".to_string())
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                Some(format!(
                    "{header} is a reserved header. It must not be changed"
                ))
            } else {
                None
            };
            if let Some(m) = msg {
                return Err(ctx.err(&[at[0], at[1], Step::Key("headers"), Step::Key(header)], m));
            }
        }
        rw.http.validate().map_err(|e| ctx.http_err(&at, e))?;
        let auth = rw.http.basic_auth.is_some()
            || rw.http.authorization.is_some()
            || rw.http.oauth2.is_some();
        if auth && rw.sigv4.is_some() {
            return Err(ctx.err(
                &[at[0], at[1], Step::Key("sigv4")],
                "at most one of basic_auth, authorization, oauth2, & sigv4 must be configured",
            ));
        }
        let name = if rw.name.is_empty() {
            "remote_write".to_string()
        } else {
            format!("remote_write {:?}", rw.name)
        };
        check_relabel(
            &rw.write_relabel_configs,
            "write_relabel_configs",
            &name,
            ctx,
            &[at[0], at[1], Step::Key("write_relabel_configs")],
        )?;
        if !rw.name.is_empty() && names.insert(rw.name.clone(), ()).is_some() {
            return Err(ctx.err(
                &[at[0], at[1], Step::Key("name")],
                format!(
                    "found multiple remote write configs with job name {:?}",
                    rw.name
                ),
            ));
        }
        out.push(rw);
    }
    Ok(out)
}

/// Prometheus' rule file pattern `^[^*]*(\*[^/]*)?$`: a glob only in the
/// last path element.
fn valid_rule_path(p: &str) -> bool {
    match p.find('*') {
        None => true,
        Some(i) => !p[i..].contains('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sections_are_empty() {
        for text in [
            "global:\n",
            "scrape_configs:\n",
            "remote_write:\nrule_files:\n",
        ] {
            let cfg = load_str(text, "n.yml").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(cfg.scrape_configs.is_empty());
        }
    }

    #[test]
    fn rule_paths() {
        assert!(valid_rule_path("rules/*.yml"));
        assert!(valid_rule_path("a.yml"));
        assert!(!valid_rule_path("a/*/b.yml"));
    }
}
