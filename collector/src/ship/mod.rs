//! Shipping the WAL to remote write: one WAL consumer per `remote_write`
//! entry feeds its [`RemoteWriteQueue`] and commits the consumer's
//! checkpoint up to what the queue delivered, so delivered segments are
//! deleted and undelivered ones are replayed after a restart.
//!
//! Per entry, a task reads the consumer's [`crate::wal::WalReader`],
//! groups consecutive records (series definitions, samples, metadata) into
//! one [`crate::series::AppendBatch`] of up to [`BATCH_SAMPLES`] samples,
//! and pushes it at the queue position of its last record
//! ([`position::encode`]: `segment << 40 | offset`). The queue starts with
//! `delivered_before` = the consumer's checkpoint, so after a restart
//! exactly the records after the checkpoint are sent; the Series records
//! the reader re-yields from the start of the checkpoint's segment are
//! pushed along with the first batch after the checkpoint (definitions
//! only, never samples). A committer writes the checkpoint as the queue's
//! delivered position advances (at most every [`COMMIT_EVERY`], and once
//! more when the shipper stops), which deletes delivered segments.
//!
//! Delivery is at least once: a crash between the receiver's
//! acknowledgement and the next checkpoint write re-sends up to
//! [`COMMIT_EVERY`] of data; a clean [`Shippers::shutdown`] or reload
//! commits exactly what was delivered.

mod position;
mod shipper;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::config::RemoteWriteConfig;
use promshard_promlib::scrape::redact_url;
use tokio::time::Instant;

use crate::remote::{QueueOptions, RemoteStats, RemoteWriteQueue};
use crate::wal::Wal;

pub use position::{OFFSET_BITS, decode as decode_position, encode as encode_position};
pub use shipper::{BATCH_SAMPLES, COMMIT_EVERY};

/// How long a remote that a reload changed or removed may take to deliver
/// what it already took from the WAL (the rest stays in the WAL).
pub const RELOAD_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("remote_write {remote:?}: {reason}")]
    Start { remote: String, reason: String },
}

/// One remote's state for `/metrics`.
#[derive(Clone, Debug)]
pub struct RemoteStatus {
    /// The queue name (`name`, or the redacted URL).
    pub name: String,
    /// The redacted URL.
    pub url: String,
    /// The WAL consumer name ([`consumer_name`]).
    pub consumer: String,
    pub stats: Arc<RemoteStats>,
    /// WAL bytes not yet delivered to this remote.
    pub backlog_bytes: u64,
    /// The highest delivered queue position ([`encode_position`] of a WAL
    /// position): everything at or before it was delivered or dropped.
    pub delivered_position: u64,
}

/// The WAL consumer name of a `remote_write` entry: `rw-` and the 64-bit
/// xxh3 hash (the workspace's stable hash) of its URL and name (hex),
/// stable across restarts, so a restarted or reconfigured entry resumes at
/// its checkpoint.
pub fn consumer_name(cfg: &RemoteWriteConfig) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(cfg.url.as_bytes());
    hasher.update(&[0]);
    hasher.update(cfg.name.as_bytes());
    let h = hasher.digest();
    format!("rw-{h:016x}")
}

struct Running {
    cfg: RemoteWriteConfig,
    base_dir: PathBuf,
    name: String,
    url: String,
    stats: Arc<RemoteStats>,
    delivered: tokio::sync::watch::Receiver<u64>,
    handle: shipper::Handle,
}

/// Every remote's shipper. Needs a Tokio runtime. Dropping it without
/// [`shutdown`](Self::shutdown) aborts the shippers (what they did not
/// commit is sent again after a restart).
pub struct Shippers {
    wal: Arc<Wal>,
    /// By consumer name.
    running: BTreeMap<String, Running>,
    published: StatusSource,
}

/// What `/metrics` needs of one running remote.
#[derive(Clone)]
struct Published {
    consumer: String,
    name: String,
    url: String,
    stats: Arc<RemoteStats>,
    delivered: tokio::sync::watch::Receiver<u64>,
}

/// A cheap, clonable view of the running remotes' statuses that does not
/// borrow the [`Shippers`] (so `/metrics` never waits for a reload).
#[derive(Clone)]
pub struct StatusSource {
    wal: Arc<Wal>,
    remotes: Arc<Mutex<Vec<Published>>>,
}

impl StatusSource {
    /// One status per running remote, in consumer-name order.
    pub fn statuses(&self) -> Vec<RemoteStatus> {
        let published = self
            .remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let wal = self.wal.stats();
        published
            .into_iter()
            .map(|p| RemoteStatus {
                backlog_bytes: wal
                    .consumers
                    .iter()
                    .find(|c| c.name == p.consumer)
                    .map_or(0, |c| c.backlog_bytes),
                delivered_position: *p.delivered.borrow(),
                name: p.name,
                url: p.url,
                consumer: p.consumer,
                stats: p.stats,
            })
            .collect()
    }
}

/// Consumer names of `remotes`, refusing two entries with one name.
fn names_of(remotes: &[RemoteWriteConfig]) -> Result<Vec<String>, ShipError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(remotes.len());
    for r in remotes {
        let n = consumer_name(r);
        if !seen.insert(n.clone()) {
            return Err(ShipError::Start {
                remote: display_name(r),
                reason: "two remote_write entries with the same url and name".to_string(),
            });
        }
        out.push(n);
    }
    Ok(out)
}

fn display_name(cfg: &RemoteWriteConfig) -> String {
    if cfg.name.is_empty() {
        redact_url(&cfg.url)
    } else {
        cfg.name.clone()
    }
}

/// Opens the consumer's reader and starts its queue at the checkpoint.
fn start_one(
    wal: &Arc<Wal>,
    consumer: &str,
    cfg: &RemoteWriteConfig,
    base_dir: &Path,
) -> Result<Running, ShipError> {
    let err = |reason: String| ShipError::Start {
        remote: display_name(cfg),
        reason,
    };
    let reader = wal
        .reader(consumer)
        .map_err(|e| err(format!("WAL consumer {consumer}: {e}")))?;
    let start = reader.start();
    let delivered_before = position::encode(start)
        .ok_or_else(|| err(format!("WAL checkpoint {start} out of range")))?;
    let queue = RemoteWriteQueue::start(
        cfg,
        base_dir,
        QueueOptions {
            delivered_before,
            ..QueueOptions::default()
        },
    )
    .map_err(|e| err(e.to_string()))?;
    tracing::info!(remote = %queue.name(), consumer, checkpoint = %start, "WAL shipper started");
    let name = queue.name().to_string();
    let stats = queue.stats();
    let delivered = queue.delivered();
    let handle = shipper::spawn(wal.clone(), consumer.to_string(), reader, queue);
    Ok(Running {
        cfg: cfg.clone(),
        base_dir: base_dir.to_path_buf(),
        name,
        url: redact_url(&cfg.url),
        stats,
        delivered,
        handle,
    })
}

/// Checks that `cfg` makes a queue (the same checks as a real start),
/// without touching the WAL.
fn probe(cfg: &RemoteWriteConfig, base_dir: &Path) -> Result<(), ShipError> {
    RemoteWriteQueue::start(cfg, base_dir, QueueOptions::default())
        .map(drop)
        .map_err(|e| ShipError::Start {
            remote: display_name(cfg),
            reason: e.to_string(),
        })
}

/// Tells the shippers to stop and waits; returns undelivered samples.
async fn stop_all(stopping: Vec<Running>, control: shipper::Control) -> u64 {
    for r in &stopping {
        r.handle.control.send_replace(control);
    }
    let mut undelivered = 0;
    for r in stopping {
        match r.handle.task.await {
            Ok(n) => undelivered += n,
            Err(e) => tracing::error!(remote = %r.name, error = %e, "WAL shipper task failed"),
        }
    }
    undelivered
}

impl Shippers {
    /// Starts one shipper per entry (consumer name: [`consumer_name`], so
    /// a restart resumes at its checkpoint) and drops WAL consumers of
    /// remotes no longer configured. On error, the shippers started so far
    /// are stopped (the consumer set stays as retained).
    pub fn start(
        wal: Arc<Wal>,
        remotes: &[RemoteWriteConfig],
        base_dir: &Path,
    ) -> Result<Shippers, ShipError> {
        let names = names_of(remotes)?;
        for cfg in remotes {
            probe(cfg, base_dir)?;
        }
        let keep: Vec<&str> = names.iter().map(String::as_str).collect();
        wal.retain_consumers(&keep).map_err(|e| ShipError::Start {
            remote: String::new(),
            reason: format!("retaining WAL consumers: {e}"),
        })?;
        let mut shippers = Shippers {
            published: StatusSource {
                wal: wal.clone(),
                remotes: Arc::default(),
            },
            wal,
            running: BTreeMap::new(),
        };
        for (cfg, name) in remotes.iter().zip(&names) {
            // On error, dropping `shippers` aborts what was started.
            let r = start_one(&shippers.wal, name, cfg, base_dir)?;
            shippers.running.insert(name.clone(), r);
        }
        shippers.publish();
        Ok(shippers)
    }

    /// Applies a reloaded `remote_write` list: unchanged entries keep
    /// running, changed or removed ones stop (their undelivered data stays
    /// in the WAL for the new entry with the same consumer name), new ones
    /// start. On error nothing changes (every new config is checked before
    /// anything stops; a failure to start after that, such as a file that
    /// vanished in between, is returned and the entry is left stopped).
    pub async fn reload(
        &mut self,
        remotes: &[RemoteWriteConfig],
        base_dir: &Path,
    ) -> Result<(), ShipError> {
        let names = names_of(remotes)?;
        let unchanged = |name: &str, cfg: &RemoteWriteConfig| {
            self.running
                .get(name)
                .is_some_and(|r| r.cfg == *cfg && r.base_dir == base_dir)
        };
        let to_start: Vec<(&RemoteWriteConfig, &String)> = remotes
            .iter()
            .zip(&names)
            .filter(|(cfg, name)| !unchanged(name, cfg))
            .collect();
        for (cfg, _) in &to_start {
            probe(cfg, base_dir)?;
        }
        // Stop the changed and the removed ones.
        let stop: Vec<String> = self
            .running
            .keys()
            .filter(|k| !names.contains(k) || to_start.iter().any(|(_, n)| *n == *k))
            .cloned()
            .collect();
        let stopping: Vec<Running> = stop.iter().filter_map(|k| self.running.remove(k)).collect();
        for r in &stopping {
            tracing::info!(remote = %r.name, "remote_write entry changed or removed; stopping its shipper");
        }
        self.publish();
        stop_all(
            stopping,
            shipper::Control::Stop {
                grace: RELOAD_GRACE,
            },
        )
        .await;
        let keep: Vec<&str> = names.iter().map(String::as_str).collect();
        self.wal
            .retain_consumers(&keep)
            .map_err(|e| ShipError::Start {
                remote: String::new(),
                reason: format!("retaining WAL consumers: {e}"),
            })?;
        let mut first_err = None;
        for (cfg, name) in to_start {
            match start_one(&self.wal, name, cfg, base_dir) {
                Ok(r) => {
                    self.running.insert(name.clone(), r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start remote_write shipper after reload");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.publish();
        first_err.map_or(Ok(()), Err)
    }

    /// One status per running remote, in consumer-name order.
    pub fn statuses(&self) -> Vec<RemoteStatus> {
        self.published.statuses()
    }

    /// A view of [`statuses`](Self::statuses) that stays current across
    /// reloads, for the HTTP API.
    pub fn status_source(&self) -> StatusSource {
        self.published.clone()
    }

    fn publish(&self) {
        let list = self
            .running
            .iter()
            .map(|(consumer, r)| Published {
                consumer: consumer.clone(),
                name: r.name.clone(),
                url: r.url.clone(),
                stats: r.stats.clone(),
                delivered: r.delivered.clone(),
            })
            .collect();
        *self
            .published
            .remotes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// Delivers what the WAL holds within `grace`, then stops: each
    /// shipper reads up to the WAL's head as of this call (appends after it
    /// are left for the next start), then its queue delivers what it took
    /// until the grace ends. Returns the samples left undelivered (they
    /// stay in the WAL): those the queues held and those read but not
    /// pushed; samples never read (the grace ended first) are not counted.
    pub async fn shutdown(mut self, grace: Duration) -> u64 {
        let control = shipper::Control::Drain {
            until: self.wal.head(),
            deadline: Instant::now() + grace,
        };
        let stopping: Vec<Running> = std::mem::take(&mut self.running).into_values().collect();
        self.publish();
        stop_all(stopping, control).await
    }
}

impl Drop for Shippers {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.handle.task.abort();
        }
    }
}
