//! One shard: batches the samples routed to it and sends one batch at a
//! time, retrying it until it is accepted or rejected (so the order of
//! each series is kept).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::encode::{QueuedSample, RequestEncoder};
use super::send::{Backoff, Endpoint, Outcome, cancelled, send_with_retry};
use super::stats::{DropReason, RemoteStats};
use super::tracker::Tracker;

/// What every shard of a queue shares.
#[derive(Debug)]
pub(crate) struct ShardContext {
    pub endpoint: Endpoint,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub backoff: Backoff,
    pub stats: Arc<RemoteStats>,
    pub tracker: Arc<Mutex<Tracker>>,
}

/// A shard's input: chunks of samples, in order. Unbounded as a channel;
/// bounded by the shard's room semaphore (one permit per queued sample),
/// which the shard gives back as it takes samples into its batch.
pub(crate) type Input = mpsc::UnboundedReceiver<Vec<QueuedSample>>;

/// What a shard gives back when asked to ([`run`]'s `handback`): the
/// samples it had not sent yet, in order (its partial batch and what it
/// had received, then its input), so they can be routed to a new set of
/// shards.
pub(crate) type Handback = Option<(Vec<QueuedSample>, Input)>;

/// Runs until its input closes (then flushes), `cancel` turns true, or
/// `handback` fires; then it first finishes the batch it is sending (so
/// the order of each series is kept) and returns what it still holds.
pub(crate) async fn run(
    ctx: Arc<ShardContext>,
    mut rx: Input,
    room: Arc<Semaphore>,
    mut cancel: watch::Receiver<bool>,
    handback: oneshot::Receiver<()>,
) -> Handback {
    let mut handback = handback;
    // A oneshot must not be polled again once it completed (sender gone).
    let mut handback_gone = false;
    let max = ctx.max_samples_per_send.max(1);
    let mut batch: Vec<QueuedSample> = Vec::with_capacity(max);
    // Received and not yet in the batch (still holding their permits).
    let mut inbox: VecDeque<QueuedSample> = VecDeque::new();
    let mut encoder = RequestEncoder::new();
    let mut deadline = Instant::now();
    loop {
        // Asked to hand back while busy sending: hand back now rather
        // than send more of what was received meanwhile.
        if !handback_gone {
            match handback.try_recv() {
                Ok(()) => {
                    batch.extend(inbox);
                    return Some((batch, rx));
                }
                Err(oneshot::error::TryRecvError::Closed) => handback_gone = true,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        if batch.len() < max && !inbox.is_empty() {
            if batch.is_empty() {
                deadline = Instant::now() + ctx.batch_send_deadline;
            }
            let k = (max - batch.len()).min(inbox.len());
            batch.extend(inbox.drain(..k));
            room.add_permits(k);
        }
        if batch.len() >= max {
            if !flush(&ctx, &mut encoder, &mut batch, &mut cancel).await {
                return None;
            }
            continue;
        }
        // The select only decides what to do; the flush happens after it
        // so that it can borrow `cancel` itself.
        let step = tokio::select! {
            biased;
            _ = cancelled(&mut cancel) => return None,
            r = &mut handback, if !handback_gone => match r {
                Ok(()) => {
                    batch.extend(inbox);
                    return Some((batch, rx));
                }
                Err(_) => {
                    handback_gone = true;
                    Step::Wait
                }
            },
            msg = rx.recv() => match msg {
                Some(chunk) => {
                    inbox.extend(chunk);
                    Step::Wait
                }
                None => Step::Finish,
            },
            _ = tokio::time::sleep_until(deadline), if !batch.is_empty() => Step::Flush,
        };
        match step {
            Step::Wait => {}
            Step::Flush => {
                if !flush(&ctx, &mut encoder, &mut batch, &mut cancel).await {
                    return None;
                }
            }
            Step::Finish => {
                // Send everything left, a full batch at a time.
                loop {
                    let k = (max - batch.len()).min(inbox.len());
                    batch.extend(inbox.drain(..k));
                    room.add_permits(k);
                    if batch.is_empty() || !flush(&ctx, &mut encoder, &mut batch, &mut cancel).await
                    {
                        return None;
                    }
                }
            }
        }
    }
}

enum Step {
    Wait,
    Flush,
    Finish,
}

/// Sends `batch` (retrying) and releases its positions. False when
/// cancelled (the batch stays undelivered and pending).
async fn flush(
    ctx: &ShardContext,
    encoder: &mut RequestEncoder,
    batch: &mut Vec<QueuedSample>,
    cancel: &mut watch::Receiver<bool>,
) -> bool {
    let n = batch.len() as u64;
    let outcome = match encoder.encode_compressed(batch) {
        Ok(body) => {
            send_with_retry(
                &ctx.endpoint,
                Bytes::copy_from_slice(body),
                ctx.backoff,
                n,
                &ctx.stats,
                cancel,
            )
            .await
        }
        Err(e) => {
            // Snappy fails only on inputs over 4 GiB, far above any batch.
            tracing::error!(url = %ctx.endpoint.shown, error = %e, "cannot compress batch; dropped");
            Outcome::Rejected
        }
    };
    match outcome {
        Outcome::Cancelled => return false,
        Outcome::Delivered => {
            ctx.stats.samples_sent.fetch_add(n, Relaxed);
            if let Some(ts) = batch.iter().map(|s| s.timestamp_ms).max() {
                ctx.stats.note_sent_timestamp(ts);
            }
        }
        Outcome::Rejected => ctx.stats.add_dropped(DropReason::ClientError, n),
    }
    ctx.stats.batches_sent.fetch_add(1, Relaxed);
    release(ctx, batch);
    true
}

/// Marks the batch's samples done in the tracker (per position) and
/// empties it.
fn release(ctx: &ShardContext, batch: &mut Vec<QueuedSample>) {
    // Before the delivered position moves: whoever sees it move sees
    // these samples gone from the pending count too.
    ctx.stats.sub_pending(batch.len() as u64);
    {
        let mut tracker = ctx.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = 0;
        while i < batch.len() {
            let pos = batch[i].position;
            let mut j = i;
            // Samples of one position are mostly adjacent; count runs.
            while j < batch.len() && batch[j].position == pos {
                j += 1;
            }
            tracker.done(pos, j - i);
            i = j;
        }
    }
    batch.clear();
}
