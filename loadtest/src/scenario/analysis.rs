//! Judging what the sink received, slot by slot.
//!
//! Every series of a target is scraped at `k * interval + offset`: the
//! timestamps of one series share a phase (`ts mod interval`). A sample is
//! booked to the slot nearest its timestamp. Per series the expected slots
//! are:
//! - from the window's first slot when the series existed before the
//!   window (a sample before it) and its target was in discovery; else from
//!   the series' first sample in the window (a target or series that
//!   appeared during the run: what came before it is not a gap);
//! - to the window's last slot while its target is still in discovery at
//!   the end; else to its last sample (a target that left).
//!
//! A missing slot inside that range is lost data; a run of consecutive
//! missing slots is one gap. Two samples in one slot are a duplicate, a
//! sample older than one already received is out of order (a WAL replayed
//! after a restart arrives so), and staleness markers are split by whether
//! the series' target left discovery.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::sink::SeriesTimeline;

/// When a target was in discovery (ms since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presence {
    /// Added at (None: from the start of the run).
    pub from_ms: Option<i64>,
    /// Removed at (None: still there).
    pub until_ms: Option<i64>,
}

/// One run of missing slots of one series.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MissingRun {
    /// The first missing slot's time (ms).
    pub from_ms: i64,
    /// Missing slots in a row.
    pub slots: u64,
}

/// What one series received against what it should have.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeriesVerdict {
    /// The `instance` label.
    pub instance: String,
    /// `__name__` and the other labels but job and instance, Prometheus style.
    pub series: String,
    /// Slots expected.
    pub expected: u64,
    /// Expected slots received.
    pub received: u64,
    /// Runs of missing slots, oldest first.
    pub missing_runs: Vec<MissingRun>,
    /// Samples that repeated a slot already received.
    pub duplicates: u64,
    /// Samples older than one received before them.
    pub out_of_order: u64,
    /// Staleness markers at or after the window's start.
    pub stale_markers: u64,
}

impl SeriesVerdict {
    /// Missing slots.
    pub fn missing(&self) -> u64 {
        self.missing_runs.iter().map(|r| r.slots).sum()
    }
}

/// Totals of a set of series.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Delivery {
    /// Series judged.
    pub series: u64,
    /// Series of targets in discovery for the whole window that never
    /// arrived (each counts the whole window as missing).
    pub series_never_received: u64,
    /// Samples (slots) expected.
    pub samples_expected: u64,
    /// Expected slots received.
    pub samples_received: u64,
    /// Expected slots missing.
    pub samples_missing: u64,
    /// Runs of missing slots.
    pub gaps: u64,
    /// The longest run of missing slots, in ms (slots x interval).
    pub longest_gap_ms: u64,
    /// Samples repeating a slot.
    pub duplicates: u64,
    /// Samples older than one received before.
    pub out_of_order: u64,
    /// Staleness markers of series whose target is still in discovery.
    pub stale_markers_present_targets: u64,
    /// Staleness markers of series whose target left discovery.
    pub stale_markers_departed_targets: u64,
}

/// The judgement of a run.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Totals over every target series.
    pub totals: Delivery,
    /// Per series, only those with something wrong.
    pub faulty: Vec<SeriesVerdict>,
    /// Per instance totals.
    pub per_instance: BTreeMap<String, Delivery>,
    /// Every series' verdict by instance (for scenario-specific claims).
    pub by_instance: BTreeMap<String, Vec<SeriesVerdict>>,
}

/// The inputs of [`analyze`].
#[derive(Debug)]
pub struct Window<'a> {
    /// First ms of the judged window.
    pub from_ms: i64,
    /// End (exclusive).
    pub to_ms: i64,
    /// The scrape interval.
    pub interval_ms: i64,
    /// Discovery history of every target by instance.
    pub presence: &'a HashMap<String, Presence>,
    /// Series each target exposed from before the window to its end
    /// (targets that serve none are left out).
    pub series_per_target: &'a HashMap<String, usize>,
}

/// True for the series a scraper writes itself.
pub(crate) fn scraper_made(name: &str) -> bool {
    name == "up" || name.starts_with("scrape_")
}

fn series_name(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map_or("", String::as_str);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance" | "fleet"))
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    if rest.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}

/// The most common `ts mod interval` (ties: the smallest).
fn phase(samples: &[i64], interval: i64) -> i64 {
    let mut counts: HashMap<i64, u32> = HashMap::new();
    for ts in samples {
        *counts.entry(ts.rem_euclid(interval)).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(p, _)| p)
}

/// Judges one series.
pub fn judge_series(t: &SeriesTimeline, w: &Window<'_>) -> Option<SeriesVerdict> {
    let name = t.labels.get("__name__").map_or("", String::as_str);
    if scraper_made(name) {
        return None;
    }
    let instance = t.labels.get("instance").cloned().unwrap_or_default();
    let presence = w.presence.get(&instance).copied().unwrap_or_default();
    let interval = w.interval_ms.max(1);
    let samples = &t.timeline.samples;
    let ph = phase(samples, interval);
    let slot = |ts: i64| (ts - ph + interval / 2).div_euclid(interval);
    let slot_time = |k: i64| k * interval + ph;
    let mut v = SeriesVerdict {
        instance,
        series: series_name(&t.labels),
        ..SeriesVerdict::default()
    };
    // Arrival order: duplicates and out-of-order samples.
    let mut seen_slots: BTreeSet<i64> = BTreeSet::new();
    let mut newest = i64::MIN;
    for &ts in samples {
        if !seen_slots.insert(slot(ts)) {
            v.duplicates += 1;
        } else if ts < newest {
            v.out_of_order += 1;
        }
        newest = newest.max(ts);
    }
    v.stale_markers = t
        .timeline
        .stale_markers
        .iter()
        .filter(|&&ts| ts >= w.from_ms)
        .count() as u64;
    // The window in slots: the first slot at or after from, the last
    // before to.
    let first_in = slot(w.from_ms) + i64::from(slot_time(slot(w.from_ms)) < w.from_ms);
    let last_in = slot(w.to_ms) - i64::from(slot_time(slot(w.to_ms)) >= w.to_ms);
    let in_window: Vec<i64> = seen_slots.range(first_in..=last_in).copied().collect();
    let existed_before = presence.from_ms.is_none_or(|f| f < w.from_ms)
        && seen_slots.first().is_some_and(|&s| s < first_in);
    let lo = if existed_before {
        first_in
    } else {
        match in_window.first() {
            Some(&s) => s,
            None => return Some(v),
        }
    };
    let still_there = presence.until_ms.is_none_or(|u| u >= w.to_ms);
    let hi = if still_there {
        last_in
    } else {
        match in_window.last() {
            Some(&s) => s,
            None => return Some(v),
        }
    };
    if hi < lo {
        return Some(v);
    }
    v.expected = u64::try_from(hi - lo + 1).unwrap_or(0);
    let mut run: Option<MissingRun> = None;
    for k in lo..=hi {
        if seen_slots.contains(&k) {
            v.received += 1;
            if let Some(r) = run.take() {
                v.missing_runs.push(r);
            }
        } else {
            match run.as_mut() {
                Some(r) => r.slots += 1,
                None => {
                    run = Some(MissingRun {
                        from_ms: slot_time(k),
                        slots: 1,
                    })
                }
            }
        }
    }
    if let Some(r) = run {
        v.missing_runs.push(r);
    }
    Some(v)
}

fn add(d: &mut Delivery, v: &SeriesVerdict, departed: bool, interval_ms: i64) {
    d.series += 1;
    d.samples_expected += v.expected;
    d.samples_received += v.received;
    d.samples_missing += v.missing();
    d.gaps += v.missing_runs.len() as u64;
    let longest = v.missing_runs.iter().map(|r| r.slots).max().unwrap_or(0);
    d.longest_gap_ms = d
        .longest_gap_ms
        .max(longest.saturating_mul(u64::try_from(interval_ms).unwrap_or(0)));
    d.duplicates += v.duplicates;
    d.out_of_order += v.out_of_order;
    if departed {
        d.stale_markers_departed_targets += v.stale_markers;
    } else {
        d.stale_markers_present_targets += v.stale_markers;
    }
}

/// Judges every series of `timelines` (one job's) over the window.
pub fn analyze(timelines: &[SeriesTimeline], w: &Window<'_>) -> Analysis {
    let mut a = Analysis::default();
    let mut received_series: HashMap<String, usize> = HashMap::new();
    for t in timelines {
        let Some(v) = judge_series(t, w) else {
            continue;
        };
        let departed = w
            .presence
            .get(&v.instance)
            .is_some_and(|p| p.until_ms.is_some());
        add(&mut a.totals, &v, departed, w.interval_ms);
        add(
            a.per_instance.entry(v.instance.clone()).or_default(),
            &v,
            departed,
            w.interval_ms,
        );
        *received_series.entry(v.instance.clone()).or_default() += 1;
        let wrong = v.missing() > 0
            || v.duplicates > 0
            || v.out_of_order > 0
            || (v.stale_markers > 0 && !departed);
        if wrong {
            a.faulty.push(v.clone());
        }
        a.by_instance.entry(v.instance.clone()).or_default().push(v);
    }
    // Series of whole-window targets that never arrived.
    let slots = u64::try_from((w.to_ms - w.from_ms) / w.interval_ms.max(1)).unwrap_or(0);
    for (instance, &n) in w.series_per_target {
        let p = w.presence.get(instance).copied().unwrap_or_default();
        let whole =
            p.from_ms.is_none_or(|f| f < w.from_ms) && p.until_ms.is_none_or(|u| u >= w.to_ms);
        let got = received_series.get(instance).copied().unwrap_or(0);
        if whole && got < n {
            let lost = (n - got) as u64;
            a.totals.series_never_received += lost;
            a.totals.samples_expected += lost * slots;
            a.totals.samples_missing += lost * slots;
            a.totals.gaps += lost;
            let d = a.per_instance.entry(instance.clone()).or_default();
            d.series_never_received += lost;
            d.samples_expected += lost * slots;
            d.samples_missing += lost * slots;
        }
    }
    a.faulty.sort_by(|x, y| {
        (y.missing(), y.duplicates, y.stale_markers).cmp(&(
            x.missing(),
            x.duplicates,
            x.stale_markers,
        ))
    });
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Timeline;

    fn series(instance: &str, samples: Vec<i64>, stale: Vec<i64>) -> SeriesTimeline {
        SeriesTimeline {
            labels: [("__name__", "m"), ("instance", instance), ("job", "fleet")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            timeline: Timeline {
                samples,
                stale_markers: stale,
            },
        }
    }

    /// The window [10 s, 20 s) at a 1 s interval.
    fn window<'a>(
        presence: &'a HashMap<String, Presence>,
        per: &'a HashMap<String, usize>,
    ) -> Window<'a> {
        Window {
            from_ms: 10_000,
            to_ms: 20_000,
            interval_ms: 1000,
            presence,
            series_per_target: per,
        }
    }

    #[test]
    fn a_missing_slot_inside_the_window_is_a_gap_and_late_stamps_book_to_their_slot() {
        let presence = HashMap::new();
        let per = HashMap::from([("a".to_owned(), 1)]);
        let w = window(&presence, &per);
        // Phase 300; 14_300 missing, 15_330 late-stamped, 17_300 twice.
        let mut ts: Vec<i64> = (5..20).map(|k| k * 1000 + 300).collect();
        ts.retain(|&t| t != 14_300);
        for t in ts.iter_mut() {
            if *t == 15_300 {
                *t = 15_330;
            }
        }
        ts.push(17_300);
        ts.push(12_300);
        let a = analyze(&[series("a", ts, vec![])], &w);
        let v = &a.faulty[0];
        assert_eq!(v.expected, 10, "10_300 ..= 19_300");
        assert_eq!(v.received, 9);
        assert_eq!(
            v.missing_runs,
            vec![MissingRun {
                from_ms: 14_300,
                slots: 1
            }]
        );
        assert_eq!(v.duplicates, 2, "17_300 and 12_300 again");
        assert_eq!(a.totals.gaps, 1);
        assert_eq!(a.totals.longest_gap_ms, 1000);
    }

    #[test]
    fn departed_and_new_targets_are_judged_between_their_first_and_last_samples() {
        let presence = HashMap::from([
            (
                "gone".to_owned(),
                Presence {
                    from_ms: None,
                    until_ms: Some(15_000),
                },
            ),
            (
                "new".to_owned(),
                Presence {
                    from_ms: Some(13_000),
                    until_ms: None,
                },
            ),
        ]);
        let per = HashMap::new();
        let w = window(&presence, &per);
        let gone = series("gone", (5..15).map(|k| k * 1000).collect(), vec![15_000]);
        let new = series("new", (14..20).map(|k| k * 1000 + 1).collect(), vec![]);
        let a = analyze(&[gone, new], &w);
        assert!(a.faulty.is_empty(), "{:?}", a.faulty);
        assert_eq!(a.totals.samples_expected, 5 + 6);
        assert_eq!(a.totals.stale_markers_departed_targets, 1);
        assert_eq!(a.totals.stale_markers_present_targets, 0);
    }

    #[test]
    fn series_that_never_arrived_count_the_whole_window() {
        let presence = HashMap::new();
        let per = HashMap::from([("a".to_owned(), 3)]);
        let w = window(&presence, &per);
        let a = analyze(
            &[series("a", (5..20).map(|k| k * 1000).collect(), vec![])],
            &w,
        );
        assert_eq!(a.totals.series_never_received, 2);
        assert_eq!(a.totals.samples_missing, 20);
        assert_eq!(a.totals.samples_expected, 30);
    }
}
