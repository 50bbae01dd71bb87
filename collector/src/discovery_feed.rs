//! Standalone mode's target source: service discovery of the config
//! (static and file SD), relabeling, and the resulting target set handed to
//! the [`ScrapeManager`] whenever it changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::api::job_targets;
use promshard_promlib::config::Config;
use promshard_promlib::discovery::{Discoverer, DiscoveryError, TargetSets, Update};
use promshard_promlib::labels::Labels;
use promshard_promlib::scrape::error_chain;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::scrape::{ManagedTarget, ScrapeManager};

/// How long updates are collected before the target set is recomputed, so
/// that a burst (start, reload, many files changing) is applied once.
const SETTLE: Duration = Duration::from_millis(200);

/// Targets relabeling dropped (every job's, in config order), for
/// `/api/v1/targets`.
#[derive(Debug, Default)]
pub struct DroppedTargets {
    pub targets: Vec<Labels>,
}

/// A running discovery of one config version.
pub struct DiscoveryFeed {
    task: JoinHandle<()>,
}

impl DiscoveryFeed {
    /// Starts discovering `cfg`'s targets into `manager`. The first target
    /// set is applied once every job has been announced.
    pub fn start(
        cfg: Arc<Config>,
        manager: Arc<ScrapeManager>,
        dropped: Arc<Mutex<DroppedTargets>>,
    ) -> Result<DiscoveryFeed, DiscoveryError> {
        let discoverer = Discoverer::new(&cfg)?;
        let task = tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(256);
            let providers = tokio::spawn(discoverer.run(tx));
            feed(cfg, rx, manager, dropped).await;
            providers.abort();
        });
        Ok(DiscoveryFeed { task })
    }

    /// Stops discovering (the manager keeps its targets).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for DiscoveryFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn feed(
    cfg: Arc<Config>,
    mut rx: mpsc::Receiver<Update>,
    manager: Arc<ScrapeManager>,
    dropped: Arc<Mutex<DroppedTargets>>,
) {
    let mut sets = TargetSets::new();
    let mut announced = std::collections::HashSet::new();
    let jobs = cfg.scrape_configs.len();
    let mut started = false;
    while let Some(update) = rx.recv().await {
        announced.insert(update.job.clone());
        sets.apply(update);
        // Collect the rest of a burst.
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(u)) => {
                    announced.insert(u.job.clone());
                    sets.apply(u);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if !started && announced.len() < jobs {
            continue;
        }
        started = true;
        apply(&cfg, &sets, &manager, &dropped);
    }
}

fn apply(
    cfg: &Config,
    sets: &TargetSets,
    manager: &ScrapeManager,
    dropped: &Mutex<DroppedTargets>,
) {
    let mut targets = Vec::new();
    let mut dropped_targets = Vec::new();
    for sc in &cfg.scrape_configs {
        let jt = job_targets(sc, &sets.groups(&sc.job_name));
        for f in &jt.failures {
            tracing::warn!(
                job = %f.job,
                source = %f.source_name,
                index = f.index,
                error = %error_chain(&f.error),
                "creating target failed"
            );
        }
        let limit = sc.target_limit.unwrap_or(0);
        if limit > 0 && jt.active.len() as u64 > limit {
            tracing::error!(
                job = %sc.job_name,
                targets = jt.active.len(),
                limit,
                "target_limit exceeded: the job's targets are not scraped"
            );
            dropped_targets.extend(jt.dropped);
            continue;
        }
        targets.extend(jt.active.into_iter().map(|target| ManagedTarget {
            target,
            start_at_ms: None,
        }));
        dropped_targets.extend(jt.dropped);
    }
    tracing::debug!(targets = targets.len(), "target set changed");
    manager.set_targets(targets);
    if let Ok(mut d) = dropped.lock() {
        d.targets = dropped_targets;
    }
}
