//! `promshard check metrics`: every parse error with its line, plus
//! promtool-like (client_golang promlint) advice and, for OpenMetrics, the
//! family-level rules Prometheus 2.42 does not enforce when scraping.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::om_family::FamilyRun;
use super::{Entry, Format, MetricType, Parser};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Style advice (promtool's lint problems); Prometheus ingests the body.
    Warning,
    /// Breaks a MUST rule of OpenMetrics 1.0 that Prometheus 2.42 does not
    /// check when scraping (it ingests the body);
    /// [`validate_openmetrics`] rejects the body for it.
    Violation,
    /// Prometheus 2.42 fails the scrape on this.
    Error,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "line {}: {}", self.line, self.message),
            Severity::Violation => write!(
                f,
                "line {}: invalid OpenMetrics 1.0: {}",
                self.line, self.message
            ),
            Severity::Warning => write!(f, "line {}: warning: {}", self.line, self.message),
        }
    }
}

const BASE_UNITS: &[(&str, &str)] = &[
    ("nanoseconds", "seconds"),
    ("microseconds", "seconds"),
    ("milliseconds", "seconds"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kilobytes", "bytes"),
    ("megabytes", "bytes"),
    ("gigabytes", "bytes"),
    ("terabytes", "bytes"),
    ("bits", "bytes"),
    ("percent", "ratio"),
    ("celsius", "celsius"),
];

#[derive(Default)]
struct Family {
    kind: Option<MetricType>,
    help: bool,
    type_line: Option<usize>,
    help_line: Option<usize>,
    unit_line: Option<usize>,
    first_line: usize,
    has_samples: bool,
    /// OpenMetrics: the family's lines ended (another family came).
    closed: bool,
}

/// Suffixes a sample may add to its family's name.
const SUFFIXES: &[&str] = &[
    "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

/// Every problem in `body` parsed as `format`, in line order.
pub fn lint(body: &[u8], format: Format) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut current: Option<String> = None;
    let mut seen_series: HashSet<(Vec<u8>, Option<i64>)> = HashSet::new();
    let om = format == Format::OpenMetrics;
    let mut run: Option<FamilyRun> = None;
    let mut p = Parser::new(body, format);
    let warn = |out: &mut Vec<Problem>, line: usize, message: String| {
        out.push(Problem {
            line,
            severity: Severity::Warning,
            message,
        })
    };
    // OpenMetrics MUST rules; in the text format the same checks are advice.
    let rule_severity = if om {
        Severity::Violation
    } else {
        Severity::Warning
    };
    let rule = |out: &mut Vec<Problem>, line: usize, message: String| {
        out.push(Problem {
            line,
            severity: rule_severity,
            message,
        })
    };
    while let Some(entry) = p.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.push(Problem {
                    line: e.line,
                    severity: Severity::Error,
                    message: e.message,
                });
                continue;
            }
        };
        let line = p.line();
        // Which family this entry belongs to.
        let fam_name = match &entry {
            Entry::Help { name, .. } | Entry::Type { name, .. } | Entry::Unit { name, .. } => {
                name.to_string()
            }
            Entry::Series(s) => family_of(s.metric_name(), &families),
            Entry::Comment(_) | Entry::Eof => continue,
        };
        if om && current.as_deref() != Some(fam_name.as_str()) {
            if let Some(prev) = current.take().and_then(|c| families.get_mut(&c)) {
                prev.closed = true;
            }
            if families.get(&fam_name).is_some_and(|f| f.closed) {
                rule(
                    &mut out,
                    line,
                    format!(
                        "metric family {fam_name:?} is not contiguous: its lines must be grouped"
                    ),
                );
            }
            current = Some(fam_name.clone());
        }
        let fam = families.entry(fam_name.clone()).or_insert_with(|| Family {
            first_line: line,
            ..Family::default()
        });
        match entry {
            Entry::Help { .. } => {
                if let Some(l) = fam.help_line {
                    rule(
                        &mut out,
                        line,
                        format!("second HELP line for metric {fam_name:?} (first on line {l})"),
                    );
                }
                if om && fam.has_samples {
                    rule(
                        &mut out,
                        line,
                        format!("HELP for {fam_name:?} after its samples"),
                    );
                }
                fam.help = true;
                fam.help_line = Some(line);
            }
            Entry::Type { kind, .. } => {
                if let Some(l) = fam.type_line {
                    rule(
                        &mut out,
                        line,
                        format!("second TYPE line for metric {fam_name:?} (first on line {l})"),
                    );
                }
                if fam.has_samples {
                    rule(
                        &mut out,
                        line,
                        format!("TYPE for {fam_name:?} after its samples"),
                    );
                }
                fam.kind = Some(kind);
                fam.type_line = Some(line);
                let clash = families.iter().find(|(other, f)| {
                    f.kind.is_some()
                        && *other != &fam_name
                        && SUFFIXES.iter().any(|suf| {
                            fam_name.strip_suffix(suf) == Some(other.as_str())
                                || other.strip_suffix(suf) == Some(fam_name.as_str())
                        })
                });
                if let Some((other, _)) = clash {
                    rule(
                        &mut out,
                        line,
                        format!("metric family {fam_name:?} clashes with family {other:?}"),
                    );
                }
                if !om {
                    if kind == MetricType::Counter && !fam_name.ends_with("_total") {
                        warn(
                            &mut out,
                            line,
                            format!("{fam_name}: counter metrics should have \"_total\" suffix"),
                        );
                    }
                    if kind != MetricType::Counter
                        && kind != MetricType::Unknown
                        && fam_name.ends_with("_total")
                    {
                        warn(
                            &mut out,
                            line,
                            format!(
                                "{fam_name}: non-counter metrics should not have \"_total\" suffix"
                            ),
                        );
                    }
                } else if kind == MetricType::Counter && fam_name.ends_with("_total") {
                    warn(
                        &mut out,
                        line,
                        format!(
                            "{fam_name}: OpenMetrics counter family names must not end in \"_total\""
                        ),
                    );
                }
            }
            Entry::Unit { .. } => {
                if let Some(l) = fam.unit_line {
                    rule(
                        &mut out,
                        line,
                        format!("second UNIT line for metric {fam_name:?} (first on line {l})"),
                    );
                }
                if fam.has_samples {
                    rule(
                        &mut out,
                        line,
                        format!("UNIT for {fam_name:?} after its samples"),
                    );
                }
                fam.unit_line = Some(line);
                if matches!(fam.kind, Some(MetricType::Info | MetricType::Stateset)) {
                    rule(
                        &mut out,
                        line,
                        format!("{fam_name}: info and stateset families must not have a unit"),
                    );
                }
            }
            Entry::Series(s) => {
                fam.has_samples = true;
                let name = s.metric_name();
                // OpenMetrics timestamps below a millisecond may differ
                // where the truncated ones do not: compare untimed only.
                let key = (s.to_labels().canonical_bytes(), s.timestamp_ms);
                if (!om || s.timestamp_ms.is_none()) && !seen_series.insert(key) {
                    rule(
                        &mut out,
                        line,
                        format!("duplicate series {}", s.to_labels()),
                    );
                }
                lint_series(&mut out, line, &s, fam.kind, om);
                if om {
                    let kind = fam.kind;
                    if run.as_ref().map(FamilyRun::name) != Some(fam_name.as_str()) {
                        if let Some(done) = run.take() {
                            done.finish(&mut out);
                        }
                        run = Some(FamilyRun::new(&fam_name, kind));
                    }
                    if let Some(r) = run.as_mut() {
                        r.sample(&mut out, line, &s);
                    }
                }
                if om && let Some(kind) = fam.kind {
                    let suffix = &name[fam_name.len().min(name.len())..];
                    let ok: &[&str] = match kind {
                        MetricType::Counter => &["_total", "_created"],
                        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
                        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
                        MetricType::Summary => &["", "_count", "_sum", "_created"],
                        MetricType::Info => &["_info"],
                        _ => &[""],
                    };
                    if !ok.contains(&suffix) {
                        rule(
                            &mut out,
                            line,
                            format!(
                                "sample {name:?} does not fit {} family {fam_name:?}",
                                kind.as_str()
                            ),
                        );
                    }
                }
            }
            Entry::Comment(_) | Entry::Eof => {}
        }
    }
    if let Some(done) = run.take() {
        done.finish(&mut out);
    }
    // Family-level advice, at each family's first line.
    let mut fams: Vec<(&String, &Family)> = families.iter().collect();
    fams.sort_by_key(|(n, f)| (f.first_line, n.as_str()));
    for (name, f) in fams {
        if !f.help {
            warn(&mut out, f.first_line, format!("{name}: no help text"));
        }
        if name
            .bytes()
            .zip(name.bytes().skip(1))
            .any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase())
        {
            warn(
                &mut out,
                f.first_line,
                format!("{name}: metric names should be written in 'snake_case' not 'camelCase'"),
            );
        }
        if name.contains(':') {
            warn(
                &mut out,
                f.first_line,
                format!("{name}: metric names should not contain ':'"),
            );
        }
        for (unit, base) in BASE_UNITS {
            if unit != base && name.split('_').any(|w| w == *unit) {
                warn(
                    &mut out,
                    f.first_line,
                    format!("{name}: use base unit \"{base}\" instead of \"{unit}\""),
                );
            }
        }
    }
    out.sort_by_key(|p| p.line);
    out
}

/// Checks `body` against OpenMetrics 1.0 strictly: every parse error and
/// every MUST rule of the specification (family grouping and order,
/// per-type values, histogram structure, exemplars, units, clashing names).
/// Ok when the body is valid OpenMetrics; otherwise every problem found
/// (severity [`Severity::Error`] or [`Severity::Violation`]), in line order.
/// Style advice from [`lint`] is not included.
pub fn validate_openmetrics(body: &[u8]) -> Result<(), Vec<Problem>> {
    let problems: Vec<Problem> = lint(body, Format::OpenMetrics)
        .into_iter()
        .filter(|p| p.severity >= Severity::Violation)
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn lint_series(
    out: &mut Vec<Problem>,
    line: usize,
    s: &super::Series<'_>,
    kind: Option<MetricType>,
    om: bool,
) {
    let name = s.metric_name();
    let rule_severity = if om {
        Severity::Violation
    } else {
        Severity::Warning
    };
    let mut push = |severity: Severity, message: String| {
        out.push(Problem {
            line,
            severity,
            message,
        })
    };
    for (l, _) in s.labels() {
        if l.bytes()
            .zip(l.bytes().skip(1))
            .any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase())
        {
            push(
                Severity::Warning,
                format!("{name}: label names should be written in 'snake_case' not 'camelCase'"),
            );
        }
    }
    let label = |n: &str| s.labels().find(|(k, _)| *k == n).map(|(_, v)| v);
    match kind {
        Some(MetricType::Histogram | MetricType::GaugeHistogram) if name.ends_with("_bucket") => {
            match label("le") {
                None => push(
                    rule_severity,
                    format!("{name}: histogram bucket without \"le\" label"),
                ),
                Some(v) => {
                    if super::parse_go_float(v.as_bytes()).is_err() {
                        push(
                            rule_severity,
                            format!("{name}: \"le\" value {v:?} is not a number"),
                        );
                    }
                }
            }
            if s.value < 0.0 || s.value.is_nan() {
                push(
                    rule_severity,
                    format!("{name}: bucket counts must be non-negative numbers"),
                );
            }
        }
        Some(MetricType::Summary)
            if !name.ends_with("_count")
                && !name.ends_with("_sum")
                && !name.ends_with("_created") =>
        {
            match label("quantile") {
                None => push(
                    rule_severity,
                    format!("{name}: summary quantile sample without \"quantile\" label"),
                ),
                Some(v) => {
                    if super::parse_go_float(v.as_bytes()).is_err() {
                        push(
                            rule_severity,
                            format!("{name}: \"quantile\" value {v:?} is not a number"),
                        );
                    }
                }
            }
        }
        // OpenMetrics: `lint_openmetrics_values` has the stricter rule.
        Some(MetricType::Counter) if !om && s.value < 0.0 => {
            push(
                rule_severity,
                format!("{name}: counter values must not be negative or NaN"),
            );
        }
        _ => {}
    }
    if om {
        lint_openmetrics_values(&mut |m| push(Severity::Violation, m), s, kind);
    }
    if om && s.exemplar.is_some() {
        match kind {
            Some(MetricType::Counter)
            | Some(MetricType::Histogram)
            | Some(MetricType::GaugeHistogram) => {}
            _ => push(
                rule_severity,
                format!("{name}: exemplars are only allowed on counters and histogram buckets"),
            ),
        }
    }
}

/// The family a sample belongs to: its name, or its name without a known
/// suffix when that names a family already declared.
fn family_of(name: &str, families: &HashMap<String, Family>) -> String {
    if families
        .get(name)
        .is_some_and(|f| f.kind.is_some() || f.help)
    {
        return name.to_string();
    }
    for suf in SUFFIXES {
        if let Some(base) = name.strip_suffix(suf)
            && families
                .get(base)
                .is_some_and(|f| f.kind.is_some() || f.help)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// OpenMetrics value rules per type: counts and sums that must be
/// non-negative numbers, info = 1, stateset 0 or 1, quantiles in [0, 1],
/// exemplar label sets of at most 128 characters.
fn lint_openmetrics_values(
    warn: &mut impl FnMut(String),
    s: &super::Series<'_>,
    kind: Option<MetricType>,
) {
    let name = s.metric_name();
    let v = s.value;
    let counts: &[&str] = match kind {
        Some(MetricType::Counter) => &["_total", "_created"],
        // Buckets: `lint_series` checks them for both histogram types.
        Some(MetricType::Histogram) => &["_count", "_sum", "_created"],
        Some(MetricType::GaugeHistogram) => &["_gcount"],
        Some(MetricType::Summary) => &["_count", "_sum", "_created"],
        _ => &[],
    };
    if counts.iter().any(|suf| name.ends_with(suf)) && (v.is_nan() || v < 0.0) {
        warn(format!(
            "{name}: value must be a non-negative number, got {v}"
        ));
    }
    if kind == Some(MetricType::Histogram) && name.ends_with("_bucket") && v.is_infinite() {
        warn(format!("{name}: bucket value must be finite"));
    }
    match kind {
        Some(MetricType::Info) if v != 1.0 => {
            warn(format!("{name}: info value must be 1, got {v}"))
        }
        Some(MetricType::Stateset) if v != 0.0 && v != 1.0 => {
            warn(format!("{name}: stateset value must be 0 or 1, got {v}"))
        }
        Some(MetricType::GaugeHistogram) if name.ends_with("_gsum") && v.is_nan() => {
            warn(format!("{name}: _gsum must not be NaN"))
        }
        Some(MetricType::Summary) => {
            if s.labels().any(|(k, _)| k == "quantile") && v < 0.0 {
                warn(format!(
                    "{name}: quantile values must not be negative, got {v}"
                ));
            }
            if let Some((_, q)) = s.labels().find(|(k, _)| *k == "quantile")
                && let Ok(q) = super::parse_go_float(q.as_bytes())
                && !(0.0..=1.0).contains(&q)
            {
                warn(format!("{name}: quantile must be between 0 and 1, got {q}"));
            }
        }
        _ => {}
    }
    if let Some(ex) = &s.exemplar {
        let chars: usize = ex
            .labels()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum();
        if chars > 128 {
            warn(format!(
                "{name}: exemplar label set has {chars} characters, more than 128"
            ));
        }
    }
}
