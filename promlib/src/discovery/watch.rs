//! Continuous discovery: one task per provider; file_sd providers re-read
//! their files on file system events (`notify`) and every
//! `refresh_interval` as a fallback, like Prometheus' file discovery;
//! http_sd and dns_sd providers refresh every `refresh_interval` (the
//! first time at once) and send only the groups that changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{
    DiscoveryError, DiscoveryStats, DnsSd, FileSd, HttpSd, Resolver, TargetGroup, Update,
    dns_providers, file_providers, http_providers, static_groups,
};
use crate::config::Config;
use crate::duration::Duration;

/// How long to wait after a file event for the writer to finish before
/// re-reading (events come in bursts: truncate, write, close, rename).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs every job's providers of a config.
#[derive(Debug)]
pub struct Discoverer {
    statics: Vec<Update>,
    files: Vec<FileProvider>,
    refreshers: Vec<RefreshProvider>,
    stats: Arc<DiscoveryStats>,
}

/// An http_sd or dns_sd provider of one job.
#[derive(Debug)]
struct RefreshProvider {
    job: String,
    provider: String,
    sd: Refresher,
}

#[derive(Debug)]
enum Refresher {
    Http(Box<HttpSd>),
    Dns(DnsSd),
}

impl Refresher {
    fn mechanism(&self) -> &'static str {
        match self {
            Refresher::Http(_) => "http",
            Refresher::Dns(_) => "dns",
        }
    }

    fn interval(&self) -> std::time::Duration {
        match self {
            Refresher::Http(h) => h.refresh_interval(),
            Refresher::Dns(d) => d.refresh_interval(),
        }
    }

    /// One refresh: the groups to apply and the error messages.
    async fn refresh(&mut self, job: &str) -> (Vec<TargetGroup>, Vec<String>) {
        match self {
            Refresher::Http(h) => match h.refresh().await {
                Ok(g) => (g, Vec::new()),
                Err(e) => {
                    tracing::error!(job, error = %e, "http_sd: unable to refresh target groups, keeping the previous ones");
                    (Vec::new(), vec![e.to_string()])
                }
            },
            Refresher::Dns(d) => {
                let (g, errors) = d.refresh().await;
                (g, errors.iter().map(ToString::to_string).collect())
            }
        }
    }
}

#[derive(Debug)]
struct FileProvider {
    job: String,
    provider: String,
    patterns: Vec<String>,
    interval: Duration,
}

impl Discoverer {
    /// Validates the discovery configs of `cfg` (file_sd paths, http_sd
    /// clients, dns_sd types); DNS goes through the system resolver.
    pub fn new(cfg: &Config) -> Result<Self, DiscoveryError> {
        Self::with_resolver(cfg, Resolver::system())
    }

    /// As [`Discoverer::new`], with DNS discovery through `resolver`.
    pub fn with_resolver(cfg: &Config, resolver: Resolver) -> Result<Self, DiscoveryError> {
        let mut statics = Vec::new();
        let mut files = Vec::new();
        let mut refreshers = Vec::new();
        for sc in &cfg.scrape_configs {
            statics.push(Update {
                job: sc.job_name.clone(),
                provider: "static/0".to_string(),
                groups: static_groups(sc),
            });
            for (i, patterns, interval) in file_providers(sc)? {
                files.push(FileProvider {
                    job: sc.job_name.clone(),
                    provider: format!("file/{i}"),
                    patterns,
                    interval,
                });
            }
            for (i, sd) in http_providers(sc)? {
                refreshers.push(RefreshProvider {
                    job: sc.job_name.clone(),
                    provider: format!("http/{i}"),
                    sd: Refresher::Http(Box::new(sd)),
                });
            }
            for (i, sd) in dns_providers(sc, &resolver)? {
                refreshers.push(RefreshProvider {
                    job: sc.job_name.clone(),
                    provider: format!("dns/{i}"),
                    sd: Refresher::Dns(sd),
                });
            }
        }
        Ok(Discoverer {
            statics,
            files,
            refreshers,
            stats: Arc::new(DiscoveryStats::default()),
        })
    }

    /// The refresh counters of the http_sd and dns_sd providers; keep it
    /// before [`Discoverer::run`] consumes the discoverer.
    pub fn stats(&self) -> Arc<DiscoveryStats> {
        self.stats.clone()
    }

    /// Sends every job's static groups (one update per job, possibly with
    /// no groups, so that every job is announced), then keeps the file_sd,
    /// http_sd and dns_sd providers running. Returns when `tx`'s receiver
    /// is dropped.
    pub async fn run(self, tx: mpsc::Sender<Update>) {
        for u in self.statics {
            if tx.send(u).await.is_err() {
                return;
            }
        }
        let mut tasks = JoinSet::new();
        for p in self.files {
            tasks.spawn(run_file_provider(p, tx.clone()));
        }
        for p in self.refreshers {
            tasks.spawn(run_refresh_provider(p, tx.clone(), self.stats.clone()));
        }
        if tasks.is_empty() {
            tx.closed().await;
            return;
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// `path` made absolute against the working directory, without `.`
/// components (`./x.json` -> `/cwd/x.json`).
fn absolute(path: &str) -> PathBuf {
    let p = Path::new(path);
    let joined = match std::env::current_dir() {
        Ok(cwd) if p.is_relative() => cwd.join(p),
        _ => p.to_path_buf(),
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// Whether a file system event can change a file's content or existence.
fn is_relevant(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

async fn run_file_provider(p: FileProvider, tx: mpsc::Sender<Update>) {
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(1);
    // Unlike Prometheus (which re-reads on any event in the directory),
    // events for files no pattern matches are ignored, so that a busy
    // neighbour (a log file) does not cause a re-read storm.
    let matchers: Vec<glob::Pattern> = p
        .patterns
        .iter()
        .filter_map(|pat| glob::Pattern::new(&absolute(pat).to_string_lossy()).ok())
        .collect();
    let matches = move |ev: &notify::Event| {
        ev.paths.is_empty()
            || ev
                .paths
                .iter()
                .any(|path| matchers.iter().any(|m| m.matches_path(path)))
    };
    let watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if is_relevant(&ev.kind) && matches(&ev) => {
                // A full channel already holds a pending refresh.
                let _ = ev_tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file_sd: watch error"),
        });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "file_sd: cannot watch files, relying on refresh_interval");
            None
        }
    };
    let mut watched: BTreeSet<String> = BTreeSet::new();
    let mut fsd = FileSd::new(p.patterns.clone());
    let interval = std::time::Duration::from_secs_f64(p.interval.as_secs_f64().max(0.001));
    let mut first = true;
    loop {
        // Watch directories first so that a change during the read is seen.
        if let Some(w) = watcher.as_mut() {
            for dir in fsd.watch_dirs() {
                if watched.contains(&dir) {
                    continue;
                }
                // Events carry the watched path joined with the file name:
                // watch the absolute, normalized directory so that they
                // compare with the absolute patterns.
                match w.watch(&absolute(&dir), RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(dir);
                    }
                    Err(e) => {
                        tracing::debug!(dir = %dir, error = %e, "file_sd: cannot watch directory yet")
                    }
                }
            }
        }
        let (changed, _errors) = fsd.refresh();
        if first || !changed.is_empty() {
            first = false;
            let u = Update {
                job: p.job.clone(),
                provider: p.provider.clone(),
                groups: changed,
            };
            if tx.send(u).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            got = ev_rx.recv() => {
                if got.is_none() {
                    // The watcher is gone; fall back to the timer only.
                    watcher = None;
                }
                tokio::time::sleep(SETTLE).await;
                while ev_rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(interval) => {}
        }
        if watcher.is_none() {
            // Without a watcher, events never come: wait for the timer.
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Refreshes an http_sd or dns_sd provider every interval. The first
/// refresh is always sent (so the provider is known); later ones only when
/// a group changed. A failed refresh sends nothing: the previous groups
/// stay.
async fn run_refresh_provider(
    mut p: RefreshProvider,
    tx: mpsc::Sender<Update>,
    stats: Arc<DiscoveryStats>,
) {
    let interval = p.sd.interval();
    let mechanism = p.sd.mechanism();
    // What consumers have been sent, by source (empty groups removed).
    let mut sent: BTreeMap<String, TargetGroup> = BTreeMap::new();
    let mut first = true;
    // Refreshes start every interval (the first at once), like Go's
    // ticker in Prometheus' refresh discovery: a slow refresh delays the
    // next one, ticks are not made up for.
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = ticker.tick() => {}
        }
        let (groups, errors) = tokio::select! {
            _ = tx.closed() => return,
            r = p.sd.refresh(&p.job) => r,
        };
        stats.record(
            &p.job,
            &p.provider,
            mechanism,
            errors.len() as u64,
            errors.last().cloned(),
        );
        let mut changed = Vec::new();
        for g in groups {
            let differs = match sent.get(&g.source) {
                Some(prev) => prev != &g,
                None => !g.targets.is_empty(),
            };
            if !differs {
                continue;
            }
            if g.targets.is_empty() {
                sent.remove(&g.source);
            } else {
                sent.insert(g.source.clone(), g.clone());
            }
            changed.push(g);
        }
        if first || !changed.is_empty() {
            first = false;
            let u = Update {
                job: p.job.clone(),
                provider: p.provider.clone(),
                groups: changed,
            };
            if tx.send(u).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn watched_paths_are_absolute_and_normalized_as_events_report_them() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute("./"), cwd);
        assert_eq!(absolute("targets.json"), cwd.join("targets.json"));
        assert_eq!(absolute("./sd/./t.json"), cwd.join("sd").join("t.json"));
        assert_eq!(
            absolute("/etc/./sd.json"),
            std::path::PathBuf::from("/etc/sd.json")
        );
    }
}
