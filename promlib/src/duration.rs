//! Prometheus durations (`model.Duration`): `1y2w3d4h5m6s7ms`, each unit at
//! most once and in that order, or `0`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in milliseconds, parsed and printed as Prometheus does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration(pub u64);

/// A duration string that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid duration string: {0:?}")]
pub struct DurationError(pub String);

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1000)
    }
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_string());
        if s == "0" {
            return Ok(Duration(0));
        }
        if s.is_empty() {
            return Err(err());
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut total: u64 = 0;
        let mut next_unit = 0; // index into UNITS: units must appear in order
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err());
            }
            let n: u64 = s[start..i].parse().map_err(|_| err())?;
            let ustart = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let idx = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .map(|p| p + next_unit)
                .ok_or_else(err)?;
            next_unit = idx + 1;
            total = n
                .checked_mul(UNITS[idx].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        // Go's time.Duration is int64 nanoseconds.
        if total > (i64::MAX as u64) / 1_000_000 {
            return Err(err());
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, mult) in UNITS {
            // Prometheus prints weeks and years only when the value is an
            // exact multiple, like model.Duration.String.
            if (unit == "y" || unit == "w") && !ms.is_multiple_of(mult) {
                continue;
            }
            if ms >= mult {
                write!(f, "{}{}", ms / mult, unit)?;
                ms %= mult;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!("15s".parse::<Duration>().unwrap(), Duration(15_000));
        assert_eq!("1m30s".parse::<Duration>().unwrap(), Duration(90_000));
        assert_eq!("1h".parse::<Duration>().unwrap(), Duration(3_600_000));
        assert_eq!("100ms".parse::<Duration>().unwrap(), Duration(100));
        assert_eq!("1d".parse::<Duration>().unwrap(), Duration(86_400_000));
        assert_eq!("0".parse::<Duration>().unwrap(), Duration(0));
        for bad in ["", "1", "s", "1s1m", "1x", "-1s", "1.5s", "1s1s", " 1s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_like_prometheus() {
        assert_eq!(Duration(90_000).to_string(), "1m30s");
        assert_eq!(Duration(15_000).to_string(), "15s");
        assert_eq!(Duration(0).to_string(), "0s");
        assert_eq!(Duration(7 * 86_400_000).to_string(), "1w");
        assert_eq!(Duration(8 * 86_400_000).to_string(), "8d");
        assert_eq!(Duration(1_500).to_string(), "1s500ms");
    }
}
