//! The compiled state of one scrape job, shared by all its loops.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promshard_promlib::config::ScrapeConfig;
use promshard_promlib::labels::Labels;
use promshard_promlib::scrape::{ScrapeClient, error_chain};
use promshard_promlib::targets::Target;

use crate::pipeline::JobSettings;

/// A job's scrape config compiled once per config version: the HTTP
/// client, the pipeline settings and the schedule defaults.
#[derive(Debug)]
pub(crate) struct JobState {
    /// The config it was compiled from (to detect changes and build URLs).
    pub cfg: ScrapeConfig,
    /// The external labels it was compiled with (part of the settings).
    pub external_labels: Labels,
    pub client: ScrapeClient,
    pub settings: Arc<JobSettings>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl JobState {
    /// Compiles `cfg`; the error says why the client cannot be built.
    pub fn compile(
        cfg: &ScrapeConfig,
        external_labels: &Labels,
        base_dir: &Path,
    ) -> Result<JobState, String> {
        let client = ScrapeClient::new(cfg, base_dir).map_err(|e| error_chain(&e))?;
        let interval = cfg.interval().to_std();
        if interval.is_zero() {
            return Err("scrape_interval must be greater than 0".to_string());
        }
        Ok(JobState {
            cfg: cfg.clone(),
            external_labels: external_labels.clone(),
            client,
            settings: Arc::new(JobSettings::new(cfg, external_labels)),
            interval,
            timeout: cfg.timeout().to_std(),
        })
    }

    /// Whether compiling `cfg` with `external_labels` would give this state.
    pub fn same_as(&self, cfg: &ScrapeConfig, external_labels: &Labels) -> bool {
        self.cfg == *cfg && self.external_labels == *external_labels
    }

    /// The schedule of `target` under this job: its `__scrape_interval__`
    /// and `__scrape_timeout__` labels, else the job's; the timeout is
    /// capped at the interval so one scrape never spans more than one slot
    /// of its own.
    pub fn schedule_of(&self, target: &Target) -> (Duration, Duration) {
        let interval = target
            .interval()
            .map(|d| d.to_std())
            .filter(|d| !d.is_zero())
            .unwrap_or(self.interval);
        let timeout = target
            .timeout()
            .map(|d| d.to_std())
            .filter(|d| !d.is_zero())
            .unwrap_or(self.timeout)
            .min(interval);
        (interval, timeout)
    }
}
