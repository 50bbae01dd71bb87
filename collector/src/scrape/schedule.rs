//! The absolute slot schedule of a target and the timestamp of a scrape.
//!
//! A target with id `id` and interval `i` is scraped at the unix-ms times
//! `k * i + offset(id, i)`. The offset is a pure function of the target id
//! (itself a hash of the job name and the target's final labels), so every
//! host computes the same slots: a target handed from one shard to another
//! keeps its rhythm. Prometheus 2.42 also spreads targets by a hash of the
//! target, but XORs it with a host-specific seed and counts from process
//! start; we drop the seed on purpose.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far from its slot a scrape may start and still be stamped with the
/// slot time.
///
/// Prometheus 2.42 stamps samples with the actual start time, but snaps it
/// to `previous + interval` when within 2 ms (`ScrapeTimestampTolerance`),
/// for better compression. We stamp with the *slot* time whenever the scrape
/// starts within this tolerance of it, so two shards scraping the same
/// target across a handover produce identical timestamps (the receiver sees
/// a duplicate, not a second sample a few ms apart). Tokio timers have 1 ms
/// granularity and a busy runtime wakes late: on a loaded 2-core test host
/// scrapes started up to 18 ms after their slot, hence 25 ms rather than
/// Prometheus' 2 ms. A scrape that starts later than that (an overloaded
/// host) is stamped with its real start time: the data is not from the
/// slot.
pub const SLOT_TOLERANCE_MS: i64 = 25;

/// The current unix time in milliseconds.
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The interval in whole milliseconds, at least 1.
fn interval_ms(interval: Duration) -> i64 {
    i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// The offset of a target within its interval: a stable function of its id,
/// the same on every host, in `[0, interval)`.
pub fn slot_offset(target_id: u64, interval: Duration) -> Duration {
    let ms = interval_ms(interval) as u64;
    Duration::from_millis(target_id % ms)
}

/// The first slot at or after `now_ms` (unix ms) for `target_id`.
pub fn next_slot_ms(target_id: u64, interval: Duration, now_ms: i64) -> i64 {
    let ms = interval_ms(interval);
    let off = slot_offset(target_id, interval).as_millis() as i64;
    let k = now_ms.saturating_sub(off).div_euclid(ms);
    let slot = k.saturating_mul(ms).saturating_add(off);
    if slot >= now_ms {
        slot
    } else {
        slot.saturating_add(ms)
    }
}

/// The sample timestamp of a scrape scheduled at `slot_ms` that started at
/// `started_ms`: the slot when the start is within [`SLOT_TOLERANCE_MS`] of
/// it, else the actual start.
pub fn scrape_timestamp(slot_ms: i64, started_ms: i64) -> i64 {
    if (started_ms - slot_ms).abs() <= SLOT_TOLERANCE_MS {
        slot_ms
    } else {
        started_ms
    }
}

/// Slots of an unchanged schedule strictly between `last_ms` and `next_ms`
/// (skipped because a scrape overran them).
pub fn missed_slots(last_ms: i64, next_ms: i64, interval: Duration) -> u64 {
    let ms = interval_ms(interval);
    let gap = next_ms.saturating_sub(last_ms);
    if gap <= ms {
        0
    } else {
        u64::try_from(gap / ms - 1).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn slot_is_offset_plus_multiple_of_interval() {
        let id = 1_234_567;
        let off = slot_offset(id, S).as_millis() as i64;
        assert_eq!(off, 567);
        assert_eq!(next_slot_ms(id, S, 10_000), 10_567);
        assert_eq!(next_slot_ms(id, S, 10_567), 10_567);
        assert_eq!(next_slot_ms(id, S, 10_568), 11_567);
        assert_eq!(next_slot_ms(id, S, -1), 567);
        assert_eq!(next_slot_ms(id, S, -500), -433);
    }

    #[test]
    fn zero_interval_does_not_divide_by_zero() {
        assert_eq!(slot_offset(7, Duration::ZERO), Duration::ZERO);
        assert_eq!(next_slot_ms(7, Duration::ZERO, 42), 42);
    }

    #[test]
    fn timestamp_snaps_to_slot_within_tolerance_only() {
        assert_eq!(scrape_timestamp(1000, 1000), 1000);
        assert_eq!(scrape_timestamp(1000, 1000 + SLOT_TOLERANCE_MS), 1000);
        assert_eq!(scrape_timestamp(1000, 999), 1000);
        let late = 1000 + SLOT_TOLERANCE_MS + 1;
        assert_eq!(scrape_timestamp(1000, late), late);
    }

    #[test]
    fn missed_slots_counts_the_gap() {
        assert_eq!(missed_slots(1000, 2000, S), 0);
        assert_eq!(missed_slots(1000, 3000, S), 1);
        assert_eq!(missed_slots(1000, 5000, S), 3);
        assert_eq!(missed_slots(1000, 1500, S), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn next_slot_is_the_first_slot_at_or_after_now(
                id in any::<u64>(),
                interval_ms in 1u64..3_600_000,
                now in -1_000_000_000_000i64..4_000_000_000_000i64,
            ) {
                let interval = Duration::from_millis(interval_ms);
                let slot = next_slot_ms(id, interval, now);
                prop_assert!(slot >= now);
                prop_assert!(slot - now < interval_ms as i64);
                let off = slot_offset(id, interval).as_millis() as i64;
                prop_assert_eq!(slot.rem_euclid(interval_ms as i64), off);
                // The same id gets the same offset whatever "now" is.
                let later = next_slot_ms(id, interval, now + 12_345);
                prop_assert_eq!(later.rem_euclid(interval_ms as i64), off);
            }
        }
    }
}
