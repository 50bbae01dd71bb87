//! Service discovery: target groups from `static_configs`,
//! `file_sd_configs`, `http_sd_configs` and `dns_sd_configs`, as
//! Prometheus 2.42 produces them.
//!
//! - [`discover_once`]: every job's groups right now (for the CLI).
//! - [`Discoverer::run`]: keeps discovering and sends [`Update`]s on a tokio
//!   channel; [`TargetSets`] folds them into each job's current groups.
//!
//! Providers of a job are named `static/0`, `file/N`, `http/N`, `dns/N`
//! (N: the entry's index in the job's list).

pub mod dns_sd;
mod dns_wire;
pub mod file_sd;
pub mod http_sd;
mod stats;
mod watch;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, DnsSdConfig, FileSdConfig, HttpSdConfig, ScrapeConfig};
use crate::duration::Duration;
use crate::labels::{self, Labels};

pub use self::dns_sd::{DnsSd, DnsSdError, Resolver, ResolverConfig};
pub use self::file_sd::{FILEPATH_LABEL, FileSd, FileSdError};
pub use self::http_sd::{HttpSd, HttpSdError, URL_LABEL};
pub use self::stats::{DiscoveryStats, ProviderStats};
pub use self::watch::Discoverer;

/// A discovery config that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("job {job:?}: path name {path:?} is not valid for file discovery")]
    InvalidFilePath { job: String, path: String },
    #[error("job {job:?}: file service discovery config must contain at least one path name")]
    NoFilePaths { job: String },
    #[error("job {0:?} is not in the config")]
    UnknownJob(String),
    #[error("job {job:?}: http_sd_configs[{index}]: {message}")]
    HttpSd {
        job: String,
        index: usize,
        message: String,
    },
    #[error("job {job:?}: dns_sd_configs[{index}]: invalid DNS-SD records type {kind}")]
    DnsType {
        job: String,
        index: usize,
        kind: String,
    },
    #[error("discovery: cannot start a runtime: {0}")]
    Runtime(String),
}

/// One batch of changed groups of one provider of one job. A group with no
/// targets means its source is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub job: String,
    /// `static/0` or `file/N` (the N-th `file_sd_configs` entry of the job).
    pub provider: String,
    pub groups: Vec<TargetGroup>,
}

/// Each job's current groups, built from [`Update`]s.
#[derive(Clone, Debug, Default)]
pub struct TargetSets {
    jobs: BTreeMap<String, BTreeMap<(String, String), TargetGroup>>,
}

impl TargetSets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an update; returns whether anything changed.
    pub fn apply(&mut self, update: Update) -> bool {
        let job = self.jobs.entry(update.job).or_default();
        let mut changed = false;
        for g in update.groups {
            let key = (update.provider.clone(), g.source.clone());
            if g.targets.is_empty() {
                changed |= job.remove(&key).is_some();
            } else if job.get(&key) != Some(&g) {
                job.insert(key, g);
                changed = true;
            }
        }
        changed
    }

    /// The job's groups, by provider then source.
    pub fn groups(&self, job: &str) -> Vec<TargetGroup> {
        self.jobs
            .get(job)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every job seen so far, with its groups.
    pub fn all(&self) -> BTreeMap<String, Vec<TargetGroup>> {
        self.jobs
            .iter()
            .map(|(j, m)| (j.clone(), m.values().cloned().collect()))
            .collect()
    }
}

/// The groups of a job's `static_configs`: one group per entry, with the
/// entry's index as source.
pub fn static_groups(sc: &ScrapeConfig) -> Vec<TargetGroup> {
    sc.static_configs
        .iter()
        .enumerate()
        .map(|(i, st)| TargetGroup {
            source: i.to_string(),
            targets: st
                .targets
                .iter()
                .map(|t| Labels::from_pairs([(labels::ADDRESS, t.as_str())]))
                .collect(),
            labels: st.labels.clone(),
        })
        .collect()
}

/// A job's file_sd configs, validated; identical entries of one job are read once, as Prometheus
/// shares identical providers. Returns `(provider index, patterns,
/// refresh interval)`.
fn file_providers(
    sc: &ScrapeConfig,
) -> Result<Vec<(usize, Vec<String>, Duration)>, DiscoveryError> {
    let mut seen: Vec<&FileSdConfig> = Vec::new();
    let mut out = Vec::new();
    for (i, f) in sc.file_sd_configs.iter().enumerate() {
        if f.files.is_empty() {
            return Err(DiscoveryError::NoFilePaths {
                job: sc.job_name.clone(),
            });
        }
        for p in &f.files {
            if !file_sd::is_valid_path(p) {
                return Err(DiscoveryError::InvalidFilePath {
                    job: sc.job_name.clone(),
                    path: p.clone(),
                });
            }
        }
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        // Already joined with the config file's directory by
        // `config::load_file` (`Config::resolve_files`).
        out.push((i, f.files.clone(), f.refresh_interval));
    }
    Ok(out)
}

/// A job's http_sd configs as clients, identical entries once. Returns
/// `(provider index, provider)`.
fn http_providers(sc: &ScrapeConfig) -> Result<Vec<(usize, HttpSd)>, DiscoveryError> {
    let mut seen: Vec<&HttpSdConfig> = Vec::new();
    let mut out = Vec::new();
    for (i, h) in sc.http_sd_configs.iter().enumerate() {
        if seen.contains(&h) {
            continue;
        }
        seen.push(h);
        // `*_file` paths were joined with the config's directory by
        // `config::load_file`.
        let sd = HttpSd::new(h, Path::new("")).map_err(|e| DiscoveryError::HttpSd {
            job: sc.job_name.clone(),
            index: i,
            message: crate::scrape::error_chain(&e),
        })?;
        out.push((i, sd));
    }
    Ok(out)
}

/// A job's dns_sd configs, identical entries once. Returns
/// `(provider index, provider)`.
fn dns_providers(
    sc: &ScrapeConfig,
    resolver: &Resolver,
) -> Result<Vec<(usize, DnsSd)>, DiscoveryError> {
    let mut seen: Vec<&DnsSdConfig> = Vec::new();
    let mut out = Vec::new();
    for (i, d) in sc.dns_sd_configs.iter().enumerate() {
        if seen.contains(&d) {
            continue;
        }
        seen.push(d);
        let sd = DnsSd::new(d, resolver.clone()).ok_or_else(|| DiscoveryError::DnsType {
            job: sc.job_name.clone(),
            index: i,
            kind: d.kind.clone(),
        })?;
        out.push((i, sd));
    }
    Ok(out)
}

/// Whether any job needs the network (and so a runtime) to discover.
fn needs_network(cfg: &Config) -> bool {
    cfg.scrape_configs
        .iter()
        .any(|sc| !sc.http_sd_configs.is_empty() || !sc.dns_sd_configs.is_empty())
}

/// Discovers every job's target groups once: static groups first, then each
/// file_sd config's files, then one refresh of each http_sd and dns_sd
/// config (system resolver). Unreadable files, failed requests and failed
/// lookups are logged (naming the file, URL or name) and contribute
/// nothing, as at Prometheus' first refresh.
///
/// Blocking: with http/dns discovery it runs on a runtime of its own, on
/// a thread of its own, so it may be called from inside a runtime too
/// (it then blocks that worker; use [`discover_once_with`] from async code).
pub fn discover_once(cfg: &Config) -> Result<BTreeMap<String, Vec<TargetGroup>>, DiscoveryError> {
    if !needs_network(cfg) {
        let mut out = BTreeMap::new();
        for sc in &cfg.scrape_configs {
            out.insert(sc.job_name.clone(), local_groups(sc)?);
        }
        return Ok(out);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DiscoveryError::Runtime(e.to_string()))?;
            rt.block_on(discover_once_with(cfg, &Resolver::system()))
        })
        .join()
        .unwrap_or_else(|_| Err(DiscoveryError::Runtime("discovery thread panicked".into())))
    })
}

/// A job's static and file_sd groups.
fn local_groups(sc: &ScrapeConfig) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let mut groups = static_groups(sc);
    for (_, patterns, _) in file_providers(sc)? {
        let mut fsd = FileSd::new(patterns);
        let _ = fsd.refresh();
        groups.extend(fsd.groups());
    }
    Ok(groups)
}

/// [`discover_once`] in async code, with DNS through `resolver`. Every
/// config is checked before anything is fetched; the fetches of all jobs
/// run concurrently.
pub async fn discover_once_with(
    cfg: &Config,
    resolver: &Resolver,
) -> Result<BTreeMap<String, Vec<TargetGroup>>, DiscoveryError> {
    let mut jobs = Vec::new();
    for sc in &cfg.scrape_configs {
        jobs.push((
            sc.job_name.clone(),
            local_groups(sc)?,
            http_providers(sc)?,
            dns_providers(sc, resolver)?,
        ));
    }
    let fetches = jobs.into_iter().map(|(job, mut groups, https, dnss)| async move {
        for (_, mut sd) in https {
            match sd.refresh().await {
                Ok(g) => groups.extend(g.into_iter().filter(|g| !g.targets.is_empty())),
                Err(e) => tracing::error!(job = %job, error = %e, "http_sd: unable to refresh target groups"),
            }
        }
        for (_, sd) in dnss {
            let (g, _errors) = sd.refresh().await;
            groups.extend(g.into_iter().filter(|g| !g.targets.is_empty()));
        }
        (job, groups)
    });
    Ok(futures_util::future::join_all(fetches)
        .await
        .into_iter()
        .collect())
}

/// A group of targets from one source, as Prometheus' `targetgroup.Group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where the group came from (e.g. `0` for the first static config, or
    /// `path/file.yml:2` for the third group of a file).
    pub source: String,
    /// One label set per target (at least `__address__`).
    pub targets: Vec<Labels>,
    /// Labels common to all targets of the group.
    pub labels: Labels,
}

impl TargetGroup {
    /// A group with no targets: tells consumers that `source` is gone.
    pub fn empty(source: impl Into<String>) -> Self {
        TargetGroup {
            source: source.into(),
            ..TargetGroup::default()
        }
    }

    /// Each target's labels merged with the group labels (target labels win),
    /// in the group's order.
    pub fn merged_targets(&self) -> impl Iterator<Item = Labels> + '_ {
        self.targets.iter().map(|t| {
            let mut l = t.clone();
            for g in self.labels.iter() {
                if !l.contains(&g.name) {
                    l.insert(g.name.clone(), g.value.clone());
                }
            }
            l
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config loaded from `conf/prom.yml` has its file_sd paths joined
    /// with `conf` once, by the loader; discovery must not join them again
    /// (it once looked in `conf/conf/sd`).
    #[test]
    fn file_paths_are_joined_with_the_config_dir_once() {
        let mut cfg = crate::config::load_str(
            "scrape_configs:\n- job_name: j\n  file_sd_configs: [{files: [sd/a.json, /abs/b.json]}]\n",
            "conf/prom.yml",
        )
        .unwrap();
        // What `config::load_file("conf/prom.yml")` does after parsing.
        cfg.resolve_files(std::path::Path::new("conf"));
        cfg.source = Some("conf/prom.yml".into());
        let providers = file_providers(&cfg.scrape_configs[0]).unwrap();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].1, ["conf/sd/a.json", "/abs/b.json"]);
    }
}
