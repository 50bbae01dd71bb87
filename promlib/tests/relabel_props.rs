//! Properties of relabeling that must hold for any input.

use std::collections::BTreeSet;

use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::{Action, Regex, RelabelConfig, process};
use proptest::prelude::*;

const PATTERNS: &[&str] = &[
    "(.*)",
    "(.+)",
    "",
    "a.*",
    "(a|b)(.*)",
    r"(\w+)_(\d+)",
    "(?i)A",
    r"\Qa.b\E",
    "[^a]*",
    "x?",
    "(?P<n>.)(.*)",
    r"[[:alpha:]]+",
    r"\s*(.*?)\s*",
];
const TEMPLATES: &[&str] = &[
    "$1", "${1}", "$2x", "$$", "$", "x", "", "${n}_$1", "$1x", "a$",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("__meta_x".to_string()),
        Just("__address__".to_string()),
        "[a-z_][a-z0-9_]{0,6}",
    ]
}

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::vec((name(), prop_oneof![Just(String::new()), ".{0,8}"]), 0..8)
        .prop_map(Labels::from_pairs)
}

fn rule() -> impl Strategy<Value = RelabelConfig> {
    (
        proptest::collection::vec(name(), 0..3),
        prop_oneof![Just(";".to_string()), ".{0,2}"],
        proptest::sample::select(PATTERNS),
        0u64..5,
        prop_oneof![
            name(),
            proptest::sample::select(TEMPLATES).prop_map(String::from)
        ],
        proptest::sample::select(TEMPLATES),
        proptest::sample::select(&Action::ALL[..]),
    )
        .prop_map(
            |(src, sep, pat, modulus, target, repl, action)| RelabelConfig {
                source_labels: src,
                separator: sep,
                regex: Regex::new(pat).unwrap(),
                modulus,
                target_label: target,
                replacement: repl.to_string(),
                action,
            },
        )
}

fn names(l: &Labels) -> BTreeSet<String> {
    l.iter().map(|l| l.name.clone()).collect()
}

proptest! {
    #[test]
    fn regex_new_never_panics(p in ".{0,12}") {
        let _ = Regex::new(&p);
    }

    #[test]
    fn process_never_panics_and_is_deterministic(
        input in labels(),
        rules in proptest::collection::vec(rule(), 0..6),
    ) {
        let a = process(&input, &rules);
        let b = process(&input, &rules);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn output_never_has_empty_values(
        input in labels(),
        rules in proptest::collection::vec(rule(), 1..6),
    ) {
        if let Some(out) = process(&input, &rules) {
            prop_assert!(out.iter().all(|l| !l.value.is_empty()), "{}", out);
        }
    }

    #[test]
    fn keep_and_drop_are_complements(input in labels(), r in rule()) {
        let keep = RelabelConfig { action: Action::Keep, ..r.clone() };
        let drop = RelabelConfig { action: Action::Drop, ..r };
        let kept = process(&input, &[keep]).is_some();
        let not_dropped = process(&input, &[drop]).is_some();
        prop_assert_ne!(kept, not_dropped);
    }

    #[test]
    fn labeldrop_and_labelkeep_partition_names(
        input in labels(),
        pat in proptest::sample::select(PATTERNS),
    ) {
        let drop = RelabelConfig {
            regex: Regex::new(pat).unwrap(),
            action: Action::LabelDrop,
            ..RelabelConfig::default()
        };
        let keep = RelabelConfig { action: Action::LabelKeep, ..drop.clone() };
        let dropped = names(&process(&input, &[drop]).unwrap());
        let kept = names(&process(&input, &[keep]).unwrap());
        let all = names(&input.clone().without_empty());
        prop_assert!(dropped.is_disjoint(&kept));
        prop_assert_eq!(dropped.union(&kept).cloned().collect::<BTreeSet<_>>(), all);
    }

    #[test]
    fn labelmap_identity(input in labels()) {
        let r = RelabelConfig {
            action: Action::LabelMap,
            ..RelabelConfig::default()
        };
        prop_assert_eq!(process(&input, &[r]).unwrap(), input.without_empty());
    }
}
