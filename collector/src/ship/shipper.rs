//! One remote's shipper: a task that reads its WAL consumer, groups
//! records into [`AppendBatch`]es, pushes them into the remote's
//! [`RemoteWriteQueue`], and a committer that moves the consumer's
//! checkpoint as the queue's delivered position advances.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::position;
use crate::remote::RemoteWriteQueue;
use crate::remote::encode::EncodedSeries;
use crate::series::AppendBatch;
use crate::wal::codec::{self, RecordType};
use crate::wal::{Wal, WalError, WalPosition, WalReader, WalRecord};

/// A batch is pushed once it holds this many samples (or when the reader
/// is at the WAL's head).
pub const BATCH_SAMPLES: usize = 5000;
/// The checkpoint is written at most this often (each write is two
/// fsyncs: at 4 a second they were 1.5% of a collector's CPU in
/// `bench-collector`); the final delivered position is always committed
/// on stop. A crash re-sends at most about this much delivered data.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// At the WAL's head with a partial batch, the shipper waits this long
/// for more appends before pushing: one push then carries the scrapes of
/// this window, instead of one push (and a wake-up of the dispatcher and
/// of every remote shard) per scrape.
pub const LINGER: Duration = Duration::from_millis(100);
/// Wait before retrying after a WAL read error.
const READ_RETRY: Duration = Duration::from_secs(1);

/// What the shipper is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    /// Keep reading until the reader passed `until` (or reached the head)
    /// or `deadline`, then deliver what was pushed until `deadline`.
    Drain {
        until: WalPosition,
        deadline: Instant,
    },
    /// Stop reading now, deliver what was pushed for at most `grace`.
    Stop {
        grace: Duration,
    },
}

/// A running shipper.
pub(crate) struct Handle {
    pub control: watch::Sender<Control>,
    /// Resolves to the samples left undelivered.
    pub task: JoinHandle<u64>,
}

/// Starts the shipper of consumer `consumer` (reader and queue already
/// made for it; the queue's `delivered_before` is the reader's start).
pub(crate) fn spawn(
    wal: Arc<Wal>,
    consumer: String,
    reader: WalReader,
    queue: RemoteWriteQueue,
) -> Handle {
    let (control, control_rx) = watch::channel(Control::Run);
    let task = tokio::spawn(run(wal, consumer, reader, queue, control_rx));
    Handle { control, task }
}

/// Records read and not yet pushed.
#[derive(Default)]
struct Pending {
    batch: AppendBatch,
    /// Series definitions, when the queue takes them encoded (no write
    /// relabeling): the WAL's labels go straight to the remote write
    /// encoding, without a String per label.
    encoded: EncodedSeries,
    /// Position of the last record added.
    last: Option<WalPosition>,
}

impl Pending {
    fn add(&mut self, position: WalPosition, record: WalRecord) {
        match record {
            WalRecord::Series(mut d) => self.batch.series.append(&mut d),
            WalRecord::Samples(mut s) => self.batch.samples.append(&mut s),
            WalRecord::Metadata(mut m) => self.batch.metadata.append(&mut m),
        }
        self.last = Some(position);
    }

    /// The batch and its queue position when it can be pushed: it holds a
    /// record after the start position (records up to the start are the
    /// Series definitions the reader re-yields; they travel with the first
    /// batch after the start, never on their own).
    fn ready(&self, start: WalPosition) -> Option<WalPosition> {
        self.last
            .filter(|p| *p > start && !(self.batch.is_empty() && self.encoded.is_empty()))
    }

    fn take(&mut self) -> (AppendBatch, EncodedSeries) {
        self.last = None;
        (
            std::mem::take(&mut self.batch),
            std::mem::take(&mut self.encoded),
        )
    }

    /// Reads the next record that decodes into the batch (Series records
    /// into `encoded` when `encode_series`); returns its position, or None
    /// at the WAL's head. Records that do not decode are skipped (logged).
    fn read(
        &mut self,
        reader: &mut WalReader,
        encode_series: bool,
    ) -> Result<Option<WalPosition>, WalError> {
        loop {
            let Some(e) = reader.try_next_raw()? else {
                return Ok(None);
            };
            let position = e.position;
            let decoded = if encode_series && e.typ == RecordType::Series as u8 {
                let before = self.encoded.len();
                let encoded = &mut self.encoded;
                codec::visit_series_payload(e.payload, |r, labels| encoded.push(r, labels))
                    .inspect_err(|_| self.encoded.truncate(before))
                    .map(|()| self.last = Some(position))
            } else {
                codec::decode_payload(e.typ, e.payload).map(|rec| self.add(position, rec))
            };
            match decoded {
                Ok(()) => return Ok(Some(position)),
                Err(err) => {
                    tracing::warn!(consumer = %reader.name(), %position, error = %err, "WAL record with a valid CRC does not decode; skipping it");
                }
            }
        }
    }
}

/// Why the read loop ended.
enum End {
    /// Deliver what was pushed until this instant.
    Until(Instant),
    /// Deliver what was pushed for this long.
    Grace(Duration),
}

async fn run(
    wal: Arc<Wal>,
    consumer: String,
    mut reader: WalReader,
    mut queue: RemoteWriteQueue,
    mut control: watch::Receiver<Control>,
) -> u64 {
    let start = reader.start();
    let remote = queue.name().to_string();
    let encode_series = !queue.wants_labels();
    let (commit_stop, commit_stop_rx) = watch::channel(false);
    let committer = tokio::spawn(commit_loop(
        wal.clone(),
        consumer.clone(),
        queue.delivered(),
        commit_stop_rx,
    ));
    let mut pending = Pending::default();
    let mut last_read: Option<WalPosition> = None;
    // Samples of a batch whose push was abandoned by a stop.
    let mut abandoned = 0u64;
    // The current partial batch already waited its LINGER.
    let mut lingered = false;
    let end = 'read: loop {
        let ctl = *control.borrow_and_update();
        if let Control::Stop { grace } = ctl {
            break End::Grace(grace);
        }
        // Read what is available now, up to one batch.
        let mut at_head = false;
        while pending.batch.samples.len() < BATCH_SAMPLES {
            match pending.read(&mut reader, encode_series) {
                Ok(Some(p)) => last_read = Some(p),
                Ok(None) => {
                    at_head = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(remote = %remote, consumer = %consumer, error = %e, "cannot read the WAL; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(READ_RETRY) => {}
                        _ = control.changed() => {}
                    }
                    continue 'read;
                }
            }
        }
        if at_head && !lingered && ctl == Control::Run && !pending.batch.samples.is_empty() {
            lingered = true;
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = control.changed() => {}
            }
            continue 'read;
        }
        if let Some(pos) = pending.ready(start) {
            lingered = false;
            let Some(qpos) = position::encode(pos) else {
                tracing::error!(remote = %remote, position = %pos, "WAL position out of the shipper's range; stopping this shipper");
                break End::Grace(Duration::ZERO);
            };
            let n = pending.batch.samples.len();
            let (batch, encoded) = pending.take();
            // Pushing waits while the queue is full; a stop (or the drain
            // deadline) abandons the batch, which stays in the WAL.
            let pushed = tokio::select! {
                r = queue.push_encoded(qpos, batch, encoded) => Some(r),
                _ = wait_stop(&mut control) => None,
            };
            match pushed {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::error!(remote = %remote, error = %e, "remote write queue refused input; stopping this shipper");
                    break End::Grace(Duration::ZERO);
                }
                None => {
                    tracing::debug!(remote = %remote, samples = n, "stopping while the queue was full");
                    abandoned = n as u64;
                    break end_of(*control.borrow());
                }
            }
        }
        if let Control::Drain { until, deadline } = *control.borrow() {
            if Instant::now() >= deadline {
                break End::Until(deadline);
            }
            if at_head || last_read.is_some_and(|p| p >= until) {
                if pending.ready(start).is_none() {
                    break End::Until(deadline);
                }
                // Push the rest first (next iteration).
                continue;
            }
        }
        if at_head {
            // Wait for appends (or a control change).
            // The next iteration reads what was appended.
            tokio::select! {
                _ = reader.appended() => {}
                _ = control.changed() => {}
            }
        }
    };
    let unpushed = pending.batch.samples.len() as u64 + abandoned;
    let grace = match end {
        End::Until(deadline) => deadline.saturating_duration_since(Instant::now()),
        End::Grace(g) => g,
    };
    let undelivered = queue.shutdown(grace).await;
    commit_stop.send_replace(true);
    let _ = committer.await;
    let last = position::decode(undelivered.delivered_position);
    if last > start {
        let w = wal.clone();
        let c = consumer.clone();
        match tokio::task::spawn_blocking(move || w.commit(&c, last)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(remote = %remote, error = %e, "cannot commit the final WAL checkpoint")
            }
            Err(e) => tracing::error!(remote = %remote, error = %e, "WAL commit task failed"),
        }
    }
    tracing::info!(remote = %remote, consumer = %consumer, delivered = %last, undelivered = undelivered.samples + unpushed, "WAL shipper stopped");
    undelivered.samples + unpushed
}

fn end_of(ctl: Control) -> End {
    match ctl {
        Control::Drain { deadline, .. } => End::Until(deadline),
        Control::Stop { grace } => End::Grace(grace),
        Control::Run => End::Grace(Duration::ZERO),
    }
}

/// Resolves when the control says Stop, or Drain and its deadline passed
/// (a Drain before its deadline keeps pushing).
async fn wait_stop(control: &mut watch::Receiver<Control>) {
    loop {
        let ctl = *control.borrow_and_update();
        match ctl {
            Control::Stop { .. } => return,
            Control::Drain { deadline, .. } => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    r = control.changed() => if r.is_err() { return },
                }
            }
            Control::Run => {
                if control.changed().await.is_err() {
                    // The Shippers were dropped: stop.
                    return;
                }
            }
        }
    }
}

/// Commits the consumer's checkpoint as `delivered` advances, at most
/// every [`COMMIT_EVERY`], so delivered segments get deleted.
async fn commit_loop(
    wal: Arc<Wal>,
    consumer: String,
    mut delivered: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut committed = *delivered.borrow_and_update();
    loop {
        tokio::select! {
            r = delivered.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        let p = *delivered.borrow_and_update();
        if p > committed {
            let w = wal.clone();
            let c = consumer.clone();
            let pos = position::decode(p);
            match tokio::task::spawn_blocking(move || w.commit(&c, pos)).await {
                Ok(Ok(())) => committed = p,
                Ok(Err(e)) => {
                    tracing::error!(consumer = %consumer, error = %e, "cannot commit the WAL checkpoint")
                }
                Err(e) => {
                    tracing::error!(consumer = %consumer, error = %e, "WAL commit task failed")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(COMMIT_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
