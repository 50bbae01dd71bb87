//! The scrape loop of one target: one Tokio task that sleeps until the
//! target's next slot, scrapes, runs the result through the target's
//! pipeline and appends the batch to the sink.
//!
//! The manager steers a loop through its [`LoopShared`]: it swaps the job
//! state (a reload), requests a stop, cancels one, or shuts the loop down,
//! then wakes it. The loop reads the control block at the top of every
//! iteration and after every sleep, so a change takes effect at the next
//! slot; a scrape in flight finishes (bounded by its timeout) unless the
//! manager shuts down.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use promshard_promlib::exposition::Format;
use promshard_promlib::scrape::{ScrapeUrl, error_chain};
use promshard_promlib::targets::Target;
use tokio::sync::Notify;

use super::job::JobState;
use super::schedule::{SLOT_TOLERANCE_MS, missed_slots, next_slot_ms, now_ms, scrape_timestamp};
use super::scratch::{Scratch, ScratchPool};
use super::status::{Health, ScrapeStats, TargetStatus};
use super::{AppendError, BatchSink, Stop};
use crate::pipeline::{RefAllocator, ScrapeReport, TargetPipeline};
use crate::series::AppendBatch;

/// At most one log line per loop and kind of trouble in this period.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Locks a mutex, recovering from poisoning (a panicked holder leaves
/// plain data that is still consistent for our uses).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the manager wants from a loop.
#[derive(Debug)]
pub(crate) struct Control {
    /// The job state to scrape with (swapped by a reload).
    pub job: Arc<JobState>,
    /// A pending stop (cleared when the target is added back in time).
    pub stop: Option<Stop>,
    /// Stop at once, no staleness markers.
    pub shutdown: bool,
    /// Set by the loop, under this lock, when it commits to ending: from
    /// then on the manager must start a new loop to scrape the target.
    pub ended: bool,
    /// The slot of the loop's last action (scrape or stale markers), so a
    /// replacement loop starts after it.
    pub last_slot_ms: Option<i64>,
}

/// State shared between a loop and the manager.
#[derive(Debug)]
pub(crate) struct LoopShared {
    pub control: Mutex<Control>,
    pub wake: Notify,
    pub status: Mutex<TargetStatus>,
}

impl LoopShared {
    pub fn new(target: &Target, job: Arc<JobState>) -> Self {
        let (interval, timeout) = job.schedule_of(target);
        let status = TargetStatus {
            target: target.clone(),
            scrape_url: target.url(&job.cfg),
            scrape_pool: target.job_name.clone(),
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape_ms: 0,
            last_scrape_duration: Duration::ZERO,
            interval,
            timeout,
            series: 0,
            samples_per_scrape: 0,
        };
        LoopShared {
            control: Mutex::new(Control {
                job,
                stop: None,
                shutdown: false,
                ended: false,
                last_slot_ms: None,
            }),
            wake: Notify::new(),
            status: Mutex::new(status),
        }
    }

    /// Changes the control block and wakes the loop.
    pub fn steer(&self, f: impl FnOnce(&mut Control)) {
        f(&mut lock(&self.control));
        self.wake.notify_one();
    }

    /// Waits until the manager shuts the loop down.
    async fn shutdown_requested(&self) {
        loop {
            let notified = self.wake.notified();
            if lock(&self.control).shutdown {
                return;
            }
            notified.await;
        }
    }
}

/// Whether `stop` asks to end before scraping `slot_ms`.
fn stop_due(stop: &Stop, slot_ms: i64) -> bool {
    stop.stop_before_ms.is_none_or(|before| slot_ms >= before)
}

/// A rate limit for repeated log lines.
#[derive(Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(suppressed since the last line)` when a line may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// One target's loop, moved into its task.
pub(crate) struct TargetLoop {
    pub target: Target,
    pub start_at_ms: Option<i64>,
    pub shared: Arc<LoopShared>,
    pub sink: Arc<dyn BatchSink>,
    pub refs: Arc<RefAllocator>,
    pub stats: Arc<ScrapeStats>,
    pub scratch: Arc<ScratchPool>,
}

impl TargetLoop {
    pub async fn run(self) {
        let mut job = Arc::clone(&lock(&self.shared.control).job);
        let mut pipeline = TargetPipeline::new(
            Arc::clone(&job.settings),
            self.target.public_labels(),
            Arc::clone(&self.refs),
        );
        // The last scraped slot and the interval it was on.
        let mut last: Option<(i64, Duration)> = None;
        // Whether this loop scraped at least once (else a stop has no
        // series to mark stale).
        let mut scraped = false;
        // The slot the loop slept for, if a wake-up interrupted the sleep.
        let mut planned: Option<i64> = None;
        let mut append_log = LogLimit::default();
        // Derived from the job state (and the target's labels); recomputed
        // only when a reload swaps the job state.
        let mut url = ScrapeUrl::new(&self.target.url(&job.cfg));
        let (mut interval, mut timeout) = job.schedule_of(&self.target);

        loop {
            let (cur_job, stop) = {
                let c = lock(&self.shared.control);
                if c.shutdown {
                    return;
                }
                (Arc::clone(&c.job), c.stop)
            };
            if !Arc::ptr_eq(&cur_job, &job) {
                job = cur_job;
                pipeline.set_settings(Arc::clone(&job.settings));
                url = ScrapeUrl::new(&self.target.url(&job.cfg));
                (interval, timeout) = job.schedule_of(&self.target);
                let mut st = lock(&self.shared.status);
                st.scrape_url = url.as_str().to_string();
                st.interval = interval;
                st.timeout = timeout;
            }

            // The next slot: not before the last one, not before start_at,
            // and, once the loop runs on its schedule, not more than the
            // tolerance in the past (a late wake-up still scrapes the slot
            // it was meant for). A new loop starts at a slot still ahead.
            let now = now_ms();
            let mut earliest = if last.is_some() || planned.is_some() {
                now - SLOT_TOLERANCE_MS
            } else {
                now
            };
            if let Some(start) = self.start_at_ms {
                earliest = earliest.max(start);
            }
            if let Some((l, _)) = last {
                if l - now > interval.as_millis() as i64 + SLOT_TOLERANCE_MS {
                    // The wall clock went back: waiting for it to pass the
                    // last slot again could take hours. Follow the clock
                    // (as Prometheus' time.Now() stamps would).
                    tracing::warn!(
                        target_id = self.target.id,
                        last_slot_ms = l,
                        now_ms = now,
                        "wall clock went back; rescheduling from now"
                    );
                    last = None;
                    planned = None;
                } else {
                    earliest = earliest.max(l + 1);
                }
            }
            let slot = next_slot_ms(self.target.id, interval, earliest);

            let mut stale_at = None;
            if let Some(stop) = stop.filter(|s| stop_due(s, slot)) {
                if stop.handover || !scraped {
                    // Another shard continues (or nothing was ever
                    // scraped, so there is nothing to mark stale): end now.
                    if self.commit_end(&stop, slot) {
                        self.finish(&mut pipeline, slot, true, &mut append_log);
                        return;
                    }
                    continue;
                }
                stale_at = Some(stop);
            }

            planned = Some(slot);
            let wait = slot - now_ms();
            if wait > 0 {
                let notified = self.shared.wake.notified();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = notified => continue,
                }
            }

            if let Some(stop) = stale_at {
                if self.commit_end(&stop, slot) {
                    // As Prometheus' end-of-run staleness: markers at the
                    // time the next scrape would have been.
                    self.finish(&mut pipeline, slot, false, &mut append_log);
                    return;
                }
                // The stop was cancelled while we slept: scrape this slot.
                if lock(&self.shared.control).shutdown {
                    return;
                }
            }

            if let Some((l, li)) = last
                && li == interval
            {
                let missed = missed_slots(l, slot, interval);
                if missed > 0 {
                    self.stats.missed_slots.fetch_add(missed, Ordering::Relaxed);
                    tracing::debug!(
                        target_id = self.target.id,
                        job = %self.target.job_name,
                        missed,
                        "scrape overran its interval; skipped slots"
                    );
                }
            }

            let started_ms = now_ms();
            let ts = scrape_timestamp(slot, started_ms);
            let started = Instant::now();
            let mut scratch = self.scratch.take();
            let Scratch { body, batch } = &mut scratch;
            let result = tokio::select! {
                r = job.client.scrape_into(&url, timeout, body) => r,
                _ = self.shared.shutdown_requested() => return,
            };
            let report = match result {
                Ok(resp) => {
                    let format = Format::from_content_type(&resp.content_type);
                    let mut process =
                        || pipeline.on_scrape(&resp.body, format, ts, resp.duration, batch);
                    // A huge body takes a while to parse: off the async
                    // worker, so other targets' timers and IO keep running.
                    if resp.body.len() >= LARGE_BODY_BYTES {
                        maybe_block_in_place(process)
                    } else {
                        process()
                    }
                }
                Err(e) => {
                    let reason = error_chain(&e);
                    tracing::debug!(
                        target_id = self.target.id,
                        job = %self.target.job_name,
                        error = %reason,
                        "scrape failed"
                    );
                    pipeline.on_failure(&reason, ts, started.elapsed(), batch)
                }
            };
            let duration = started.elapsed();
            last = Some((slot, interval));
            planned = None;
            scraped = true;
            lock(&self.shared.control).last_slot_ms = Some(slot);
            self.append(&pipeline, batch, &mut append_log);
            // The body was dropped with the response: the buffers can go.
            self.scratch.put(scratch);
            self.record(&report, ts, duration);
        }
    }

    /// Commits to ending for `stop` if it is still the pending stop (not
    /// cancelled, not replaced); with the manager's lock discipline this
    /// makes "add back before the stop happens" and "stop happened" exclusive.
    fn commit_end(&self, stop: &Stop, slot: i64) -> bool {
        let mut c = lock(&self.shared.control);
        if c.shutdown {
            // No markers on shutdown; the loop returns at the next check.
            return false;
        }
        if c.stop.as_ref() == Some(stop) {
            c.ended = true;
            c.last_slot_ms = Some(c.last_slot_ms.map_or(slot, |l| l.max(slot)));
            true
        } else {
            false
        }
    }

    /// The last append of a loop: stale markers unless `handover`.
    fn finish(&self, pipeline: &mut TargetPipeline, ts: i64, handover: bool, log: &mut LogLimit) {
        let mut scratch = self.scratch.take();
        pipeline.on_stop(ts, handover, &mut scratch.batch);
        self.append(pipeline, &mut scratch.batch, log);
        self.scratch.put(scratch);
        tracing::debug!(
            target_id = self.target.id,
            job = %self.target.job_name,
            handover,
            at_ms = ts,
            "scrape loop stopped"
        );
    }

    /// Appends `batch` (defining every series and retrying once on
    /// `UnknownSeries`), counts the outcome and clears the batch.
    fn append(&self, pipeline: &TargetPipeline, batch: &mut AppendBatch, log: &mut LogLimit) {
        if batch.is_empty() {
            return;
        }
        let result = match append_blocking(self.sink.as_ref(), batch) {
            Err(AppendError::UnknownSeries(_)) => {
                pipeline.define_all(batch);
                append_blocking(self.sink.as_ref(), batch)
            }
            other => other,
        };
        match result {
            Ok(()) => {
                self.stats
                    .samples_appended
                    .fetch_add(batch.samples.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.append_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = log.allow() {
                    tracing::warn!(
                        target_id = self.target.id,
                        job = %self.target.job_name,
                        error = %e,
                        samples_lost = batch.samples.len(),
                        suppressed,
                        "appending a scrape to the WAL failed"
                    );
                }
            }
        }
        batch.series.clear();
        batch.samples.clear();
        batch.metadata.clear();
    }

    /// Publishes the outcome of one scrape.
    fn record(&self, report: &ScrapeReport, ts: i64, duration: Duration) {
        self.stats.scrapes.fetch_add(1, Ordering::Relaxed);
        if report.error.is_some() {
            self.stats.scrape_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = lock(&self.shared.status);
        st.health = if report.error.is_some() {
            Health::Down
        } else {
            Health::Up
        };
        st.last_error = report.error.clone().unwrap_or_default();
        st.last_scrape_ms = ts;
        st.last_scrape_duration = duration;
        st.series = report.series;
        st.samples_per_scrape = report.samples_post_relabel;
    }
}

/// Calls the sink. A WAL append is one `write(2)` into the page cache
/// (microseconds) unless the WAL fsyncs every append
/// (`FsyncPolicy::Always`): only then is it run under `block_in_place`, so
/// that a disk flush does not stall the other loops on this worker.
/// `block_in_place` hands the worker to another thread and back, two
/// thread wake-ups per scrape that a page-cache write does not need.
fn append_blocking(sink: &dyn BatchSink, batch: &AppendBatch) -> Result<(), AppendError> {
    if sink.may_block() {
        maybe_block_in_place(|| sink.append(batch))
    } else {
        sink.append(batch)
    }
}

/// Bodies at least this large are processed under `block_in_place`.
const LARGE_BODY_BYTES: usize = 1 << 20;

/// Runs `f` under `block_in_place` on a multi-threaded runtime (other
/// tasks of this worker move elsewhere meanwhile), directly otherwise.
fn maybe_block_in_place<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
