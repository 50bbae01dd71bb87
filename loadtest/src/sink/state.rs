//! Per-series bookkeeping of everything the sink received.
//!
//! Each series is a 64-bit hash of its labels mapped to a 64-byte
//! [`SeriesState`]; labels are kept only when asked (for `/series`), so
//! millions of series fit in a few hundred MB.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use promshard_proto::STALE_NAN_BITS;
use promshard_proto::prometheus::{Label, TimeSeries, WriteRequest};
use xxhash_rust::xxh3::Xxh3;

use super::decode::RejectReason;
use super::matcher::Matcher;

const SHARDS: usize = 16;

/// What the sink knows about one series.
#[derive(Debug, Clone, Copy, Default)]
struct SeriesState {
    first_ts: i64,
    last_ts: i64,
    last_value: f64,
    samples: u32,
    duplicates: u32,
    out_of_order: u32,
    gaps: u32,
    stale_markers: u32,
    decreases: u32,
    /// Smallest step between consecutive timestamps seen, in ms (0 = none).
    learned_interval_ms: u32,
    job: u16,
    /// The last in-order sample was a staleness marker.
    after_stale: bool,
    /// The name ends in `_total`, `_count`, `_sum` or `_bucket`.
    counter_like: bool,
    /// `up` or `scrape_*`: a series the scraper made, not the target.
    scraper_made: bool,
}

#[derive(Debug, Default)]
struct Shard {
    series: HashMap<u64, SeriesState>,
    /// `name\xffvalue\xff...` per series, when labels are recorded.
    labels: HashMap<u64, Box<str>>,
    /// Every sample timestamp per series in arrival order, while timelines
    /// are recorded ([`SinkState::record_timelines`]).
    timelines: HashMap<u64, Timeline>,
}

/// The timestamps one series received, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Timestamps (ms) of samples that are not staleness markers.
    pub samples: Vec<i64>,
    /// Timestamps (ms) of staleness markers.
    pub stale_markers: Vec<i64>,
}

/// One series' labels and [`Timeline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesTimeline {
    /// Labels, sorted by name (empty unless labels are recorded).
    pub labels: BTreeMap<String, String>,
    /// What it received since timelines are recorded.
    pub timeline: Timeline,
}

/// Totals of one job (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Distinct series.
    pub series: u64,
    /// Samples received, staleness markers included.
    pub samples: u64,
    /// Samples whose timestamp equals the series' last one.
    pub duplicates: u64,
    /// Samples whose timestamp is below the series' last one.
    pub out_of_order: u64,
    /// Steps between consecutive samples longer than 1.5 intervals.
    pub gaps: u64,
    /// Staleness markers (value bits == STALE_NAN_BITS).
    pub stale_markers: u64,
    /// In-order steps where a counter-like series' value went down.
    pub counter_decreases: u64,
}

/// The JSON `GET /summary` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Write requests received (accepted, rejected and faulted).
    pub requests: u64,
    /// Requests decoded and recorded.
    pub accepted_requests: u64,
    /// Requests answered 400, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Requests answered with an injected fault status.
    pub injected_faults: u64,
    /// Totals over every series.
    #[serde(flatten)]
    pub totals: Counts,
    /// The same per `job` label value.
    pub jobs: BTreeMap<String, Counts>,
}

/// One series in `GET /series`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesReport {
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Samples received.
    pub samples: u64,
    /// Duplicate timestamps.
    pub duplicates: u64,
    /// Out-of-order timestamps.
    pub out_of_order: u64,
    /// Gaps.
    pub gaps: u64,
    /// Staleness markers.
    pub stale_markers: u64,
    /// Value decreases of a counter-like series.
    pub counter_decreases: u64,
    /// First timestamp (ms).
    pub first_timestamp: i64,
    /// Last timestamp (ms).
    pub last_timestamp: i64,
    /// Last value (NaN as null).
    pub last_value: Option<f64>,
}

/// The sink's shared state.
#[derive(Debug)]
pub struct SinkState {
    shards: Vec<Mutex<Shard>>,
    interval_ms: Option<u32>,
    record_labels: bool,
    jobs: Mutex<(Vec<String>, HashMap<String, u16>)>,
    pub(crate) requests: AtomicU64,
    accepted: AtomicU64,
    injected: AtomicU64,
    rejected: Mutex<BTreeMap<RejectReason, u64>>,
    /// `[from, to)` in ms of the timestamp window [`SinkState::window_samples`]
    /// counts; empty (from == to) until set.
    window_from_ms: AtomicI64,
    window_to_ms: AtomicI64,
    window_samples: AtomicU64,
    /// Keep every timestamp per series (see [`SinkState::record_timelines`]).
    timelines_on: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind; keep
    // serving them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hash_labels(labels: &[Label]) -> u64 {
    let mut h = Xxh3::new();
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

fn is_counter_like(name: &str) -> bool {
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| name.ends_with(s))
}

impl SinkState {
    /// A state that detects gaps against `interval_ms` (or a per-series
    /// learned interval when `None`), and keeps labels for `/series` when
    /// `record_labels`.
    pub fn new(interval_ms: Option<u32>, record_labels: bool) -> SinkState {
        SinkState {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            interval_ms,
            record_labels,
            jobs: Mutex::new((vec![String::new()], HashMap::from([(String::new(), 0)]))),
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            window_from_ms: AtomicI64::new(0),
            window_to_ms: AtomicI64::new(0),
            window_samples: AtomicU64::new(0),
            timelines_on: AtomicBool::new(false),
        }
    }

    /// From now on, keeps every sample's timestamp per series (about 8
    /// bytes per sample: for scenario runs of minutes, not for days) when
    /// `on`; off drops what was kept.
    pub fn record_timelines(&self, on: bool) {
        self.timelines_on.store(on, Ordering::SeqCst);
        if !on {
            for shard in &self.shards {
                lock(shard).timelines.clear();
            }
        }
    }

    /// The timelines of the series matching `matcher` (labels must be
    /// recorded for a non-empty matcher to match anything).
    pub fn timelines(&self, matcher: &Matcher) -> Vec<SeriesTimeline> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = lock(shard);
            for (hash, timeline) in &shard.timelines {
                let labels = shard
                    .labels
                    .get(hash)
                    .map(|p| unpack(p))
                    .unwrap_or_default();
                if matcher.matches(&labels) {
                    out.push(SeriesTimeline {
                        labels,
                        timeline: timeline.clone(),
                    });
                }
            }
        }
        out
    }

    /// Starts counting, from now on, the samples whose timestamp lies in
    /// `[from_ms, to_ms)`, staleness markers and the scraper's own `up` and
    /// `scrape_*` series left out (resets the count).
    pub fn set_window(&self, from_ms: i64, to_ms: i64) {
        // Empty the window first (to == from), so a record running
        // meanwhile never counts against a half-set window.
        self.window_to_ms.store(from_ms, Ordering::SeqCst);
        self.window_samples.store(0, Ordering::SeqCst);
        self.window_from_ms.store(from_ms, Ordering::SeqCst);
        self.window_to_ms.store(to_ms, Ordering::SeqCst);
    }

    /// Samples received with a timestamp in the window of
    /// [`SinkState::set_window`] (duplicates included: they are counted
    /// separately in the summary).
    pub fn window_samples(&self) -> u64 {
        self.window_samples.load(Ordering::SeqCst)
    }

    pub(crate) fn count_rejected(&self, reason: RejectReason) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    pub(crate) fn count_injected(&self) {
        self.injected.fetch_add(1, Ordering::Relaxed);
    }

    fn job_index(&self, job: &str) -> u16 {
        let mut jobs = lock(&self.jobs);
        if let Some(&i) = jobs.1.get(job) {
            return i;
        }
        // Past 65,535 jobs every further one is booked under the last.
        let i = u16::try_from(jobs.0.len()).unwrap_or(u16::MAX);
        if i < u16::MAX {
            jobs.0.push(job.to_owned());
            jobs.1.insert(job.to_owned(), i);
        }
        i
    }

    /// Records every sample of an already checked request.
    pub fn record(&self, req: &WriteRequest) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        // One lock per shard and request; a series stays in one shard, so
        // its samples keep the request's order.
        // The window is read once per request, not once per series.
        let window = (
            self.window_from_ms.load(Ordering::Relaxed),
            self.window_to_ms.load(Ordering::Relaxed),
        );
        let mut by_shard: Vec<Vec<(u64, usize)>> = vec![Vec::new(); SHARDS];
        for (i, ts) in req.timeseries.iter().enumerate() {
            let hash = hash_labels(&ts.labels);
            by_shard[(hash >> 60) as usize % SHARDS].push((hash, i));
        }
        for (shard, batch) in self.shards.iter().zip(by_shard) {
            if batch.is_empty() {
                continue;
            }
            let mut shard = lock(shard);
            for (hash, i) in batch {
                let ts = &req.timeseries[i];
                self.record_series(&mut shard, hash, ts, window);
            }
        }
    }

    fn record_series(&self, shard: &mut Shard, hash: u64, ts: &TimeSeries, window: (i64, i64)) {
        if self.timelines_on.load(Ordering::Relaxed) {
            let timeline = shard.timelines.entry(hash).or_default();
            for sample in &ts.samples {
                if sample.value.to_bits() == STALE_NAN_BITS {
                    timeline.stale_markers.push(sample.timestamp);
                } else {
                    timeline.samples.push(sample.timestamp);
                }
            }
        }
        let state = match shard.series.get_mut(&hash) {
            Some(s) => s,
            None => {
                let label = |n: &str| {
                    ts.labels
                        .iter()
                        .find(|l| l.name == n)
                        .map_or("", |l| l.value.as_str())
                };
                let name = label("__name__");
                let fresh = SeriesState {
                    job: self.job_index(label("job")),
                    counter_like: is_counter_like(name),
                    scraper_made: name == "up" || name.starts_with("scrape_"),
                    ..SeriesState::default()
                };
                if self.record_labels {
                    let mut s = String::new();
                    for l in &ts.labels {
                        s.push_str(&l.name);
                        s.push('\u{ff}');
                        s.push_str(&l.value);
                        s.push('\u{ff}');
                    }
                    shard.labels.insert(hash, s.into_boxed_str());
                }
                shard.series.entry(hash).or_insert(fresh)
            }
        };
        let (from, to) = window;
        let mut in_window = 0;
        for sample in &ts.samples {
            observe(state, sample.timestamp, sample.value, self.interval_ms);
            if !state.scraper_made
                && (from..to).contains(&sample.timestamp)
                && sample.value.to_bits() != STALE_NAN_BITS
            {
                in_window += 1;
            }
        }
        if in_window > 0 {
            self.window_samples.fetch_add(in_window, Ordering::Relaxed);
        }
    }

    /// Totals and the per-job breakdown.
    pub fn summary(&self) -> Summary {
        let names = lock(&self.jobs).0.clone();
        let mut totals = Counts::default();
        let mut per_job: Vec<Counts> = vec![Counts::default(); names.len()];
        for shard in &self.shards {
            let shard = lock(shard);
            for s in shard.series.values() {
                for c in [
                    &mut totals,
                    &mut per_job[usize::from(s.job).min(names.len() - 1)],
                ] {
                    add(c, s);
                }
            }
        }
        Summary {
            requests: self.requests.load(Ordering::Relaxed),
            accepted_requests: self.accepted.load(Ordering::Relaxed),
            rejected: lock(&self.rejected)
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect(),
            injected_faults: self.injected.load(Ordering::Relaxed),
            totals,
            jobs: names
                .into_iter()
                .zip(per_job)
                .filter(|(_, c)| c.series > 0)
                .collect(),
        }
    }

    /// Series matching `matcher` (labels must be recorded), at most `limit`.
    pub fn series(&self, matcher: &Matcher, limit: usize) -> Vec<SeriesReport> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = lock(shard);
            for (hash, packed) in &shard.labels {
                if out.len() >= limit {
                    return out;
                }
                let labels = unpack(packed);
                if !matcher.matches(&labels) {
                    continue;
                }
                if let Some(s) = shard.series.get(hash) {
                    out.push(SeriesReport {
                        labels,
                        samples: u64::from(s.samples),
                        duplicates: u64::from(s.duplicates),
                        out_of_order: u64::from(s.out_of_order),
                        gaps: u64::from(s.gaps),
                        stale_markers: u64::from(s.stale_markers),
                        counter_decreases: u64::from(s.decreases),
                        first_timestamp: s.first_ts,
                        last_timestamp: s.last_ts,
                        last_value: (!s.last_value.is_nan()).then_some(s.last_value),
                    });
                }
            }
        }
        out
    }
}

fn unpack(packed: &str) -> BTreeMap<String, String> {
    let mut parts = packed.split('\u{ff}');
    let mut out = BTreeMap::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        out.insert(k.to_owned(), v.to_owned());
    }
    out
}

fn add(c: &mut Counts, s: &SeriesState) {
    c.series += 1;
    c.samples += u64::from(s.samples);
    c.duplicates += u64::from(s.duplicates);
    c.out_of_order += u64::from(s.out_of_order);
    c.gaps += u64::from(s.gaps);
    c.stale_markers += u64::from(s.stale_markers);
    c.counter_decreases += u64::from(s.decreases);
}

/// Books one sample of a series.
fn observe(s: &mut SeriesState, ts: i64, value: f64, interval_ms: Option<u32>) {
    let stale = value.to_bits() == STALE_NAN_BITS;
    s.samples = s.samples.saturating_add(1);
    if stale {
        s.stale_markers = s.stale_markers.saturating_add(1);
    }
    if s.samples == 1 {
        s.first_ts = ts;
        s.last_ts = ts;
        s.last_value = value;
        s.after_stale = stale;
        return;
    }
    if ts == s.last_ts {
        s.duplicates = s.duplicates.saturating_add(1);
        return;
    }
    if ts < s.last_ts {
        s.out_of_order = s.out_of_order.saturating_add(1);
        return;
    }
    let step = u32::try_from(ts - s.last_ts).unwrap_or(u32::MAX);
    // A series that went stale and came back did not miss a slot.
    if !s.after_stale {
        let interval = interval_ms.unwrap_or(s.learned_interval_ms);
        if interval > 0 && u64::from(step) * 2 > u64::from(interval) * 3 {
            s.gaps = s.gaps.saturating_add(1);
        }
        if s.learned_interval_ms == 0 || step < s.learned_interval_ms {
            s.learned_interval_ms = step;
        }
    }
    if s.counter_like && !stale && !s.last_value.is_nan() && value < s.last_value {
        s.decreases = s.decreases.saturating_add(1);
    }
    s.last_ts = ts;
    s.last_value = value;
    s.after_stale = stale;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_state_is_compact() {
        assert!(std::mem::size_of::<SeriesState>() <= 64);
    }

    #[test]
    fn observe_counts_each_anomaly_once() {
        let mut s = SeriesState::default();
        for (ts, v) in [
            (1000, 1.0),
            (2000, 2.0),
            (2000, 2.0),
            (1500, 9.0),
            (5000, 3.0),
            (6000, 1.0),
        ] {
            observe(&mut s, ts, v, None);
        }
        assert_eq!(s.samples, 6);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.gaps, 1, "2000 -> 5000 with a learned 1000 ms interval");
        assert_eq!(s.decreases, 0, "not counter-like");
        assert_eq!((s.first_ts, s.last_ts), (1000, 6000));
    }

    fn request(name: &str, samples: &[(i64, f64)]) -> WriteRequest {
        use promshard_proto::prometheus::Sample;
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                samples: samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                ..TimeSeries::default()
            }],
            ..WriteRequest::default()
        }
    }

    #[test]
    fn window_counts_target_samples_with_timestamps_inside_only() {
        let state = SinkState::new(None, false);
        state.record(&request("node_x", &[(500, 1.0)]));
        assert_eq!(state.window_samples(), 0, "no window set yet");
        state.set_window(1000, 3000);
        let stale = f64::from_bits(STALE_NAN_BITS);
        state.record(&request(
            "node_x",
            &[(999, 1.0), (1000, 2.0), (2999, 3.0), (3000, 4.0)],
        ));
        state.record(&request("node_y", &[(1500, 1.0), (2500, stale)]));
        state.record(&request("up", &[(1500, 1.0)]));
        state.record(&request("scrape_duration_seconds", &[(1500, 0.1)]));
        assert_eq!(state.window_samples(), 3, "1000 and 2999 of x, 1500 of y");
        state.set_window(0, 10);
        assert_eq!(state.window_samples(), 0, "a new window starts from 0");
    }

    #[test]
    fn timelines_keep_every_timestamp_in_arrival_order_once_switched_on() {
        let state = SinkState::new(None, true);
        state.record(&request("m", &[(1000, 1.0)]));
        state.record_timelines(true);
        let stale = f64::from_bits(STALE_NAN_BITS);
        state.record(&request("m", &[(3000, 1.0), (2000, 2.0)]));
        state.record(&request("m", &[(3000, 1.0), (4000, stale)]));
        let all = state.timelines(&Matcher::default());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].labels.get("__name__").map(String::as_str), Some("m"));
        assert_eq!(
            all[0].timeline.samples,
            vec![3000, 2000, 3000],
            "arrival order, repeats kept"
        );
        assert_eq!(all[0].timeline.stale_markers, vec![4000]);
        let none = state.timelines(&Matcher::parse("other").unwrap());
        assert!(none.is_empty());
        state.record_timelines(false);
        assert!(
            state.timelines(&Matcher::default()).is_empty(),
            "off forgets"
        );
    }
}
