//! OpenMetrics 1.0 rules that span the samples of one metric family:
//! labelset grouping, timestamp order within a group, the structure of
//! histogram and gaugehistogram groups (buckets, `_count`, `_sum`, `_gsum`),
//! and per-sample rules that need the family's name (stateset label,
//! canonical `le`/`quantile`, integer counts). Used by [`super::lint`], which
//! reports these as [`Severity::Violation`].

use std::collections::HashSet;

use super::lint::{Problem, Severity};
use super::{MetricType, Series, parse_go_float};

/// A labelset without the label that tells a group's samples apart
/// (`le`, `quantile`, the stateset's own label), sorted by name.
type GroupKey = Vec<(String, String)>;

/// The samples of one family seen so far, in order.
pub(super) struct FamilyRun {
    name: String,
    kind: Option<MetricType>,
    seen_groups: HashSet<GroupKey>,
    /// The group of the previous sample, with its timestamp.
    last: Option<(GroupKey, Option<i64>)>,
    /// The histogram group being read (histogram and gaugehistogram only).
    hist: Option<HistogramGroup>,
}

/// One histogram MetricPoint: consecutive samples with the same group and
/// timestamp.
struct HistogramGroup {
    key: GroupKey,
    timestamp_ms: Option<i64>,
    first_line: usize,
    /// The last bucket's bound and count.
    last_bucket: Option<(f64, f64)>,
    count: Option<f64>,
    has_sum: bool,
    has_gsum: bool,
    negative_gsum: bool,
    negative_bucket: bool,
}

fn violation(out: &mut Vec<Problem>, line: usize, message: String) {
    out.push(Problem {
        line,
        severity: Severity::Violation,
        message,
    });
}

/// A bucket bound: a number, not NaN, infinities written `+Inf`/`-Inf`
/// only.
fn parse_bound(v: &str) -> Option<f64> {
    let f = parse_go_float(v.as_bytes()).ok()?;
    if f.is_nan() || (f.is_infinite() && v != "+Inf" && v != "-Inf") {
        return None;
    }
    Some(f)
}

/// Whether `v` parses as a number but not as a bucket bound (`lint` reports
/// values that are not numbers at all).
fn is_uncanonical_bound(v: &str) -> bool {
    parse_go_float(v.as_bytes()).is_ok() && parse_bound(v).is_none()
}

fn is_integer(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0
}

impl FamilyRun {
    pub(super) fn new(name: &str, kind: Option<MetricType>) -> FamilyRun {
        FamilyRun {
            name: name.to_string(),
            kind,
            seen_groups: HashSet::new(),
            last: None,
            hist: None,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Checks one sample of this family, found on `line`.
    pub(super) fn sample(&mut self, out: &mut Vec<Problem>, line: usize, s: &Series<'_>) {
        let metric = s.metric_name();
        let suffix = metric.get(self.name.len()..).unwrap_or("");
        let kind = self.kind;
        let fam = self.name.as_str();
        // The label a group ignores, if any.
        let group_label = match kind {
            Some(MetricType::Summary) if suffix.is_empty() => Some("quantile"),
            Some(MetricType::Stateset) => Some(fam),
            Some(MetricType::Histogram | MetricType::GaugeHistogram) if suffix == "_bucket" => {
                Some("le")
            }
            _ => None,
        };
        let mut key: GroupKey = s
            .labels()
            .filter(|(n, _)| Some(*n) != group_label)
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect();
        key.sort();
        if kind == Some(MetricType::Info) {
            // Info samples cannot be told apart by group.
            key.clear();
        }
        let label = |n: &str| s.labels().find(|(k, _)| *k == n).map(|(_, v)| v);
        if kind == Some(MetricType::Stateset) && label(fam).is_none() {
            violation(
                out,
                line,
                format!("{metric}: stateset sample without a label named {fam:?}"),
            );
        }
        if suffix == "_bucket"
            && let Some(v) = label("le")
            && is_uncanonical_bound(&v)
        {
            violation(
                out,
                line,
                format!(
                    "{metric}: \"le\" must be a number other than NaN, infinity written +Inf, got {v:?}"
                ),
            );
        }
        // NaN is reported by the value rules.
        if matches!(suffix, "_bucket" | "_count" | "_gcount")
            && !s.value.is_nan()
            && !is_integer(s.value)
        {
            violation(
                out,
                line,
                format!("{metric}: value must be an integer, got {}", s.value),
            );
        }
        self.check_grouping(out, line, key.clone(), s);
        if matches!(
            kind,
            Some(MetricType::Histogram | MetricType::GaugeHistogram)
        ) {
            self.histogram_sample(out, line, key, suffix, s);
        }
    }

    /// A family's groups are contiguous; within a group, timestamps are all
    /// present or all absent and do not go backwards.
    fn check_grouping(&mut self, out: &mut Vec<Problem>, line: usize, key: GroupKey, s: &Series) {
        let metric = s.metric_name();
        let ts = s.timestamp_ms;
        match &self.last {
            Some((last, last_ts)) if *last == key => {
                if ts.is_some() != last_ts.is_some() {
                    violation(
                        out,
                        line,
                        format!(
                            "{metric}: timestamps must be given for all samples of a group or for none"
                        ),
                    );
                } else if let (Some(t), Some(lt)) = (ts, last_ts)
                    && t < *lt
                    && self.kind != Some(MetricType::Info)
                {
                    violation(
                        out,
                        line,
                        format!("{metric}: timestamp goes backwards within its group"),
                    );
                }
            }
            _ => {
                if !self.seen_groups.insert(key.clone()) {
                    violation(
                        out,
                        line,
                        format!(
                            "{metric}: samples with labels {} are not grouped together in family {:?}",
                            show_key(&key),
                            self.name
                        ),
                    );
                }
            }
        }
        self.last = Some((key, ts));
    }

    fn histogram_sample(
        &mut self,
        out: &mut Vec<Problem>,
        line: usize,
        key: GroupKey,
        suffix: &str,
        s: &Series,
    ) {
        let ts = s.timestamp_ms;
        let same = self
            .hist
            .as_ref()
            .is_some_and(|h| h.key == key && h.timestamp_ms == ts);
        if !same {
            self.finish_histogram(out);
        }
        let h = self.hist.get_or_insert(HistogramGroup {
            key,
            timestamp_ms: ts,
            first_line: line,
            last_bucket: None,
            count: None,
            has_sum: false,
            has_gsum: false,
            negative_gsum: false,
            negative_bucket: false,
        });
        let metric = s.metric_name();
        match suffix {
            "_bucket" => {
                let le = s
                    .labels()
                    .find(|(k, _)| *k == "le")
                    .and_then(|(_, v)| parse_bound(&v));
                // A missing or bad `le` is reported elsewhere.
                let Some(le) = le else { return };
                if le < 0.0 {
                    h.negative_bucket = true;
                }
                if let Some((prev_le, prev_count)) = h.last_bucket {
                    if le <= prev_le {
                        violation(
                            out,
                            line,
                            format!("{metric}: buckets must be in increasing \"le\" order"),
                        );
                    }
                    if s.value < prev_count {
                        violation(
                            out,
                            line,
                            format!("{metric}: bucket counts must be cumulative (non-decreasing)"),
                        );
                    }
                }
                h.last_bucket = Some((le, s.value));
            }
            "_count" | "_gcount" => h.count = Some(s.value),
            "_sum" => h.has_sum = true,
            "_gsum" => {
                h.has_gsum = true;
                h.negative_gsum |= s.value < 0.0;
            }
            _ => {}
        }
    }

    /// The rules on a whole histogram group, reported at its first line.
    fn finish_histogram(&mut self, out: &mut Vec<Problem>) {
        let Some(h) = self.hist.take() else { return };
        let fam = &self.name;
        let line = h.first_line;
        let gauge = self.kind == Some(MetricType::GaugeHistogram);
        let (count, sum) = if gauge {
            ("_gcount", "_gsum")
        } else {
            ("_count", "_sum")
        };
        let mut problems = Vec::new();
        match h.last_bucket {
            Some((le, v)) if le == f64::INFINITY => {
                if h.count.is_some_and(|c| c != v) {
                    problems.push(format!("{fam}{count} must equal the +Inf bucket"));
                }
            }
            _ => problems.push(format!("{fam}: histogram without a +Inf bucket")),
        }
        let has_sum = h.has_sum || h.has_gsum;
        if has_sum && h.count.is_none() {
            problems.push(format!("{fam}: {sum} without {count}"));
        }
        if !has_sum && h.count.is_some() {
            problems.push(format!("{fam}: {count} without {sum}"));
        }
        if h.negative_bucket && h.has_sum {
            problems.push(format!("{fam}: _sum is not allowed with negative buckets"));
        }
        if !h.negative_bucket && h.negative_gsum {
            problems.push(format!(
                "{fam}: _gsum must not be negative without negative buckets"
            ));
        }
        for p in problems {
            violation(out, line, p);
        }
    }

    /// The rules that need all of the family's samples.
    pub(super) fn finish(mut self, out: &mut Vec<Problem>) {
        self.finish_histogram(out);
    }
}

fn show_key(key: &GroupKey) -> String {
    let inner: Vec<String> = key.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use crate::exposition::{Problem, Severity, validate_openmetrics};

    /// The strict problems of `body`, or none.
    fn strict(body: &str) -> Vec<Problem> {
        validate_openmetrics(body.as_bytes())
            .err()
            .unwrap_or_default()
    }

    /// `bad` breaks the rule whose message contains `rule`; `good` is valid.
    fn rule(rule: &str, bad: &str, good: &str) {
        let p = strict(bad);
        assert!(
            p.iter()
                .any(|p| p.severity == Severity::Violation && p.message.contains(rule)),
            "expected {rule:?} for {bad:?}, got {p:?}"
        );
        assert_eq!(strict(good), vec![], "{good:?}");
    }

    #[test]
    fn groups_are_contiguous() {
        rule(
            "not grouped together",
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\"} 2 5\n# EOF\n",
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\n# EOF\n",
        );
        rule(
            "not grouped together",
            "# TYPE a summary\na_sum{x=\"1\"} 1\na_sum{x=\"2\"} 1\na_count{x=\"1\"} 1\n# EOF\n",
            "# TYPE a summary\na_sum{x=\"1\"} 1\na_count{x=\"1\"} 1\na_sum{x=\"2\"} 1\na_count{x=\"2\"} 1\n# EOF\n",
        );
    }

    #[test]
    fn timestamps_all_or_none_in_a_group() {
        rule(
            "for all samples of a group or for none",
            "# TYPE a gauge\na 0 1\na 0\n# EOF\n",
            "# TYPE a gauge\na 0 1\na 0 2\n# EOF\n",
        );
    }

    #[test]
    fn timestamps_do_not_go_backwards() {
        rule(
            "timestamp goes backwards",
            "# TYPE a gauge\na 0 1.1\na 0 1\n# EOF\n",
            "# TYPE a gauge\na 0 1\na 0 1\na 0 1.1\n# EOF\n",
        );
        // Info groups cannot be told apart, so their order is free.
        assert_eq!(
            strict("# TYPE a info\na_info{x=\"1\"} 1 2\na_info{x=\"2\"} 1 1\n# EOF\n"),
            vec![]
        );
    }

    #[test]
    fn stateset_has_a_label_named_as_the_family() {
        rule(
            "without a label named \"a\"",
            "# TYPE a stateset\na{b=\"x\"} 1\n# EOF\n",
            "# TYPE a stateset\na{a=\"x\"} 1\na{a=\"y\"} 0\n# EOF\n",
        );
    }

    #[test]
    fn le_is_canonical() {
        rule(
            "\"le\" must be a number other than NaN",
            "# TYPE a histogram\na_bucket{le=\"+inf\"} 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"1e-04\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
        );
        rule(
            "\"le\" must be a number other than NaN",
            "# TYPE a histogram\na_bucket{le=\"NaN\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"0\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
        );
    }

    #[test]
    fn counts_are_integers() {
        rule(
            "must be an integer",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 1.5\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 1.0\n# EOF\n",
        );
        rule(
            "must be an integer",
            "# TYPE a summary\na_count 1.5\na_sum 1\n# EOF\n",
            "# TYPE a summary\na_count 1\na_sum 1.5\n# EOF\n",
        );
    }

    #[test]
    fn buckets_in_increasing_le_order() {
        rule(
            "increasing \"le\" order",
            "# TYPE a histogram\na_bucket{le=\"2\"} 0\na_bucket{le=\"1\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"1\"} 0\na_bucket{le=\"2\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
        );
    }

    #[test]
    fn bucket_counts_are_cumulative() {
        rule(
            "cumulative",
            "# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"1\"} 1\na_bucket{le=\"+Inf\"} 1\n# EOF\n",
        );
    }

    #[test]
    fn inf_bucket_required() {
        rule(
            "without a +Inf bucket",
            "# TYPE a gaugehistogram\na_bucket{le=\"1\"} 0\n# EOF\n",
            "# TYPE a gaugehistogram\na_bucket{le=\"1\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
        );
        // Each labelset is its own histogram.
        rule(
            "without a +Inf bucket",
            "# TYPE a histogram\na_bucket{x=\"1\",le=\"+Inf\"} 0\na_bucket{x=\"2\",le=\"1\"} 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{x=\"1\",le=\"+Inf\"} 0\na_bucket{x=\"2\",le=\"+Inf\"} 0\n# EOF\n",
        );
    }

    #[test]
    fn count_equals_inf_bucket() {
        rule(
            "a_count must equal the +Inf bucket",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 2\na_count 3\na_sum 1\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 3\na_count 3\na_sum 1\n# EOF\n",
        );
    }

    #[test]
    fn sum_and_count_come_together() {
        rule(
            "_sum without _count",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_sum 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"+Inf\"} 0\na_sum 0\na_count 0\n# EOF\n",
        );
        rule(
            "_gcount without _gsum",
            "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 0\na_gcount 0\n# EOF\n",
            "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 0\na_gcount 0\na_gsum 0\n# EOF\n",
        );
    }

    #[test]
    fn no_sum_with_negative_buckets() {
        rule(
            "_sum is not allowed with negative buckets",
            "# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 0\na_count 0\na_sum 0\n# EOF\n",
            "# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 0\n# EOF\n",
        );
    }

    #[test]
    fn negative_gsum_needs_negative_buckets() {
        rule(
            "_gsum must not be negative without negative buckets",
            "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -1\n# EOF\n",
            "# TYPE a gaugehistogram\na_bucket{le=\"-1\"} 1\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -1\n# EOF\n",
        );
    }

    #[test]
    fn gsum_not_nan_and_quantiles_not_negative() {
        rule(
            "_gsum must not be NaN",
            "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum NaN\n# EOF\n",
            "# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum 1\n# EOF\n",
        );
        rule(
            "quantile values must not be negative",
            "# TYPE a summary\na{quantile=\"0.5\"} -1\n# EOF\n",
            "# TYPE a summary\na{quantile=\"0.5\"} NaN\n# EOF\n",
        );
    }

    #[test]
    fn lint_rules_are_strict_violations_too() {
        // A few of lint's OpenMetrics rules, now enforced by the strict mode.
        rule(
            "not contiguous",
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n# EOF\n",
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# EOF\n",
        );
        rule(
            "info value must be 1",
            "# TYPE a info\na_info 2\n# EOF\n",
            "# TYPE a info\na_info 1\n# EOF\n",
        );
        rule(
            "exemplar label set has 129 characters",
            &format!(
                "# TYPE a counter\na_total 1 # {{a=\"{}\"}} 1\n# EOF\n",
                "x".repeat(128)
            ),
            &format!(
                "# TYPE a counter\na_total 1 # {{a=\"{}\"}} 1\n# EOF\n",
                "x".repeat(127)
            ),
        );
        rule(
            "value must be a non-negative number",
            "# TYPE a counter\na_total NaN\n# EOF\n",
            "# TYPE a counter\na_total 0\n# EOF\n",
        );
    }

    #[test]
    fn parse_errors_are_strict_errors() {
        let p = strict("a 1\n");
        assert!(p.iter().any(|p| p.severity == Severity::Error), "{p:?}");
    }

    #[test]
    fn advice_is_not_a_strict_problem() {
        // No HELP, a non-base unit: promtool advice, valid OpenMetrics.
        assert_eq!(
            strict("# TYPE a_milliseconds gauge\na_milliseconds 1\n# EOF\n"),
            vec![]
        );
    }
}
