//! The WAL handle: open/recovery, appends, consumers, deletion and bounds.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::checkpoint;
use super::codec::{self, RecordType};
use super::error::WalError;
use super::options::{FsyncPolicy, WalOptions};
use super::position::WalPosition;
use super::reader::WalReader;
use super::segment::{self, SEGMENT_HEADER_LEN};
use super::stats::{ConsumerStats, Counters, WalStats};
use crate::refmap::RefSet;
use crate::series::{AppendBatch, SeriesRef};

struct Writer {
    segment: u64,
    file: Arc<File>,
    offset: u64,
    segment_samples: u64,
    /// Whether data was written since the last fsync (Interval policy).
    dirty: bool,
    /// Closed segments not yet fsynced (Interval policy: the background
    /// thread syncs them, so a rollover does not stall appenders).
    closed_unsynced: Vec<(u64, Arc<File>)>,
    /// Series defined in the current segment (cleared on rollover: the
    /// next segment must define them again).
    series: RefSet,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentInfo {
    /// Final size for closed segments; for the current one see the head.
    pub size: u64,
    pub samples: u64,
    pub modified: SystemTime,
}

pub(crate) struct State {
    /// Every segment on disk, the last one being the one written.
    pub segments: BTreeMap<u64, SegmentInfo>,
    /// Registered consumers and their checkpoints.
    pub consumers: BTreeMap<String, WalPosition>,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub consumers_dir: PathBuf,
    pub opts: WalOptions,
    writer: Mutex<Writer>,
    pub state: Mutex<State>,
    synced: Mutex<WalPosition>,
    checkpoint_lock: Mutex<()>,
    /// The end of the data written so far; readers wait on it.
    pub head: watch::Sender<WalPosition>,
    pub counters: Counters,
    next_series_ref: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a WAL lock leaves data that is still
    // consistent enough to continue (every field is updated after the IO).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The collector's write-ahead log. See the [module docs](super).
pub struct Wal {
    inner: Arc<Inner>,
    maintenance: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`. Validates every segment: a torn
    /// or corrupt tail is cut off (with a warning) and everything before it
    /// kept. Appends go to a new segment. Consumers whose checkpoint files
    /// exist are registered.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        let consumers_dir = dir.join("consumers");
        std::fs::create_dir_all(&consumers_dir)
            .map_err(|e| WalError::io("create directory", &consumers_dir, e))?;
        let counters = Counters::default();
        let mut segments = BTreeMap::new();
        let mut max_ref: Option<u64> = None;
        for n in segment::list_segments(&dir)? {
            let path = segment::segment_path(&dir, n);
            let scan = segment::scan_segment(&path)?;
            if scan.bad_header {
                tracing::warn!(segment = %path.display(), "WAL segment has no valid header (crash while creating it?); removing it");
                std::fs::remove_file(&path)
                    .map_err(|e| WalError::io("remove segment", &path, e))?;
                Counters::add(&counters.truncated_tails, 1);
                continue;
            }
            if let Some(why) = &scan.bad_tail {
                tracing::warn!(
                    segment = %path.display(),
                    kept_bytes = scan.valid_len,
                    dropped_bytes = scan.file_len - scan.valid_len,
                    "WAL segment has a torn or corrupt tail ({why}); truncating it, keeping everything before"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| WalError::io("open segment", &path, e))?;
                f.set_len(scan.valid_len)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| WalError::io("truncate segment", &path, e))?;
                Counters::add(&counters.truncated_tails, 1);
            }
            if let Some(m) = scan.max_ref {
                max_ref = Some(max_ref.map_or(m, |x| x.max(m)));
            }
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            segments.insert(
                n,
                SegmentInfo {
                    size: scan.valid_len,
                    samples: scan.samples,
                    modified,
                },
            );
        }
        let current = segments.keys().next_back().map_or(1, |n| n + 1);
        let file = segment::create_segment(&dir, current)?;
        segment::sync_dir(&dir)?;
        segments.insert(
            current,
            SegmentInfo {
                size: SEGMENT_HEADER_LEN,
                samples: 0,
                modified: SystemTime::now(),
            },
        );
        let oldest = *segments.keys().next().unwrap_or(&current);
        let mut consumers = BTreeMap::new();
        for (name, pos) in checkpoint::load_checkpoints(&consumers_dir)? {
            let pos = pos.unwrap_or(WalPosition {
                segment: oldest,
                offset: 0,
            });
            consumers.insert(name, pos);
        }
        let head = WalPosition {
            segment: current,
            offset: SEGMENT_HEADER_LEN,
        };
        let inner = Arc::new(Inner {
            dir,
            consumers_dir,
            writer: Mutex::new(Writer {
                segment: current,
                file: Arc::new(file),
                offset: SEGMENT_HEADER_LEN,
                segment_samples: 0,
                dirty: false,
                closed_unsynced: Vec::new(),
                series: RefSet::default(),
            }),
            state: Mutex::new(State {
                segments,
                consumers,
            }),
            synced: Mutex::new(head),
            checkpoint_lock: Mutex::new(()),
            head: watch::Sender::new(head),
            counters,
            next_series_ref: max_ref.map_or(0, |m| m + 1),
            opts,
        });
        inner.enforce_bounds();
        let (tx, rx) = mpsc::channel::<()>();
        let bg = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("wal-maintenance".into())
            .spawn(move || maintenance_loop(&bg, &rx))
            .map_err(|e| WalError::io("spawn maintenance thread for", &inner.dir, e))?;
        Ok(Wal {
            inner,
            maintenance: Some((tx, handle)),
        })
    }

    /// One above the highest series ref found in the WAL when it was opened
    /// (0 for an empty WAL): the pipeline allocates refs from here.
    pub fn next_series_ref(&self) -> u64 {
        self.inner.next_series_ref
    }

    /// The directory the WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The end of the data appended so far.
    pub fn head(&self) -> WalPosition {
        *self.inner.head.borrow()
    }

    /// Appends a batch: its series definitions, then its samples, then its
    /// metadata, as consecutive records in one write. Every sample must
    /// refer to a series defined in this batch or an earlier one (since the
    /// WAL was opened). Returns the position just past the batch; with
    /// [`FsyncPolicy::Always`] the batch is on disk when this returns.
    /// Thread-safe; encoding happens outside the lock.
    pub fn append(&self, batch: &AppendBatch) -> Result<WalPosition, WalError> {
        self.inner.append(batch)
    }

    /// Whether [`Wal::append`] waits for an fsync ([`FsyncPolicy::Always`]).
    /// Under the other policies an append is one `write` into the page
    /// cache (a segment rollover creates a file, and deletes delivered
    /// segments), and fsyncs happen on the background thread.
    pub fn fsyncs_on_append(&self) -> bool {
        self.inner.opts.fsync == FsyncPolicy::Always
    }

    /// A reader for the consumer `name` (one per remote-write queue),
    /// starting at its checkpoint. A consumer seen for the first time is
    /// registered at the start of the oldest segment, so it gets everything
    /// the WAL holds.
    pub fn reader(&self, name: &str) -> Result<WalReader, WalError> {
        if name.is_empty() {
            return Err(WalError::InvalidConsumerName(name.to_string()));
        }
        let existing = lock(&self.inner.state).consumers.get(name).copied();
        let start = match existing {
            Some(p) => p,
            None => {
                let _g = lock(&self.inner.checkpoint_lock);
                let oldest = {
                    let st = lock(&self.inner.state);
                    *st.segments.keys().next().unwrap_or(&1)
                };
                let p = WalPosition {
                    segment: oldest,
                    offset: 0,
                };
                checkpoint::write_checkpoint(&self.inner.consumers_dir, name, p)?;
                *lock(&self.inner.state)
                    .consumers
                    .entry(name.to_string())
                    .or_insert(p)
            }
        };
        Ok(WalReader::new(Arc::clone(&self.inner), name, start))
    }

    /// Persists that consumer `name` has delivered everything up to `pos`
    /// (a position a reader returned), then deletes segments every consumer
    /// has passed. A position at or before the current checkpoint is a
    /// no-op.
    pub fn commit(&self, name: &str, pos: WalPosition) -> Result<(), WalError> {
        self.inner.commit(name, pos)
    }

    /// Keeps only the consumers named (the configured remote-write queues):
    /// the others are unregistered and their checkpoint files removed, so
    /// they no longer hold back deletion.
    pub fn retain_consumers(&self, names: &[&str]) -> Result<(), WalError> {
        let _g = lock(&self.inner.checkpoint_lock);
        let gone: Vec<String> = lock(&self.inner.state)
            .consumers
            .keys()
            .filter(|k| !names.contains(&k.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            tracing::info!(consumer = %name, "WAL consumer no longer configured; removing its checkpoint");
            checkpoint::remove_checkpoint(&self.inner.consumers_dir, name)?;
            lock(&self.inner.state).consumers.remove(name);
        }
        drop(_g);
        self.inner.delete_passed_segments();
        Ok(())
    }

    /// Names of the registered consumers.
    pub fn consumers(&self) -> Vec<String> {
        lock(&self.inner.state).consumers.keys().cloned().collect()
    }

    /// Deletes what every consumer passed and applies the size and age
    /// bounds now (the background thread does this every
    /// `maintenance_interval`, and appends after every segment rollover).
    pub fn enforce_bounds(&self) {
        self.inner.delete_passed_segments();
        self.inner.enforce_bounds();
    }

    /// The position up to which data is known to be fsynced.
    pub fn synced(&self) -> WalPosition {
        *lock(&self.inner.synced)
    }

    /// fsyncs everything appended so far.
    pub fn sync(&self) -> Result<(), WalError> {
        self.inner.sync_everything(true)
    }

    /// Stops the background thread and fsyncs. Dropping the WAL without
    /// `close` loses nothing a process crash would not: appended data is in
    /// the OS already.
    pub fn close(mut self) -> Result<(), WalError> {
        self.stop_maintenance();
        self.sync()
    }

    fn stop_maintenance(&mut self) {
        if let Some((tx, h)) = self.maintenance.take() {
            drop(tx);
            let _ = h.join();
        }
    }

    /// A snapshot of sizes, counters and consumer backlogs.
    pub fn stats(&self) -> WalStats {
        self.inner.stats()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_maintenance();
    }
}

/// Restores the segments of definitions that were not written after all.
fn maintenance_loop(inner: &Inner, stop: &mpsc::Receiver<()>) {
    let tick = match inner.opts.fsync {
        FsyncPolicy::Interval(d) => d.min(inner.opts.maintenance_interval),
        _ => inner.opts.maintenance_interval,
    }
    .max(Duration::from_millis(1));
    let mut last_bounds = std::time::Instant::now();
    loop {
        match stop.recv_timeout(tick) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if let FsyncPolicy::Interval(_) = inner.opts.fsync
            && let Err(e) = inner.sync_everything(false)
        {
            tracing::error!(error = %e, "WAL background fsync failed");
        }
        if last_bounds.elapsed() >= inner.opts.maintenance_interval {
            last_bounds = std::time::Instant::now();
            inner.delete_passed_segments();
            inner.enforce_bounds();
        }
    }
}

impl Inner {
    fn append(&self, batch: &AppendBatch) -> Result<WalPosition, WalError> {
        if batch.is_empty() {
            return Ok(*self.head.borrow());
        }
        // Encode outside the lock.
        let mut buf = Vec::new();
        if !batch.series.is_empty() {
            codec::frame(&mut buf, RecordType::Series, |o| {
                codec::encode_series_payload(&batch.series, o)
            });
        }
        if !batch.samples.is_empty() {
            codec::frame(&mut buf, RecordType::Samples, |o| {
                codec::encode_samples_payload(&batch.samples, o)
            });
        }
        if !batch.metadata.is_empty() {
            codec::frame(&mut buf, RecordType::Metadata, |o| {
                codec::encode_metadata_payload(&batch.metadata, o)
            });
        }

        let mut rolled = false;
        let (pos, file) = {
            let mut w = lock(&self.writer);
            if w.offset > SEGMENT_HEADER_LEN && w.offset + buf.len() as u64 > self.opts.segment_size
            {
                self.rollover(&mut w)?;
                rolled = true;
            }
            let seg = w.segment;
            // Every sample's series must be defined in this segment (by this
            // batch or an earlier one), so that a reader starting here
            // resolves every ref. The writer keeps no labels: the caller
            // repeats the definitions (after a rollover, a restart).
            let new: Vec<SeriesRef> = batch
                .series
                .iter()
                .map(|d| d.series)
                .filter(|&r| w.series.insert(r))
                .collect();
            let undefined = batch
                .samples
                .iter()
                .map(|s| s.series)
                .find(|&r| !w.series.contains(r));
            let written = match undefined {
                Some(r) => Err(WalError::UnknownSeries(r.0)),
                None => (&*w.file).write_all(&buf).map_err(|e| {
                    // Cut off whatever part was written so the file stays valid.
                    let _ = w.file.set_len(w.offset);
                    WalError::io(
                        "append to segment",
                        &segment::segment_path(&self.dir, seg),
                        e,
                    )
                }),
            };
            if let Err(e) = written {
                for &r in &new {
                    w.series.remove(r);
                }
                return Err(e);
            }
            w.offset += buf.len() as u64;
            w.segment_samples += batch.samples.len() as u64;
            w.dirty = true;
            let pos = WalPosition {
                segment: seg,
                offset: w.offset,
            };
            self.head.send_replace(pos);
            Counters::add(&self.counters.appended_bytes, buf.len() as u64);
            (pos, Arc::clone(&w.file))
        };
        Counters::add(&self.counters.appended_samples, batch.samples.len() as u64);
        Counters::add(&self.counters.appended_series, batch.series.len() as u64);
        Counters::add(
            &self.counters.appended_metadata,
            batch.metadata.len() as u64,
        );
        if self.opts.fsync == FsyncPolicy::Always {
            self.sync_to(&file, pos)?;
        }
        if rolled {
            self.delete_passed_segments();
            self.enforce_bounds();
        }
        Ok(pos)
    }

    /// fsyncs closed segments not yet synced, the directory, and the
    /// current segment (only if it has unsynced appends, unless `force`).
    /// The file IO happens outside the writer lock.
    fn sync_everything(&self, force: bool) -> Result<(), WalError> {
        let (closed, current) = {
            let mut w = lock(&self.writer);
            let closed = std::mem::take(&mut w.closed_unsynced);
            let current = (force || w.dirty).then(|| {
                w.dirty = false;
                (
                    Arc::clone(&w.file),
                    WalPosition {
                        segment: w.segment,
                        offset: w.offset,
                    },
                )
            });
            (closed, current)
        };
        for (n, f) in &closed {
            f.sync_data()
                .map_err(|e| WalError::io("fsync", &segment::segment_path(&self.dir, *n), e))?;
        }
        if !closed.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        if let Some((file, pos)) = current {
            self.sync_to(&file, pos)?;
        }
        Ok(())
    }

    /// fsyncs `file` unless someone already synced past `pos` (group commit).
    fn sync_to(&self, file: &File, pos: WalPosition) -> Result<(), WalError> {
        let mut synced = lock(&self.synced);
        if *synced >= pos {
            return Ok(());
        }
        file.sync_data().map_err(|e| {
            WalError::io("fsync", &segment::segment_path(&self.dir, pos.segment), e)
        })?;
        *synced = pos;
        Ok(())
    }

    /// Closes the current segment and starts the next. Called with the
    /// writer lock held.
    fn rollover(&self, w: &mut Writer) -> Result<(), WalError> {
        match self.opts.fsync {
            // Under the lock: nothing may be written to the next segment
            // before this one is on disk, or group commit (`synced`) could
            // claim data of this segment synced that is not.
            FsyncPolicy::Always => w.file.sync_data().map_err(|e| {
                WalError::io("fsync", &segment::segment_path(&self.dir, w.segment), e)
            })?,
            FsyncPolicy::Interval(_) => {
                let f = Arc::clone(&w.file);
                w.closed_unsynced.push((w.segment, f));
            }
            FsyncPolicy::Never => {}
        }
        let next = w.segment + 1;
        let file = segment::create_segment(&self.dir, next)?;
        if self.opts.fsync == FsyncPolicy::Always {
            segment::sync_dir(&self.dir)?;
        }
        {
            let mut st = lock(&self.state);
            let now = SystemTime::now();
            if let Some(info) = st.segments.get_mut(&w.segment) {
                info.size = w.offset;
                info.samples = w.segment_samples;
                info.modified = now;
            }
            st.segments.insert(
                next,
                SegmentInfo {
                    size: SEGMENT_HEADER_LEN,
                    samples: 0,
                    modified: now,
                },
            );
        }
        tracing::debug!(segment = w.segment, bytes = w.offset, "WAL segment closed");
        w.segment = next;
        w.file = Arc::new(file);
        w.offset = SEGMENT_HEADER_LEN;
        w.segment_samples = 0;
        // The new segment's header is unsynced.
        w.dirty = true;
        w.series = RefSet::default();
        self.head.send_replace(WalPosition {
            segment: next,
            offset: SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    pub(crate) fn commit(&self, name: &str, pos: WalPosition) -> Result<(), WalError> {
        {
            let _g = lock(&self.checkpoint_lock);
            let cur = lock(&self.state)
                .consumers
                .get(name)
                .copied()
                .ok_or_else(|| WalError::UnknownConsumer(name.to_string()))?;
            if pos <= cur {
                return Ok(());
            }
            checkpoint::write_checkpoint(&self.consumers_dir, name, pos)?;
            lock(&self.state).consumers.insert(name.to_string(), pos);
        }
        self.delete_passed_segments();
        Ok(())
    }

    /// Deletes the oldest closed segments that every consumer has passed.
    /// With no consumer registered nothing is deleted here (only bounds
    /// delete then), so data appended before the queues start is kept.
    pub(crate) fn delete_passed_segments(&self) {
        let mut st = lock(&self.state);
        if st.consumers.is_empty() {
            return;
        }
        let Some(&current) = st.segments.keys().next_back() else {
            return;
        };
        let candidates: Vec<(u64, SegmentInfo)> = st
            .segments
            .range(..current)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (n, info) in candidates {
            let passed = st
                .consumers
                .values()
                .all(|p| p.segment > n || (p.segment == n && p.offset >= info.size));
            if !passed {
                break;
            }
            if self.remove_segment(&mut st, n) {
                Counters::add(&self.counters.deleted_segments, 1);
            } else {
                break;
            }
        }
    }

    fn remove_segment(&self, st: &mut State, n: u64) -> bool {
        let path = segment::segment_path(&self.dir, n);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, "cannot delete WAL segment");
                return false;
            }
        }
        st.segments.remove(&n);
        true
    }

    /// Deletes the oldest closed segments while the WAL is over `max_bytes`
    /// or they are older than `max_age`, delivered or not; undelivered ones
    /// are counted and logged.
    pub(crate) fn enforce_bounds(&self) {
        if self.opts.max_bytes.is_none() && self.opts.max_age.is_none() {
            return;
        }
        let head = *self.head.borrow();
        let mut st = lock(&self.state);
        let now = SystemTime::now();
        loop {
            let Some(&current) = st.segments.keys().next_back() else {
                return;
            };
            let Some((&oldest, &info)) = st.segments.iter().next() else {
                return;
            };
            if oldest == current {
                return;
            }
            let total: u64 = st
                .segments
                .iter()
                .map(|(k, v)| {
                    if *k == current && head.segment == current {
                        head.offset
                    } else {
                        v.size
                    }
                })
                .sum();
            let over_size = self.opts.max_bytes.is_some_and(|m| total > m);
            let age = now.duration_since(info.modified).unwrap_or_default();
            let over_age = self.opts.max_age.is_some_and(|m| age > m);
            if !over_size && !over_age {
                return;
            }
            let undelivered: Vec<String> = st
                .consumers
                .iter()
                .filter(|(_, p)| {
                    !(p.segment > oldest || (p.segment == oldest && p.offset >= info.size))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !self.remove_segment(&mut st, oldest) {
                return;
            }
            if undelivered.is_empty() && !st.consumers.is_empty() {
                Counters::add(&self.counters.deleted_segments, 1);
                continue;
            }
            Counters::add(&self.counters.dropped_segments, 1);
            Counters::add(&self.counters.dropped_samples, info.samples);
            tracing::warn!(
                segment = oldest,
                bytes = info.size,
                samples = info.samples,
                consumers = ?undelivered,
                reason = if over_size { "max_bytes" } else { "max_age" },
                total_bytes = total,
                "WAL over its bound: dropped the oldest segment before every consumer delivered it"
            );
        }
    }

    fn stats(&self) -> WalStats {
        let head = *self.head.borrow();
        let st = lock(&self.state);
        let size_of = |k: u64, v: &SegmentInfo| {
            if k == head.segment {
                head.offset.max(v.size)
            } else {
                v.size
            }
        };
        let bytes_on_disk = st.segments.iter().map(|(k, v)| size_of(*k, v)).sum();
        let now = SystemTime::now();
        let oldest_segment_age = st.segments.iter().next().map(|(k, v)| {
            if *k == head.segment {
                Duration::ZERO
            } else {
                now.duration_since(v.modified).unwrap_or_default()
            }
        });
        let consumers = st
            .consumers
            .iter()
            .map(|(name, p)| {
                let backlog_bytes = st
                    .segments
                    .iter()
                    .filter(|(k, _)| **k >= p.segment)
                    .map(|(k, v)| {
                        let size = size_of(*k, v);
                        if *k == p.segment {
                            size.saturating_sub(p.offset.max(SEGMENT_HEADER_LEN))
                        } else {
                            size - SEGMENT_HEADER_LEN.min(size)
                        }
                    })
                    .sum();
                ConsumerStats {
                    name: name.clone(),
                    checkpoint: *p,
                    backlog_bytes,
                }
            })
            .collect();
        let c = &self.counters;
        WalStats {
            bytes_on_disk,
            segments: st.segments.len() as u64,
            appended_samples: Counters::get(&c.appended_samples),
            appended_series: Counters::get(&c.appended_series),
            appended_metadata: Counters::get(&c.appended_metadata),
            appended_bytes: Counters::get(&c.appended_bytes),
            deleted_segments: Counters::get(&c.deleted_segments),
            dropped_segments: Counters::get(&c.dropped_segments),
            dropped_samples: Counters::get(&c.dropped_samples),
            truncated_tails: c.truncated_tails.load(Ordering::Relaxed),
            oldest_segment_age,
            head,
            consumers,
        }
    }
}
