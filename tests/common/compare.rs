//! Differential comparison of what two agents delivered.
//!
//! Timing differs between two processes, so the comparison is "modulo
//! timing": per series, the set of distinct values (ordinary NaN folded to
//! one value), whether a staleness marker arrived, whether the series ended
//! stale, and whether all its samples carry one fixed timestamp (an
//! honored explicit timestamp).

use std::collections::{BTreeMap, BTreeSet};

use super::STALE_NAN_BITS;
use super::capture::{Labels, Samples};

/// Prometheus' `math.NaN()` bits; every ordinary NaN is folded to it.
pub const PROM_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Synthetic series whose values depend on timing.
pub const TIMING_DEPENDENT: &[&str] = &["scrape_duration_seconds"];

/// What is compared per series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sig {
    /// Distinct non-stale values (bits), or empty when ignored.
    pub values: BTreeSet<u64>,
    /// A staleness marker arrived.
    pub stale: bool,
    /// The sample with the highest timestamp is a staleness marker.
    pub ends_stale: bool,
    /// All non-stale samples share this timestamp. (How many samples is
    /// not compared: Prometheus agent re-sends an honored explicit
    /// timestamp's sample at every scrape, a sender may send it once; a
    /// receiver stores one either way.)
    pub fixed_ts: Option<i64>,
}

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vals: Vec<String> = self.values.iter().map(|b| fmt_bits(*b)).collect();
        write!(
            f,
            "values={{{}}} stale={} ends_stale={} fixed_ts={:?}",
            vals.join(","),
            self.stale,
            self.ends_stale,
            self.fixed_ts
        )
    }
}

/// A value for messages: the float, plus the bits for NaNs.
pub fn fmt_bits(b: u64) -> String {
    let v = f64::from_bits(b);
    if v.is_nan() {
        format!("NaN(0x{b:016x})")
    } else {
        format!("{v}")
    }
}

/// The signature of one series' samples.
pub fn sig(labels: &Labels, samples: &[(i64, u64)]) -> Sig {
    let name = labels
        .iter()
        .find(|(n, _)| n == "__name__")
        .map_or("", |(_, v)| v.as_str());
    let ignore_values = TIMING_DEPENDENT.contains(&name);
    let mut values = BTreeSet::new();
    let mut ts = BTreeSet::new();
    let mut stale = false;
    let mut last: Option<(i64, u64)> = None;
    for &(t, b) in samples {
        if last.is_none_or(|(lt, _)| t >= lt) {
            last = Some((t, b));
        }
        if b == STALE_NAN_BITS {
            stale = true;
            continue;
        }
        ts.insert(t);
        if !ignore_values {
            values.insert(if f64::from_bits(b).is_nan() {
                PROM_NAN_BITS
            } else {
                b
            });
        }
    }
    Sig {
        values,
        stale,
        ends_stale: last.is_some_and(|(_, b)| b == STALE_NAN_BITS),
        fixed_ts: if ts.len() == 1 {
            ts.first().copied()
        } else {
            None
        },
    }
}

/// Signatures of every series.
pub fn sigs(samples: &Samples) -> BTreeMap<Labels, Sig> {
    samples
        .iter()
        .map(|(l, s)| (l.clone(), sig(l, s)))
        .collect()
}

/// `[(ts, value), ...]` (at most 12) for messages.
pub fn fmt_samples(s: &[(i64, u64)]) -> String {
    let shown: Vec<String> = s
        .iter()
        .take(12)
        .map(|(t, b)| {
            if *b == STALE_NAN_BITS {
                format!("({t}, stale)")
            } else {
                format!("({t}, {})", fmt_bits(*b))
            }
        })
        .collect();
    let more = if s.len() > 12 {
        format!(" +{} more", s.len() - 12)
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

/// `{a="b", ...}` for messages.
pub fn fmt_labels(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Differences between the reference (`prom`) and `ours`, one line each;
/// empty when they agree.
pub fn diff(prom: &Samples, ours: &Samples) -> Vec<String> {
    let a = sigs(prom);
    let b = sigs(ours);
    let mut out = Vec::new();
    for (l, sa) in &a {
        match b.get(l) {
            None => out.push(format!("only in prometheus: {} {sa}", fmt_labels(l))),
            Some(sb) if sa != sb => out.push(format!(
                "differs: {}\n    prometheus: {sa}\n    ours:       {sb}\n    \
prometheus samples: {}\n    ours samples:       {}",
                fmt_labels(l),
                fmt_samples(&prom[l]),
                fmt_samples(&ours[l])
            )),
            Some(_) => {}
        }
    }
    for (l, sb) in &b {
        if !a.contains_key(l) {
            out.push(format!("only in ours: {} {sb}", fmt_labels(l)));
        }
    }
    out
}
