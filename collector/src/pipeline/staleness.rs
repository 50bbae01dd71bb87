//! Staleness markers, as Prometheus 2.42's `scrapeCache.forEachStale`: a
//! series tracked in the previous scrape (or failed scrape) and not tracked
//! in this one gets one StaleNaN at this scrape's timestamp, after which it
//! must be defined again to be used.
//!
//! Tracking happens while the body is read, so a failed scrape still
//! tracks the series it read before failing (they get no marker now, and
//! are the "previous" set of the next scrape). A series that never had a
//! sample written (first seen in a failed scrape) is defined for its
//! marker, as the agent creates it for the StaleNaN.

use super::series_table::SeriesTable;
use crate::series::{AppendBatch, Sample, stale_marker};

/// Marks stale every series whose last tracking is `prev` (a series
/// tracked again since carries a later iteration). Returns how many
/// markers were written.
pub(crate) fn mark_stale(
    table: &mut SeriesTable,
    prev: u32,
    ts_ms: i64,
    out: &mut AppendBatch,
) -> u64 {
    let mut n = 0;
    let (entries, definer) = table.iter_mut_with_definer();
    for e in entries {
        if e.tracked.map(std::num::NonZeroU32::get) != Some(prev) {
            continue;
        }
        e.tracked = None;
        // The agent refuses only a marker before the last sample (one at
        // the same timestamp is written).
        if ts_ms >= e.last_ts {
            if !e.defined {
                out.series.push(definer.def(e));
            }
            out.samples.push(Sample {
                series: e.series,
                timestamp_ms: ts_ms,
                value: stale_marker(),
            });
            e.last_ts = ts_ms;
            n += 1;
        }
        e.defined = false;
    }
    n
}
