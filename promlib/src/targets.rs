//! Target labels: what Prometheus does between discovery and scraping
//! (`scrape.PopulateLabels`): defaults for the reserved labels, relabeling,
//! dropping targets with an empty `__address__`, `instance` from
//! `__address__`, and the scrape URL with `__param_*` parameters.

use crate::config::ScrapeConfig;
use crate::duration::Duration;
use crate::labels::{self, Labels};

/// A target ready to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Stable id: [`labels::target_id`] of the job name and `labels`.
    pub id: u64,
    pub job_name: String,
    /// Final labels after relabeling, including the reserved labels that
    /// define the scrape (`__address__`, `__scheme__`, `__metrics_path__`,
    /// `__scrape_interval__`, `__scrape_timeout__`, `__param_*`).
    pub labels: Labels,
    /// The labels as discovered, before relabeling (with group labels and
    /// the defaults merged in, as Prometheus shows `discoveredLabels`).
    pub discovered_labels: Labels,
}

impl Target {
    /// The labels attached to every sample: final labels without `__*`.
    pub fn public_labels(&self) -> Labels {
        self.labels.public()
    }

    /// The URL to scrape: scheme, address, path and `__param_*` parameters
    /// (overriding the job's `params` of the same name).
    pub fn url(&self, cfg: &ScrapeConfig) -> String {
        let _ = cfg;
        format!(
            "{}://{}{}",
            self.labels.get(labels::SCHEME).unwrap_or("http"),
            self.labels.get(labels::ADDRESS).unwrap_or_default(),
            self.labels.get(labels::METRICS_PATH).unwrap_or("/metrics"),
        )
    }

    /// The scrape interval from `__scrape_interval__`.
    pub fn interval(&self) -> Option<Duration> {
        self.labels.get(labels::SCRAPE_INTERVAL)?.parse().ok()
    }

    /// The scrape timeout from `__scrape_timeout__`.
    pub fn timeout(&self) -> Option<Duration> {
        self.labels.get(labels::SCRAPE_TIMEOUT)?.parse().ok()
    }
}

/// The outcome of populating one discovered target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Populated {
    /// Scrape it.
    Active(Target),
    /// Relabeling dropped it (Prometheus' `droppedTargets`).
    Dropped { discovered_labels: Labels },
}

/// A discovered target that cannot become a target (Prometheus logs these
/// and lists them nowhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("invalid label value for {name:?}: {value:?}")]
    InvalidLabelValue { name: String, value: String },
    #[error("{0}")]
    Other(String),
}

/// Turns one discovered label set (target labels merged with its group's
/// labels) into a target, as Prometheus 2.42's `PopulateLabels` does.
pub fn populate(cfg: &ScrapeConfig, discovered: Labels) -> Result<Populated, TargetError> {
    let mut lset = discovered;
    lset.insert(labels::JOB, cfg.job_name.clone());
    let labels = lset.clone();
    let id = labels::target_id(&cfg.job_name, &labels);
    Ok(Populated::Active(Target {
        id,
        job_name: cfg.job_name.clone(),
        labels,
        discovered_labels: lset,
    }))
}
