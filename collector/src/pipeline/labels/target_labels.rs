//! Attaching the target's labels to scraped and synthetic series:
//! Prometheus 2.42's `mutateSampleLabels` (without the relabel step) and
//! `mutateReportSampleLabels`.

use promshard_promlib::labels::{Label, Labels, METRIC_NAME};

const EXPORTED_PREFIX: &str = "exported_";

/// `honor == true`: scraped labels win; a target label is only added when
/// the scraped set has no label of that name. `honor == false`: target
/// labels win; a scraped label with a non-empty value that conflicts is
/// kept as `exported_<name>` (prefixed again while that name is taken).
/// Empty values are dropped from the result.
pub(crate) fn apply_target_labels(scraped: Labels, target: &Labels, honor: bool) -> Labels {
    let mut out = scraped;
    if honor {
        for l in target {
            if !out.contains(&l.name) {
                out.insert(l.name.clone(), l.value.clone());
            }
        }
        return out.without_empty();
    }
    let mut conflicts: Vec<Label> = Vec::new();
    for l in target {
        if let Some(v) = out.get(&l.name)
            && !v.is_empty()
        {
            conflicts.push(Label::new(l.name.clone(), v));
        }
    }
    if conflicts.is_empty() {
        for l in target {
            out.insert(l.name.clone(), l.value.clone());
        }
        return out.without_empty();
    }
    let scraped = out.clone();
    for l in target {
        out.insert(l.name.clone(), l.value.clone());
    }
    // Shorter names first, as Prometheus' resolveConflictingExposedLabels.
    conflicts.sort_by_key(|l| l.name.len());
    for i in 0..conflicts.len() {
        let mut name = conflicts[i].name.clone();
        loop {
            name.insert_str(0, EXPORTED_PREFIX);
            let taken = scraped.contains(&name)
                || target.contains(&name)
                || conflicts[..i].iter().any(|c| c.name == name);
            if !taken {
                break;
            }
        }
        conflicts[i].name = name;
    }
    for c in conflicts {
        out.insert(c.name, c.value);
    }
    out.without_empty()
}

/// The labels of a synthetic series (`up`...): `__name__` plus the target
/// labels (a target label named like the metric's own labels wins).
pub(crate) fn report_labels(name: &str, target: &Labels) -> Labels {
    let mut out = Labels::from_pairs([(METRIC_NAME, name)]);
    for l in target {
        if l.name != METRIC_NAME {
            out.insert(l.name.clone(), l.value.clone());
        }
    }
    out.without_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn conflicting_scraped_labels_become_exported() {
        let scraped = l(&[("__name__", "m"), ("job", "inner"), ("exported_job", "x")]);
        let target = l(&[("job", "outer"), ("instance", "h:1")]);
        let out = apply_target_labels(scraped, &target, false);
        assert_eq!(out.get("job"), Some("outer"));
        assert_eq!(out.get("exported_job"), Some("x"));
        assert_eq!(out.get("exported_exported_job"), Some("inner"));
        assert_eq!(out.get("instance"), Some("h:1"));
    }

    #[test]
    fn empty_scraped_value_is_no_conflict() {
        let scraped = l(&[("__name__", "m"), ("job", "")]);
        let target = l(&[("job", "outer")]);
        let out = apply_target_labels(scraped, &target, false);
        assert_eq!(out, l(&[("__name__", "m"), ("job", "outer")]));
    }

    #[test]
    fn honor_labels_keeps_scraped_and_fills_absent() {
        let scraped = l(&[("__name__", "m"), ("job", "inner")]);
        let target = l(&[("job", "outer"), ("instance", "h:1")]);
        let out = apply_target_labels(scraped, &target, true);
        assert_eq!(out.get("job"), Some("inner"));
        assert_eq!(out.get("instance"), Some("h:1"));
        assert!(!out.contains("exported_job"));
    }

    #[test]
    fn honor_labels_does_not_fill_a_scraped_empty_value() {
        // Prometheus 2.42 checks `lset.Has(name)`, true for an empty value,
        // and then drops the empty label: the target's value is not used.
        let scraped = l(&[("__name__", "m"), ("job", "")]);
        let out = apply_target_labels(scraped, &l(&[("job", "outer")]), true);
        assert_eq!(out, l(&[("__name__", "m")]));
    }

    #[test]
    fn report_labels_carry_target_labels() {
        let out = report_labels("up", &l(&[("job", "j"), ("instance", "h:1")]));
        assert_eq!(
            out,
            l(&[("__name__", "up"), ("instance", "h:1"), ("job", "j")])
        );
    }
}
