//! [`RemoteWriteQueue`]: the queue of one `remote_write` entry — input,
//! write relabeling, routing to shards, resharding, metadata, shutdown.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::config::RemoteWriteConfig;
use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::{self, RelabelConfig};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::encode::{self, EncodedSeries, QueuedSample};
use super::error::RemoteError;
use super::pairs::{PairInterner, PooledIds};
use super::send::{Backoff, Endpoint, Outcome, cancelled, send_with_retry};
use super::shard::{self, ShardContext};
use super::stats::{DropReason, RemoteStats};
use super::tracker::Tracker;
use crate::refmap::RefTable;
use crate::series::{AppendBatch, Metadata, SeriesRef};
use crate::ship::OFFSET_BITS;

/// How often the shard count is reconsidered by default.
pub const DEFAULT_RESHARD_INTERVAL: Duration = Duration::from_secs(10);

/// Settings that are not in `remote_write`.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// The delivered position before any input; every pushed position
    /// must be greater.
    pub delivered_before: u64,
    /// How often the shard count is reconsidered (see
    /// [`RemoteWriteQueue`]).
    pub reshard_interval: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            delivered_before: 0,
            reshard_interval: DEFAULT_RESHARD_INTERVAL,
        }
    }
}

/// What [`RemoteWriteQueue::shutdown`] could not deliver in its grace
/// period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// Samples taken as input and neither acknowledged nor dropped.
    pub samples: u64,
    /// The delivered position at the end: input after it must be sent
    /// again (e.g. replayed from the WAL) after a restart.
    pub delivered_position: u64,
}

/// The sender of one `remote_write` entry.
///
/// Input: [`push`](Self::push) `(position, AppendBatch)` in increasing
/// position order (one producer). A batch's series definitions pass
/// through `write_relabel_configs` once (the ref -> labels map keeps the
/// result); samples of a dropped or unknown series are dropped and
/// counted. Each sample goes to shard `hash(ref) % shards`, so the order
/// of a series is kept.
///
/// Output: [`delivered`](Self::delivered) watches the highest position at
/// or before which every sample was acknowledged (2xx) or dropped by
/// policy (relabeling, a 4xx other than 429).
///
/// Memory is bounded: each shard holds at most `capacity` queued samples
/// plus one batch; when a shard is full, `push` waits (backpressure).
///
/// Shards: start at `min_shards`; every `reshard_interval`, when no shard
/// is retrying and more than one full batch per shard is pending, the
/// count doubles (up to `max_shards`); when less than a quarter batch per
/// shard is pending, it halves (down to `min_shards`). On a reshard each
/// old shard finishes the batch it is sending and hands back its queue,
/// which is routed to the new shards before newer input, so the order of
/// a series is kept.
///
/// Needs a Tokio runtime: tasks are spawned on [`start`](Self::start).
#[derive(Debug)]
pub struct RemoteWriteQueue {
    name: String,
    input: Option<mpsc::Sender<Input>>,
    /// Whether `write_relabel_configs` is not empty.
    relabels: bool,
    last_position: u64,
    delivered: watch::Receiver<u64>,
    stats: Arc<RemoteStats>,
    cancel: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    metadata_task: Option<JoinHandle<()>>,
}

impl RemoteWriteQueue {
    /// Starts the queue of `cfg`; relative `*_file` paths are resolved
    /// against `base_dir`.
    pub fn start(
        cfg: &RemoteWriteConfig,
        base_dir: &Path,
        options: QueueOptions,
    ) -> Result<Self, RemoteError> {
        let name = if cfg.name.is_empty() {
            promshard_promlib::scrape::redact_url(&cfg.url)
        } else {
            cfg.name.clone()
        };
        let q = &cfg.queue_config;
        let bad = |reason: &str| RemoteError::QueueConfig {
            remote: name.clone(),
            reason: reason.to_string(),
        };
        if q.min_shards == 0 || q.max_shards < q.min_shards {
            return Err(bad("need 1 <= min_shards <= max_shards"));
        }
        if q.capacity == 0 || q.max_samples_per_send == 0 {
            return Err(bad("capacity and max_samples_per_send must be positive"));
        }
        // Unsigned requests to a SigV4 endpoint would be rejected (403)
        // and dropped: refuse rather than lose data.
        if cfg.sigv4.is_some() {
            return Err(RemoteError::Unsupported {
                remote: name.clone(),
                what: "sigv4",
            });
        }
        let endpoint = Endpoint::new(cfg, &name, base_dir)?;
        let stats = Arc::new(RemoteStats::new());
        let (delivered_tx, delivered) = watch::channel(options.delivered_before);
        let (cancel, cancel_rx) = watch::channel(false);
        let ctx = Arc::new(ShardContext {
            endpoint,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: std_duration(q.batch_send_deadline),
            backoff: Backoff {
                min: std_duration(q.min_backoff),
                max: std_duration(q.max_backoff),
            },
            stats: stats.clone(),
            tracker: Arc::new(Mutex::new(Tracker::new(delivered_tx))),
        });
        let metadata = Arc::new(Mutex::new(BTreeMap::new()));
        let metadata_task = cfg.metadata_config.send.then(|| {
            tokio::spawn(run_metadata(
                ctx.clone(),
                metadata.clone(),
                std_duration(cfg.metadata_config.send_interval),
                cfg.metadata_config.max_samples_per_send,
                cancel_rx.clone(),
            ))
        });
        let relabels = !cfg.write_relabel_configs.is_empty();
        let (input_tx, input_rx) = mpsc::channel(1);
        // Chunks of at most a batch, and never more than a shard's room.
        let capacity = q.capacity.min(Semaphore::MAX_PERMITS);
        let chunk = capacity.min(q.max_samples_per_send).clamp(1, MAX_CHUNK);
        let dispatcher = Dispatcher {
            ctx,
            rules: cfg.write_relabel_configs.clone(),
            refs: RefTable::default(),
            segment: 0,
            pairs: PairInterner::default(),
            pairs_renewed: 0,
            held: Vec::new(),
            scratch: Vec::new(),
            metadata,
            shards: Vec::new(),
            capacity,
            chunk,
            min_shards: q.min_shards,
            max_shards: q.max_shards,
            cancel: cancel_rx,
            name: name.clone(),
        };
        let dispatcher = tokio::spawn(dispatcher.run(input_rx, options.reshard_interval));
        Ok(RemoteWriteQueue {
            name,
            input: Some(input_tx),
            relabels,
            last_position: options.delivered_before,
            delivered,
            stats,
            cancel,
            dispatcher,
            metadata_task,
        })
    }

    /// The remote's name (`name`, or the redacted URL).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues the batch appended at `position` (greater than every earlier
    /// one). Waits while the shards are full.
    pub async fn push(&mut self, position: u64, batch: AppendBatch) -> Result<(), RemoteError> {
        self.push_encoded(position, batch, EncodedSeries::default())
            .await
    }

    /// Whether series definitions must come as [`Labels`] (in an
    /// [`AppendBatch`]) for `write_relabel_configs`; when not, they may
    /// come already encoded ([`push_encoded`](Self::push_encoded)), which
    /// is cheaper.
    pub fn wants_labels(&self) -> bool {
        self.relabels
    }

    /// [`push`](Self::push) with more series definitions whose labels are
    /// already encoded; they take effect after `batch.series`. Meant for
    /// when [`wants_labels`](Self::wants_labels) is false; otherwise they
    /// are decoded again for relabeling.
    pub async fn push_encoded(
        &mut self,
        position: u64,
        batch: AppendBatch,
        encoded: EncodedSeries,
    ) -> Result<(), RemoteError> {
        if position <= self.last_position {
            return Err(RemoteError::PositionOrder {
                remote: self.name.clone(),
                position,
                last: self.last_position,
            });
        }
        let closed = || RemoteError::Closed {
            remote: self.name.clone(),
        };
        let input = self.input.as_ref().ok_or_else(closed)?;
        // Reserve first: if this future is dropped while waiting, nothing
        // was taken and nothing is counted.
        let permit = input.reserve().await.map_err(|_| closed())?;
        self.stats
            .pending_samples
            .fetch_add(batch.samples.len() as u64, Relaxed);
        permit.send(Input {
            position,
            batch,
            encoded,
        });
        self.last_position = position;
        Ok(())
    }

    /// The delivered position (see the type's docs).
    pub fn delivered(&self) -> watch::Receiver<u64> {
        self.delivered.clone()
    }

    /// The counters of this remote.
    pub fn stats(&self) -> Arc<RemoteStats> {
        self.stats.clone()
    }

    /// Stops taking input and delivers what is queued, for at most
    /// `grace`; then abandons the rest (retries included) and says how
    /// much that was.
    pub async fn shutdown(mut self, grace: Duration) -> Undelivered {
        self.input = None;
        if let Some(m) = self.metadata_task.take() {
            m.abort();
        }
        if tokio::time::timeout(grace, &mut self.dispatcher)
            .await
            .is_err()
        {
            self.cancel.send_replace(true);
            // Cancelled tasks return at their next await point.
            if tokio::time::timeout(Duration::from_secs(5), &mut self.dispatcher)
                .await
                .is_err()
            {
                self.dispatcher.abort();
            }
        }
        let u = Undelivered {
            samples: self.stats.pending_samples.load(Relaxed),
            delivered_position: *self.delivered.borrow(),
        };
        tracing::info!(remote = %self.name, undelivered = u.samples, delivered = u.delivered_position, "remote write queue stopped");
        u
    }
}

impl Drop for RemoteWriteQueue {
    fn drop(&mut self) {
        // Without a shutdown, stop the tasks rather than retry forever.
        self.cancel.send_replace(true);
        if let Some(m) = self.metadata_task.take() {
            m.abort();
        }
    }
}

/// The largest chunk of samples routed to a shard in one message.
const MAX_CHUNK: usize = 4096;

/// One input of the dispatcher.
#[derive(Debug)]
struct Input {
    position: u64,
    batch: AppendBatch,
    encoded: EncodedSeries,
}

struct ShardHandle {
    tx: mpsc::UnboundedSender<Vec<QueuedSample>>,
    /// One permit per sample the shard can still take (its capacity);
    /// taken by the dispatcher per chunk, given back by the shard as it
    /// moves samples into its batch.
    room: Arc<Semaphore>,
    handback: oneshot::Sender<()>,
    task: JoinHandle<shard::Handback>,
}

/// Routes input to the shards; owns the ref -> labels map (labels after
/// write relabeling, protobuf-encoded once per definition), each entry
/// tagged with the WAL segment of its last definition.
///
/// Every WAL segment defines the series its samples use, so when input
/// reaches segment S, refs last defined before S - 1 are forgotten (their
/// queued samples keep their own labels): the map holds the series of
/// about two segments, however many series churned before.
struct Dispatcher {
    ctx: Arc<ShardContext>,
    rules: Vec<RelabelConfig>,
    refs: RefTable<(u32, Result<PooledIds, DropReason>)>,
    /// The WAL segment of the latest input.
    segment: u32,
    /// The labels' interned pairs.
    pairs: PairInterner,
    /// Pairs interned right after the last renewal.
    pairs_renewed: usize,
    /// Reused to compare a repeated definition with the one held.
    held: Vec<u8>,
    /// Reused to encode labels.
    scratch: Vec<u8>,
    metadata: Arc<Mutex<BTreeMap<String, Metadata>>>,
    shards: Vec<ShardHandle>,
    capacity: usize,
    /// Samples per message to a shard (at most `capacity`).
    chunk: usize,
    min_shards: usize,
    max_shards: usize,
    cancel: watch::Receiver<bool>,
    name: String,
}

impl Dispatcher {
    async fn run(mut self, mut input: mpsc::Receiver<Input>, reshard: Duration) {
        self.spawn_shards(self.min_shards);
        let reshard = reshard.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(Instant::now() + reshard, reshard);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cancel = self.cancel.clone();
        loop {
            tokio::select! {
                biased;
                _ = cancelled(&mut cancel) => return,
                item = input.recv() => match item {
                    Some(Input { position, batch, encoded }) => {
                        if !self.dispatch(position, batch, encoded).await {
                            return;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.maybe_reshard().await;
                    // A reshard can take a while; judge again a full
                    // interval after it.
                    tick.reset();
                }
            }
        }
        self.stop_shards().await;
    }

    fn spawn_shards(&mut self, n: usize) {
        for _ in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let room = Arc::new(Semaphore::new(self.capacity));
            let (handback, handback_rx) = oneshot::channel();
            let task = tokio::spawn(shard::run(
                self.ctx.clone(),
                rx,
                room.clone(),
                self.cancel.clone(),
                handback_rx,
            ));
            self.shards.push(ShardHandle {
                tx,
                room,
                handback,
                task,
            });
        }
        self.ctx.stats.current_shards.store(n as u64, Relaxed);
    }

    /// Closes the shards' inputs and waits until they have sent what they
    /// hold (or are cancelled).
    async fn stop_shards(&mut self) {
        let shards = std::mem::take(&mut self.shards);
        let mut tasks = Vec::with_capacity(shards.len());
        for ShardHandle { tx, task, .. } in shards {
            drop(tx);
            tasks.push(task);
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Takes back what the shards have not sent (each first finishes the
    /// batch it is sending), in order per shard. None when cancelled.
    async fn take_back(&mut self) -> Option<Vec<QueuedSample>> {
        let shards = std::mem::take(&mut self.shards);
        let mut tasks = Vec::with_capacity(shards.len());
        for ShardHandle {
            tx, handback, task, ..
        } in shards
        {
            let _ = handback.send(());
            drop(tx);
            tasks.push(task);
        }
        let mut back = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Some((batch, mut rx))) => {
                    back.extend(batch);
                    while let Ok(chunk) = rx.try_recv() {
                        back.extend(chunk);
                    }
                }
                // Input closed without a handback cannot happen here (we
                // hold the only sender until now); cancelled or panicked.
                Ok(None) | Err(_) => return None,
            }
        }
        Some(back)
    }

    async fn maybe_reshard(&mut self) {
        let stats = &self.ctx.stats;
        let current = self.shards.len();
        if stats.retrying_shards.load(Relaxed) > 0 {
            return;
        }
        let pending = stats.pending_samples.load(Relaxed) as usize;
        let per_batch = self.ctx.max_samples_per_send;
        let desired = if pending > per_batch.saturating_mul(current) {
            (current * 2).min(self.max_shards)
        } else if pending.saturating_mul(4) < per_batch.saturating_mul(current) {
            (current / 2).max(self.min_shards)
        } else {
            current
        };
        if desired != current {
            tracing::info!(remote = %self.name, from = current, to = desired, pending, "resharding");
            let Some(back) = self.take_back().await else {
                return;
            };
            self.spawn_shards(desired);
            // A series' queued samples all came from one old shard, in
            // order; they go to its new shard before any newer input.
            self.route(back).await;
        }
    }

    /// False when cancelled.
    async fn dispatch(
        &mut self,
        position: u64,
        batch: AppendBatch,
        encoded: EncodedSeries,
    ) -> bool {
        let segment = u32::try_from(position >> OFFSET_BITS).unwrap_or(u32::MAX);
        if segment > self.segment {
            let floor = segment - 1;
            self.refs.retain(|(s, _)| *s >= floor);
            self.segment = segment;
            self.maybe_renew_pairs();
        }
        for def in &batch.series {
            let labels = match relabel(&self.rules, &def.labels, &mut self.scratch) {
                Err(reason) => Err(reason),
                Ok(()) => match self.refs.get_mut(def.series) {
                    // A definition repeated (as each WAL segment repeats
                    // them) keeps the labels its queued samples share.
                    Some((s, Ok(old)))
                        if self.pairs.encodes_as(old, &self.scratch, &mut self.held) =>
                    {
                        *s = segment;
                        continue;
                    }
                    _ => intern(&mut self.pairs, &self.scratch),
                },
            };
            self.refs.insert(def.series, (segment, labels));
        }
        for (series, wire) in encoded.iter() {
            let labels = match wire {
                None => Err(DropReason::NoMetricName),
                Some(wire) if !self.rules.is_empty() => {
                    match decode_labels(wire) {
                        Some(labels) => relabel(&self.rules, &labels, &mut self.scratch)
                            .and_then(|()| intern(&mut self.pairs, &self.scratch)),
                        // Cannot happen: the bytes are our own encoding.
                        None => Err(DropReason::NoMetricName),
                    }
                }
                Some(wire) => match self.refs.get_mut(series) {
                    Some((s, Ok(old))) if self.pairs.encodes_as(old, wire, &mut self.held) => {
                        *s = segment;
                        continue;
                    }
                    _ => intern(&mut self.pairs, wire),
                },
            };
            self.refs.insert(series, (segment, labels));
        }
        if !batch.metadata.is_empty() {
            let mut m = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
            for md in batch.metadata {
                m.insert(md.metric_family_name.clone(), md);
            }
        }
        let stats = self.ctx.stats.clone();
        let mut routed = Vec::with_capacity(batch.samples.len());
        for s in &batch.samples {
            match self.refs.get(s.series).map(|(_, l)| l) {
                Some(Ok(ids)) => routed.push(QueuedSample {
                    position,
                    series: s.series,
                    labels: self.pairs.labels(ids),
                    timestamp_ms: s.timestamp_ms,
                    value: s.value,
                }),
                Some(Err(reason)) => {
                    stats.add_dropped(*reason, 1);
                    stats.sub_pending(1);
                }
                None => {
                    stats.add_dropped(DropReason::UnknownSeries, 1);
                    stats.sub_pending(1);
                }
            }
        }
        self.ctx
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(position, routed.len());
        self.route(routed).await
    }

    /// Starts a new set of interned pairs when most of the current one is
    /// no longer used (label values that churned): at most twice the pairs
    /// of the last renewal, and at least 4096, are kept.
    fn maybe_renew_pairs(&mut self) {
        const MIN_PAIRS: usize = 4096;
        let pairs = self.pairs.len();
        if pairs <= MIN_PAIRS || pairs <= 2 * self.pairs_renewed {
            return;
        }
        let old = self.pairs.renew();
        let (interner, held) = (&mut self.pairs, &mut self.held);
        self.refs.for_each_mut(|(_, labels)| {
            if let Ok(ids) = labels {
                interner.reintern(&old, ids, held);
            }
        });
        self.pairs_renewed = self.pairs.len();
        tracing::debug!(remote = %self.name, before = pairs, after = self.pairs_renewed, "renewed interned label pairs");
    }

    /// Sends samples to their shards (in chunks, in order per shard),
    /// waiting while a shard is full. False when cancelled.
    async fn route(&mut self, samples: Vec<QueuedSample>) -> bool {
        let n = self.shards.len();
        if n == 0 {
            return samples.is_empty();
        }
        let mut buckets: Vec<Vec<QueuedSample>> = (0..n).map(|_| Vec::new()).collect();
        for s in samples {
            buckets[(shard_hash(s.series) % n as u64) as usize].push(s);
        }
        let mut cancel = self.cancel.clone();
        for (shard, mut bucket) in self.shards.iter().zip(buckets) {
            while !bucket.is_empty() {
                let rest = if bucket.len() > self.chunk {
                    bucket.split_off(self.chunk)
                } else {
                    Vec::new()
                };
                // chunk <= MAX_CHUNK: fits a u32.
                let permits = bucket.len() as u32;
                tokio::select! {
                    biased;
                    _ = cancelled(&mut cancel) => return false,
                    // A shard only ends early when cancelled.
                    _ = shard.tx.closed() => return false,
                    p = shard.room.acquire_many(permits) => match p {
                        Ok(p) => p.forget(),
                        Err(_) => return false,
                    },
                }
                if shard.tx.send(bucket).is_err() {
                    return false;
                }
                bucket = rest;
            }
        }
        true
    }
}

/// Labels back from their remote write encoding.
/// Interns `wire` (our own encoding, so it always parses).
fn intern(pairs: &mut PairInterner, wire: &[u8]) -> Result<PooledIds, DropReason> {
    pairs.intern(wire).ok_or(DropReason::NoMetricName)
}

fn decode_labels(wire: &[u8]) -> Option<Labels> {
    use prost::Message;
    let ts = promshard_proto::prometheus::TimeSeries::decode(wire).ok()?;
    Some(Labels::from_pairs(
        ts.labels.into_iter().map(|l| (l.name, l.value)),
    ))
}

/// Puts into `out` the remote write encoding of `labels` after `rules`
/// (when there are any) without empty values; or says why the series is
/// dropped (the rules drop it, or it has no name).
fn relabel(rules: &[RelabelConfig], labels: &Labels, out: &mut Vec<u8>) -> Result<(), DropReason> {
    out.clear();
    let named = if rules.is_empty() {
        encode::encode_labels_into(labels, out)
    } else {
        let relabeled = relabel::process(labels, rules).ok_or(DropReason::Relabel)?;
        encode::encode_labels_into(&relabeled, out)
    };
    if named {
        Ok(())
    } else {
        Err(DropReason::NoMetricName)
    }
}

/// Spreads refs (often small consecutive numbers) over the shards.
fn shard_hash(r: SeriesRef) -> u64 {
    let x = r.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

async fn run_metadata(
    ctx: Arc<ShardContext>,
    metadata: Arc<Mutex<BTreeMap<String, Metadata>>>,
    interval: Duration,
    per_send: usize,
    mut cancel: watch::Receiver<bool>,
) {
    let interval = interval.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancelled(&mut cancel) => return,
            _ = tick.tick() => {}
        }
        let all: Vec<Metadata> = metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for chunk in all.chunks(per_send.max(1)) {
            let body = match encode::compress(&encode::metadata_request(chunk)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot compress metadata");
                    continue;
                }
            };
            let n = chunk.len() as u64;
            match send_with_retry(
                &ctx.endpoint,
                body.into(),
                ctx.backoff,
                0,
                &ctx.stats,
                &mut cancel,
            )
            .await
            {
                Outcome::Delivered => ctx.stats.metadata_sent.fetch_add(n, Relaxed),
                Outcome::Rejected => ctx.stats.metadata_failed.fetch_add(n, Relaxed),
                Outcome::Cancelled => return,
            };
        }
    }
}

fn std_duration(d: promshard_promlib::duration::Duration) -> Duration {
    Duration::from_millis(d.as_millis())
}
