//! The OpenMetrics 1.0 parser test suite against the OpenMetrics parser.
//!
//! Every `shouldParse: true` case must parse. Every `shouldParse: false` case
//! must be rejected by the parser, except those Prometheus 2.42 itself
//! accepts (its parser checks syntax line by line, not family-level rules);
//! those are listed in `ACCEPTED_BY_PROMETHEUS` with the reason, and for them
//! `lint` must report at least one problem.
//!
//! The strict mode, `validate_openmetrics`, must accept exactly the
//! `shouldParse: true` cases and reject every other one: 211 of 211.

use std::path::PathBuf;

use promshard_promlib::exposition::{Format, Parser, Severity, lint, validate_openmetrics};

/// Bad cases Prometheus 2.42's openmetricsparse accepts, grouped by reason.
/// Checked against the real Prometheus 2.42 (scraping each case and reading
/// the target's last error).
const ACCEPTED_BY_PROMETHEUS: &[(&str, &str)] = &[
    (
        "bad_clashing_names_0",
        "no check that family names clash across families",
    ),
    (
        "bad_clashing_names_1",
        "no check that family names clash across families",
    ),
    (
        "bad_clashing_names_2",
        "no check that family names clash across families",
    ),
    (
        "bad_counter_values_0",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_1",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_10",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_11",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_12",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_13",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_14",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_15",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_16",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_17",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_18",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_19",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_2",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_3",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_4",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_5",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_6",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_7",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_8",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_counter_values_9",
        "counter values (negative, NaN, non-integer-ish) are not checked",
    ),
    (
        "bad_exemplar_complex_chars",
        "exemplar label set length (128 chars) is not checked by the parser",
    ),
    (
        "bad_exemplars_6",
        "exemplar label set length is not checked by the parser",
    ),
    (
        "bad_exemplars_on_unallowed_samples_2",
        "exemplar suffix check is by name only (_bucket/_total)",
    ),
    (
        "bad_grouping_or_ordering_0",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_10",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_2",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_3",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_4",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_5",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_6",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_7",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_8",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_grouping_or_ordering_9",
        "family grouping and sample order are not checked",
    ),
    (
        "bad_histograms_0",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_1",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_10",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_11",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_12",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_13",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_14",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_2",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_3",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_6",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_7",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_8",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_histograms_9",
        "histogram bucket/le/count/sum rules are not checked",
    ),
    (
        "bad_info_and_stateset_values_0",
        "info/stateset values are not checked",
    ),
    (
        "bad_info_and_stateset_values_1",
        "info/stateset values are not checked",
    ),
    (
        "bad_metadata_in_wrong_place_0",
        "metadata position within a family is not checked",
    ),
    (
        "bad_metadata_in_wrong_place_1",
        "metadata position within a family is not checked",
    ),
    (
        "bad_metadata_in_wrong_place_2",
        "metadata position within a family is not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_0",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_1",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_2",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_3",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_4",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_5",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_6",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_missing_or_invalid_labels_for_a_type_7",
        "le/quantile labels per type are not checked",
    ),
    (
        "bad_repeated_metadata_0",
        "repeated metadata lines are not checked",
    ),
    (
        "bad_repeated_metadata_1",
        "repeated metadata lines are not checked",
    ),
    (
        "bad_repeated_metadata_3",
        "repeated metadata lines are not checked",
    ),
    (
        "bad_stateset_info_values_0",
        "info/stateset values are not checked",
    ),
    (
        "bad_stateset_info_values_1",
        "info/stateset values are not checked",
    ),
    (
        "bad_stateset_info_values_2",
        "info/stateset values are not checked",
    ),
    (
        "bad_stateset_info_values_3",
        "info/stateset values are not checked",
    ),
    (
        "bad_unit_6",
        "units on families of other types/suffix rules are not checked beyond the suffix",
    ),
    (
        "bad_unit_7",
        "units on families of other types/suffix rules are not checked beyond the suffix",
    ),
];

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/openmetrics")
}

fn should_parse(dir: &std::path::Path) -> bool {
    let json = std::fs::read_to_string(dir.join("test.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["type"], "text", "{}", dir.display());
    v["shouldParse"].as_bool().unwrap()
}

fn parse_all(body: &[u8]) -> Result<usize, String> {
    let mut n = 0;
    for e in Parser::new(body, Format::OpenMetrics) {
        e.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn openmetrics_suite() {
    let dir = suite_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "OpenMetrics conformance suite missing at {}: {e}",
            dir.display()
        )
    });
    let mut cases: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("test.json").exists())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 211, "expected the 211 cases of the suite");

    let (mut good_ok, mut bad_rejected, mut bad_accepted_listed) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut lint_misses: Vec<String> = Vec::new();
    let (mut strict_good, mut strict_bad) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap().to_string();
        let body = std::fs::read(case.join("metrics")).unwrap();
        match (validate_openmetrics(&body), should_parse(case)) {
            (Ok(()), true) => strict_good += 1,
            (Err(_), false) => strict_bad += 1,
            (Ok(()), false) => failures.push(format!("{name}: strict mode accepts a bad case")),
            (Err(p), true) => {
                failures.push(format!("{name}: strict mode rejects a good case: {p:?}"))
            }
        }
        let result = parse_all(&body);
        let listed = ACCEPTED_BY_PROMETHEUS.iter().any(|(n, _)| *n == name);
        if should_parse(case) {
            match result {
                Ok(_) => {
                    good_ok += 1;
                    // Lint may give promtool advice (HELP, base units) but
                    // must not flag a valid case with an OpenMetrics rule.
                    let advice: Vec<_> = lint(&body, Format::OpenMetrics)
                        .into_iter()
                        .filter(|p| {
                            !p.message.ends_with("no help text")
                                && !p.message.contains("use base unit")
                        })
                        .collect();
                    if !advice.is_empty() {
                        failures.push(format!("{name}: valid but lint says {advice:?}"));
                    }
                }
                Err(e) => failures.push(format!("{name}: should parse, got {e}")),
            }
            assert!(!listed, "{name} is a good case but listed as accepted-bad");
        } else {
            match (result, listed) {
                (Err(_), false) => bad_rejected += 1,
                (Err(e), true) => failures.push(format!(
                    "{name}: listed as accepted by Prometheus 2.42 but rejected: {e}"
                )),
                (Ok(_), true) => {
                    bad_accepted_listed += 1;
                    // "no help text" is there for nearly every case; lint
                    // must find what is actually wrong.
                    let found: Vec<_> = lint(&body, Format::OpenMetrics)
                        .into_iter()
                        .filter(|p| p.severity == Severity::Violation)
                        .collect();
                    if found.is_empty() {
                        lint_misses.push(name.clone());
                    }
                }
                (Ok(_), false) => failures.push(format!("{name}: should be rejected, parsed")),
            }
        }
    }
    println!(
        "OpenMetrics suite: {} cases; good parsed {good_ok}; bad rejected {bad_rejected}; \
         bad accepted as Prometheus 2.42 does {bad_accepted_listed}",
        cases.len()
    );
    println!(
        "Strict OpenMetrics 1.0 (validate_openmetrics): {} of {} cases as the suite says; \
         good accepted {strict_good}; bad rejected {strict_bad}",
        strict_good + strict_bad,
        cases.len()
    );
    if !lint_misses.is_empty() {
        failures.push(format!(
            "lint reports no OpenMetrics violation for {} accepted-bad cases: {lint_misses:?}",
            lint_misses.len()
        ));
    }
    assert_eq!(bad_accepted_listed, ACCEPTED_BY_PROMETHEUS.len());
    assert_eq!(
        (good_ok, bad_rejected),
        (44, 96),
        "Prometheus-compatible mode"
    );
    assert_eq!((strict_good, strict_bad), (44, 167), "strict mode");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
