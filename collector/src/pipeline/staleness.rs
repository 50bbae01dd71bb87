//! Staleness markers: a series written (without an explicit timestamp) in
//! the previous scrape and absent from this one gets one StaleNaN at this
//! scrape's timestamp, after which it must be defined again to be used.

use super::series_table::SeriesTable;
use crate::series::{AppendBatch, Sample, stale_marker};

/// Marks stale every series whose last tracked scrape is `prev` (a series
/// written again since carries a later iteration). Returns how many
/// markers were written.
pub(crate) fn mark_stale(
    table: &mut SeriesTable,
    prev: u64,
    ts_ms: i64,
    out: &mut AppendBatch,
) -> u64 {
    let mut n = 0;
    for e in table.iter_mut() {
        if e.tracked != Some(prev) {
            continue;
        }
        e.tracked = None;
        // A marker not after the last sample would be out of order.
        if ts_ms > e.last_ts {
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
