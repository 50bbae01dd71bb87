//! [`Explorer`]: one real scrape of a target by the coordinator, to
//! estimate its load when its job has no history yet ("explore", as kvass
//! does).
//!
//! - Whether a job is explored is set in [`ExploreConfig`] (a default and
//!   per-job overrides), not in prometheus.yml.
//! - At most [`ExploreConfig::max_concurrency`] scrapes run at once (a
//!   semaphore held for one attempt, not across backoff sleeps).
//! - Each attempt is bounded by the smaller of
//!   [`ExploreConfig::timeout`] and the target's scrape timeout.
//! - Failed attempts are retried up to [`ExploreConfig::max_attempts`] in
//!   all, with exponential backoff (`initial_backoff`, doubled each time,
//!   capped at `max_backoff`), when retrying can help: timeouts, transport
//!   errors, HTTP 5xx and 429. Other failures (4xx, an invalid URL, the
//!   body size limit, a malformed body) end the explore at once.
//! - A failure is reported as a failure ([`ExploreError`]), never as a
//!   zero load: the caller records it (the target keeps the default
//!   estimate).
//!
//! The scrape uses promlib's one-target [`ScrapeClient`] (one per job,
//! built from the job's HTTP settings and cached until the job's config
//! changes), so auth, TLS, gzip and the body size limit are the job's
//! (the body is also capped by [`ExploreConfig::max_body_bytes`]).
//! The body is parsed with promlib's exposition [`Parser`] (text or
//! OpenMetrics by Content-Type); the first parse error fails the explore,
//! as it fails a Prometheus scrape. Series = samples in the body. When the
//! job has `metric_relabel_configs`, each sample's labels get the target's
//! labels (honor_labels respected; a conflicting scraped label is kept as
//! `exported_<name>`, without Prometheus' repeated prefixing for further
//! collisions) and go through promlib's relabeling; samples it drops are
//! not counted. Samples per second = series / the target's scrape interval.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::config::ScrapeConfig;
use promshard_promlib::exposition::{Entry, Format, Parser};
use promshard_promlib::labels::Labels;
use promshard_promlib::relabel;
use promshard_promlib::scrape::{ScrapeClient, ScrapeError, error_chain};
use tokio::sync::Semaphore;

use crate::model::{Load, TargetId};

use super::targets::RegisteredTarget;

/// Explore settings (coordinator flags, not prometheus.yml).
#[derive(Clone, Debug, PartialEq)]
pub struct ExploreConfig {
    /// Whether jobs without an entry in `per_job` are explored.
    pub enabled_by_default: bool,
    /// Per-job on/off.
    pub per_job: HashMap<String, bool>,
    /// Scrapes in flight at most (at least 1).
    pub max_concurrency: usize,
    /// Upper bound of one attempt (the target's scrape timeout may be
    /// shorter).
    pub timeout: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The largest body read, in bytes (0 = none): the job's
    /// `body_size_limit` when smaller. A body that reaches it fails the
    /// explore, so one huge target cannot exhaust the coordinator's memory.
    pub max_body_bytes: u64,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            enabled_by_default: true,
            per_job: HashMap::new(),
            max_concurrency: 8,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_body_bytes: 64 << 20,
        }
    }
}

impl ExploreConfig {
    /// Whether targets of `job` are explored.
    pub fn enabled_for(&self, job: &str) -> bool {
        self.per_job
            .get(job)
            .copied()
            .unwrap_or(self.enabled_by_default)
    }

    /// The sleep before attempt `attempt + 1` (`attempt` >= 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExploreConfigError {
    #[error("explore: max_concurrency must be at least 1")]
    ZeroConcurrency,
    #[error("explore: max_attempts must be at least 1")]
    ZeroAttempts,
    #[error("explore: timeout must be above 0")]
    ZeroTimeout,
}

/// Why an explore failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExploreError {
    #[error("explore disabled for job {job:?}")]
    Disabled { job: String },
    #[error("job {job:?}: cannot build its scrape client: {reason}")]
    Client { job: String, reason: String },
    #[error("target {url}: {reason} (after {attempts} attempt(s))")]
    Scrape {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error("target {url}: parsing the body: line {line}: {message}")]
    Parse {
        url: String,
        line: usize,
        message: String,
    },
}

/// The result of exploring one target.
#[derive(Debug, Clone, PartialEq)]
pub struct ExploreOutcome {
    pub id: TargetId,
    pub result: Result<Load, ExploreError>,
    /// Scrape attempts made.
    pub attempts: u32,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExploreStats {
    /// Scrape attempts (each retry counts).
    pub attempts: u64,
    /// Explores that gave a load.
    pub succeeded: u64,
    /// Explores that failed after their attempts (a disabled job's
    /// explore is not counted).
    pub failed: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    timeouts: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    cfg: ExploreConfig,
    base_dir: PathBuf,
    permits: Semaphore,
    clients: Mutex<HashMap<String, (Arc<ScrapeConfig>, ScrapeClient)>>,
    counters: Counters,
}

/// Explores targets; cheap to clone (shared semaphore and counters).
#[derive(Clone, Debug)]
pub struct Explorer {
    inner: Arc<Inner>,
}

impl Explorer {
    /// `base_dir`: where relative `*_file` paths of the jobs resolve (the
    /// config file's directory).
    pub fn new(
        cfg: ExploreConfig,
        base_dir: impl Into<PathBuf>,
    ) -> Result<Self, ExploreConfigError> {
        if cfg.max_concurrency == 0 {
            return Err(ExploreConfigError::ZeroConcurrency);
        }
        if cfg.max_attempts == 0 {
            return Err(ExploreConfigError::ZeroAttempts);
        }
        if cfg.timeout.is_zero() {
            return Err(ExploreConfigError::ZeroTimeout);
        }
        Ok(Explorer {
            inner: Arc::new(Inner {
                permits: Semaphore::new(cfg.max_concurrency),
                cfg,
                base_dir: base_dir.into(),
                clients: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        })
    }

    pub fn config(&self) -> &ExploreConfig {
        &self.inner.cfg
    }

    /// Whether targets of `job` are explored.
    pub fn enabled_for(&self, job: &str) -> bool {
        self.inner.cfg.enabled_for(job)
    }

    pub fn stats(&self) -> ExploreStats {
        let c = &self.inner.counters;
        ExploreStats {
            attempts: c.attempts.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
        }
    }

    /// The job's scrape client, built once per job config.
    fn client(&self, job: &Arc<ScrapeConfig>) -> Result<ScrapeClient, ExploreError> {
        let mut clients = crate::util::lock(&self.inner.clients);
        if let Some((cfg, client)) = clients.get(&job.job_name)
            && (Arc::ptr_eq(cfg, job) || cfg.as_ref() == job.as_ref())
        {
            return Ok(client.clone());
        }
        let limit = match (job.body_size_limit_bytes(), self.inner.cfg.max_body_bytes) {
            (0, cap) | (cap, 0) => cap,
            (job_limit, cap) => job_limit.min(cap),
        };
        let client = ScrapeClient::from_http_config(&job.http, &self.inner.base_dir, limit)
            .map_err(|e| ExploreError::Client {
                job: job.job_name.clone(),
                reason: error_chain(&e),
            })?;
        clients.insert(job.job_name.clone(), (Arc::clone(job), client.clone()));
        Ok(client)
    }

    /// Scrapes `target` (of job `job`) once, with retries, and counts its
    /// series. Never panics on what the target sends.
    pub async fn explore(
        &self,
        target: &RegisteredTarget,
        job: &Arc<ScrapeConfig>,
    ) -> ExploreOutcome {
        let (result, attempts) = self.run(target, job).await;
        let c = &self.inner.counters;
        match &result {
            Ok(load) => {
                c.succeeded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %target.job, id = target.id, series = load.series, attempts,
                    "target explored");
            }
            Err(ExploreError::Disabled { .. }) => {}
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %target.job, id = target.id, error = %e, "explore failed");
            }
        }
        ExploreOutcome {
            id: target.id,
            result,
            attempts,
        }
    }

    /// Explores every `(target, job config)` pair concurrently (within the
    /// concurrency bound); outcomes in completion order. Must be called
    /// inside a tokio runtime.
    pub async fn explore_many(
        &self,
        targets: impl IntoIterator<Item = (RegisteredTarget, Arc<ScrapeConfig>)>,
    ) -> Vec<ExploreOutcome> {
        let mut tasks = tokio::task::JoinSet::new();
        for (target, job) in targets {
            let ex = self.clone();
            tasks.spawn(async move { ex.explore(&target, &job).await });
        }
        let mut out = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => out.push(outcome),
                // A panic inside one explore (a bug) must not lose the others.
                Err(e) => tracing::error!(error = %e, "explore task failed"),
            }
        }
        out
    }

    async fn run(
        &self,
        target: &RegisteredTarget,
        job: &Arc<ScrapeConfig>,
    ) -> (Result<Load, ExploreError>, u32) {
        let cfg = &self.inner.cfg;
        if !cfg.enabled_for(&target.job) {
            return (
                Err(ExploreError::Disabled {
                    job: target.job.clone(),
                }),
                0,
            );
        }
        let client = match self.client(job) {
            Ok(c) => c,
            Err(e) => return (Err(e), 0),
        };
        let t = target.to_target();
        let url = t.url(job);
        let interval = t.interval().unwrap_or_else(|| job.interval());
        let timeout = t
            .timeout()
            .map_or(cfg.timeout, |d| d.to_std().min(cfg.timeout))
            .max(Duration::from_millis(1));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let scraped = {
                // The semaphore is never closed, so acquire cannot fail;
                // if it did, scraping without a permit beats panicking.
                let _permit = self.inner.permits.acquire().await.ok();
                self.inner.counters.attempts.fetch_add(1, Ordering::Relaxed);
                client.scrape(&url, timeout).await
            };
            match scraped {
                Ok(resp) => {
                    let format = Format::from_content_type(&resp.content_type);
                    let result = count_series(&resp.body, format, target, job).map(|n| Load {
                        series: n,
                        samples_per_second: n as f64 / interval.as_secs_f64().max(0.001),
                    });
                    let result = result.map_err(|(line, message)| ExploreError::Parse {
                        url: promshard_promlib::scrape::redact_url(&url),
                        line,
                        message,
                    });
                    return (result, attempt);
                }
                Err(e) => {
                    if matches!(e, ScrapeError::Timeout { .. }) {
                        self.inner.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    if attempt >= cfg.max_attempts || !retryable(&e) {
                        return (
                            Err(ExploreError::Scrape {
                                url: e.url().to_string(),
                                reason: e.to_string(),
                                attempts: attempt,
                            }),
                            attempt,
                        );
                    }
                    tracing::debug!(id = target.id, attempt, error = %e, "explore attempt failed; retrying");
                    tokio::time::sleep(cfg.backoff(attempt)).await;
                }
            }
        }
    }
}

/// Whether another attempt can succeed.
fn retryable(e: &ScrapeError) -> bool {
    match e {
        ScrapeError::Timeout { .. } | ScrapeError::Request { .. } | ScrapeError::OAuth2 { .. } => {
            true
        }
        ScrapeError::Status { code, .. } => *code >= 500 || *code == 429,
        ScrapeError::InvalidUrl { .. }
        | ScrapeError::CredentialsFile { .. }
        | ScrapeError::BodySizeLimit { .. } => false,
    }
}

/// Samples in `body` that survive the job's metric relabeling. `Err`:
/// the first parse error (line, message).
fn count_series(
    body: &[u8],
    format: Format,
    target: &RegisteredTarget,
    job: &ScrapeConfig,
) -> Result<u64, (usize, String)> {
    let relabel_rules = &job.metric_relabel_configs;
    let target_labels = if relabel_rules.is_empty() {
        Labels::new()
    } else {
        target.labels.public()
    };
    let mut n = 0u64;
    for entry in Parser::new(body, format) {
        let entry = entry.map_err(|e| (e.line, e.message))?;
        let Entry::Series(s) = entry else { continue };
        if relabel_rules.is_empty() {
            n += 1;
            continue;
        }
        let labels = with_target_labels(s.to_labels(), &target_labels, job.honor_labels);
        if relabel::process(&labels, relabel_rules).is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// A sample's labels with the target's labels attached, as the scrape
/// loop does (see the module docs for the simplification).
fn with_target_labels(mut scraped: Labels, target: &Labels, honor: bool) -> Labels {
    for l in target {
        match scraped.get(&l.name) {
            None | Some("") => scraped.insert(l.name.clone(), l.value.clone()),
            Some(_) if honor => {}
            Some(v) => {
                let v = v.to_string();
                scraped.insert(format!("exported_{}", l.name), v);
                scraped.insert(l.name.clone(), l.value.clone());
            }
        }
    }
    scraped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = ExploreConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..ExploreConfig::default()
        };
        assert_eq!(cfg.backoff(1), Duration::from_millis(100));
        assert_eq!(cfg.backoff(2), Duration::from_millis(200));
        assert_eq!(cfg.backoff(3), Duration::from_millis(350));
        assert_eq!(cfg.backoff(100), Duration::from_millis(350));
    }

    #[test]
    fn target_labels_win_unless_honored() {
        let scraped = Labels::from_pairs([("__name__", "m"), ("job", "mine")]);
        let target = Labels::from_pairs([("job", "j"), ("instance", "h:1")]);
        let out = with_target_labels(scraped.clone(), &target, false);
        assert_eq!(out.get("job"), Some("j"));
        assert_eq!(out.get("exported_job"), Some("mine"));
        assert_eq!(out.get("instance"), Some("h:1"));
        let out = with_target_labels(scraped, &target, true);
        assert_eq!(out.get("job"), Some("mine"));
        assert_eq!(out.get("instance"), Some("h:1"));
    }

    #[test]
    fn zero_settings_are_rejected() {
        let bad = |c: ExploreConfig| Explorer::new(c, ".").unwrap_err();
        assert_eq!(
            bad(ExploreConfig {
                max_concurrency: 0,
                ..Default::default()
            }),
            ExploreConfigError::ZeroConcurrency
        );
        assert_eq!(
            bad(ExploreConfig {
                max_attempts: 0,
                ..Default::default()
            }),
            ExploreConfigError::ZeroAttempts
        );
    }
}
