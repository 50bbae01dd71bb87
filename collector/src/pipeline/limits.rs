//! Per-series label limits, checked on the final label set of a series not
//! in the cache (Prometheus 2.42's `verifyLabelLimits`): the first series
//! over a limit fails the scrape.

use promshard_promlib::labels::{Labels, METRIC_NAME};

use super::ScrapeFailure;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelLimits {
    /// 0: no limit.
    pub(crate) label_limit: u64,
    pub(crate) name_length: u64,
    /// In bytes, as Prometheus 2.42 counts (`len(l.Value)`; checked
    /// against the binary with a multi-byte value).
    pub(crate) value_length: u64,
}

impl LabelLimits {
    pub(crate) fn verify(&self, labels: &Labels) -> Result<(), ScrapeFailure> {
        let metric = || labels.get(METRIC_NAME).unwrap_or("").to_string();
        if self.label_limit > 0 && labels.len() as u64 > self.label_limit {
            return Err(ScrapeFailure::LabelLimit {
                metric: metric(),
                count: labels.len(),
                limit: self.label_limit,
            });
        }
        if self.name_length == 0 && self.value_length == 0 {
            return Ok(());
        }
        for l in labels {
            if self.name_length > 0 && l.name.len() as u64 > self.name_length {
                return Err(ScrapeFailure::LabelNameLength {
                    metric: metric(),
                    name: l.name.clone(),
                    length: l.name.len(),
                    limit: self.name_length,
                });
            }
            if self.value_length > 0 && l.value.len() as u64 > self.value_length {
                return Err(ScrapeFailure::LabelValueLength {
                    metric: metric(),
                    name: l.name.clone(),
                    value: l.value.chars().take(50).collect(),
                    length: l.value.len(),
                    limit: self.value_length,
                });
            }
        }
        Ok(())
    }
}

/// Whether `added` samples exceed `sample_limit` (0: no limit).
#[inline]
pub(crate) fn over_sample_limit(added: u64, sample_limit: u64) -> bool {
    sample_limit > 0 && added > sample_limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_fails_with_prometheus_message() {
        let l = Labels::from_pairs([("__name__", "m"), ("a", "héllo"), ("long_name", "x")]);
        let none = LabelLimits::default();
        assert!(none.verify(&l).is_ok());
        let count = LabelLimits {
            label_limit: 2,
            ..none
        };
        assert_eq!(
            count.verify(&l).unwrap_err().to_string(),
            "label_limit exceeded (metric: m, number of labels: 3, limit: 2)"
        );
        assert!(
            LabelLimits {
                label_limit: 3,
                ..none
            }
            .verify(&l)
            .is_ok()
        );
        let name = LabelLimits {
            name_length: 8,
            ..none
        };
        assert!(matches!(
            name.verify(&l),
            Err(ScrapeFailure::LabelNameLength { length: 9, .. })
        ));
        // "héllo" is 5 characters but 6 bytes: the limit counts bytes.
        assert!(
            LabelLimits {
                value_length: 6,
                ..none
            }
            .verify(&l)
            .is_ok()
        );
        assert!(matches!(
            LabelLimits {
                value_length: 5,
                ..none
            }
            .verify(&l),
            Err(ScrapeFailure::LabelValueLength { length: 6, .. })
        ));
    }

    #[test]
    fn sample_limit_zero_is_unlimited() {
        assert!(!over_sample_limit(1_000_000, 0));
        assert!(!over_sample_limit(5, 5));
        assert!(over_sample_limit(6, 5));
    }
}
