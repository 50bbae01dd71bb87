//! Every relabel action and every `Regexp.Expand` rule, with values pinned
//! from Prometheus 2.42 where Go behaviour is involved.

use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::{
    Action, Regex, RelabelConfig, expand, go_to_lower, go_to_upper, hashmod, process,
};

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn rule(action: Action) -> RelabelConfig {
    RelabelConfig {
        action,
        ..RelabelConfig::default()
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

fn exp(pattern: &str, template: &str, input: &str) -> String {
    let r = re(pattern);
    let caps = r.compiled().captures(input).unwrap();
    expand(template, &r, &caps)
}

#[test]
fn expand_numbers_names_and_braces() {
    assert_eq!(exp("(a)(b)", "$1-$2", "ab"), "a-b");
    assert_eq!(exp("(a)(b)", "${1}x${2}", "ab"), "axb");
    assert_eq!(exp("(?P<n>a)(b)", "$n|${n}|$2", "ab"), "a|a|b");
    assert_eq!(exp("(a)", "$0", "a"), "a");
}

#[test]
fn expand_longest_name_rule() {
    // `$1x` is the group named "1x" (absent), not group 1 then "x".
    assert_eq!(exp("(a)", "$1x", "a"), "");
    assert_eq!(exp("(?P<n>a)", "$n_x|${n}_x", "a"), "|a_x");
    // Leading zero: a name, not a number.
    assert_eq!(exp("(a)", "$01", "a"), "");
    // Unicode letters are name characters too.
    assert_eq!(exp("(a)", "$é", "a"), "");
}

#[test]
fn expand_dollar_dollar_and_malformed() {
    assert_eq!(exp("(a)", "$$1", "a"), "$1");
    assert_eq!(exp("(a)", "$", "a"), "$");
    assert_eq!(exp("(a)", "$ x", "a"), "$ x");
    assert_eq!(exp("(a)", "${", "a"), "${");
    assert_eq!(exp("(a)", "${1", "a"), "${1");
    assert_eq!(exp("(a)", "$+", "a"), "$+");
    assert_eq!(exp("(a)", "${}", "a"), "${}");
}

#[test]
fn expand_missing_and_unmatched_groups() {
    assert_eq!(exp("(a)|(b)", "[$1][$2]", "b"), "[][b]");
    assert_eq!(exp("(a)", "[$9]", "a"), "[]");
    assert_eq!(exp("(a)", "[$99999999999]", "a"), "[]");
    // Duplicate names (Go accepts them): the first participating group.
    assert_eq!(exp("(?P<n>x)?(?P<n>y)", "$n", "y"), "y");
}

#[test]
fn replace_joins_sources_and_sets_target() {
    let r = RelabelConfig {
        source_labels: vec!["a".into(), "b".into(), "missing".into()],
        separator: "|".into(),
        regex: re("(.*)\\|(.*)\\|"),
        target_label: "t".into(),
        replacement: "$2-$1".into(),
        ..rule(Action::Replace)
    };
    let out = process(&l(&[("a", "1"), ("b", "2")]), &[r]).unwrap();
    assert_eq!(out.get("t"), Some("2-1"));
}

#[test]
fn replace_without_match_changes_nothing() {
    let r = RelabelConfig {
        source_labels: vec!["a".into()],
        regex: re("x"),
        target_label: "a".into(),
        replacement: "y".into(),
        ..rule(Action::Replace)
    };
    let input = l(&[("a", "1")]);
    assert_eq!(process(&input, &[r]).unwrap(), input);
}

#[test]
fn replace_with_empty_result_deletes_target() {
    let r = RelabelConfig {
        source_labels: vec!["a".into()],
        regex: re("(x?)1"),
        target_label: "b".into(),
        replacement: "$1".into(),
        ..rule(Action::Replace)
    };
    let out = process(&l(&[("a", "1"), ("b", "keep?")]), &[r]).unwrap();
    assert_eq!(out, l(&[("a", "1")]));
}

#[test]
fn replace_templated_target() {
    let r = RelabelConfig {
        source_labels: vec!["a".into()],
        regex: re("(\\w+)=(.*)"),
        target_label: "lbl_$1".into(),
        replacement: "$2".into(),
        ..rule(Action::Replace)
    };
    let out = process(&l(&[("a", "k=v")]), std::slice::from_ref(&r)).unwrap();
    assert_eq!(out.get("lbl_k"), Some("v"));
    // Expanded target not a valid name: skipped.
    let out = process(&l(&[("a", "k-x=v")]), &[r]).unwrap();
    assert_eq!(out, l(&[("a", "k-x=v")]));
}

#[test]
fn replace_on_empty_source_with_default_regex_sets_constant() {
    let r = RelabelConfig {
        target_label: "c".into(),
        replacement: "const".into(),
        ..rule(Action::Replace)
    };
    assert_eq!(process(&Labels::new(), &[r]).unwrap(), l(&[("c", "const")]));
}

#[test]
fn keep_and_drop() {
    let keep = RelabelConfig {
        source_labels: vec!["a".into()],
        regex: re("1|2"),
        ..rule(Action::Keep)
    };
    let drop = RelabelConfig {
        action: Action::Drop,
        ..keep.clone()
    };
    let one = l(&[("a", "1")]);
    let three = l(&[("a", "3")]);
    assert!(process(&one, std::slice::from_ref(&keep)).is_some());
    assert!(process(&three, std::slice::from_ref(&keep)).is_none());
    assert!(process(&one, std::slice::from_ref(&drop)).is_none());
    assert!(process(&three, &[drop]).is_some());
    // The regex is anchored: a partial match is no match.
    assert!(process(&l(&[("a", "12")]), &[keep]).is_none());
}

#[test]
fn keepequal_and_dropequal() {
    let keq = RelabelConfig {
        source_labels: vec!["a".into()],
        target_label: "b".into(),
        ..rule(Action::KeepEqual)
    };
    let deq = RelabelConfig {
        action: Action::DropEqual,
        ..keq.clone()
    };
    let same = l(&[("a", "x"), ("b", "x")]);
    let diff = l(&[("a", "x"), ("b", "y")]);
    assert!(process(&same, std::slice::from_ref(&keq)).is_some());
    assert!(process(&diff, std::slice::from_ref(&keq)).is_none());
    assert!(process(&same, std::slice::from_ref(&deq)).is_none());
    assert!(process(&diff, std::slice::from_ref(&deq)).is_some());
    // Both absent: equal (empty == empty).
    assert!(process(&l(&[("c", "1")]), &[keq]).is_some());
}

/// (address, modulus 3, 7, 1000, 2^64-1) from Prometheus 2.42's
/// `/api/v1/targets` with `hashmod` rules on `__address__`.
const HASHMOD_FROM_PROMETHEUS: &[(&str, [u64; 4])] = &[
    ("a:1", [1, 5, 176, 2014116905846636176]),
    ("b:2", [2, 3, 69, 911193230757260069]),
    ("10.0.0.1:9100", [2, 2, 645, 5548061184049187645]),
    ("host.example.com", [2, 6, 93, 10971944651869232093]),
    ("x", [1, 4, 726, 17710500428000290726]),
    ("[::1]:80", [2, 4, 786, 5369753200405466786]),
    ("é", [2, 3, 23, 17796970744824711023]),
];

#[test]
fn hashmod_matches_prometheus() {
    for (addr, want) in HASHMOD_FROM_PROMETHEUS {
        for (m, w) in [3, 7, 1000, u64::MAX].into_iter().zip(want) {
            assert_eq!(hashmod(addr, m), *w, "{addr} mod {m}");
            let r = RelabelConfig {
                source_labels: vec!["__address__".into()],
                modulus: m,
                target_label: "shard".into(),
                ..rule(Action::HashMod)
            };
            let out = process(&l(&[("__address__", addr)]), &[r]).unwrap();
            assert_eq!(out.get("shard"), Some(w.to_string().as_str()));
        }
    }
}

#[test]
fn labelmap_copies_matching_names() {
    let r = RelabelConfig {
        regex: re("__meta_(.+)"),
        replacement: "m_$1".into(),
        ..rule(Action::LabelMap)
    };
    let out = process(
        &l(&[("__meta_a", "1"), ("__meta_b", "2"), ("c", "3")]),
        &[r],
    )
    .unwrap();
    assert_eq!(
        out,
        l(&[
            ("__meta_a", "1"),
            ("__meta_b", "2"),
            ("c", "3"),
            ("m_a", "1"),
            ("m_b", "2")
        ])
    );
}

#[test]
fn labeldrop_and_labelkeep() {
    let input = l(&[("a", "1"), ("ab", "2"), ("b", "3")]);
    let drop = RelabelConfig {
        regex: re("a.*"),
        ..rule(Action::LabelDrop)
    };
    let keep = RelabelConfig {
        action: Action::LabelKeep,
        ..drop.clone()
    };
    assert_eq!(process(&input, &[drop]).unwrap(), l(&[("b", "3")]));
    assert_eq!(
        process(&input, &[keep]).unwrap(),
        l(&[("a", "1"), ("ab", "2")])
    );
}

#[test]
fn lowercase_and_uppercase() {
    let lo = RelabelConfig {
        source_labels: vec!["a".into(), "b".into()],
        target_label: "lo".into(),
        ..rule(Action::Lowercase)
    };
    let up = RelabelConfig {
        target_label: "up".into(),
        action: Action::Uppercase,
        ..lo.clone()
    };
    let out = process(&l(&[("a", "Ab"), ("b", "Cd")]), &[lo, up]).unwrap();
    assert_eq!(out.get("lo"), Some("ab;cd"));
    assert_eq!(out.get("up"), Some("AB;CD"));
}

/// (input, Go strings.ToLower, Go strings.ToUpper) from Prometheus 2.42
/// lowercase/uppercase rules.
const CASE_FROM_PROMETHEUS: &[(&str, &str, &str)] = &[
    ("İ", "i", "İ"),
    ("ß", "ß", "ß"),
    ("ᾳ", "ᾳ", "ᾼ"),
    ("ΣΑΣ", "σασ", "ΣΑΣ"),
    ("ŉ", "ŉ", "ŉ"),
    ("ǅ", "ǆ", "Ǆ"),
    ("ﬀ", "ﬀ", "ﬀ"),
    ("\u{212a}", "k", "\u{212a}"),
    ("Ⅻ", "ⅻ", "Ⅻ"),
    ("ꭰ", "ꭰ", "Ꭰ"),
    ("ᏸ", "ᏸ", "Ᏸ"),
    ("ΐ", "ΐ", "ΐ"),
];

#[test]
fn case_mapping_is_gos() {
    for (s, lower, upper) in CASE_FROM_PROMETHEUS {
        assert_eq!(go_to_lower(s), *lower, "lower {s}");
        assert_eq!(go_to_upper(s), *upper, "upper {s}");
    }
}

#[test]
fn empty_values_never_survive_a_rule() {
    let input = l(&[("a", ""), ("b", "1")]);
    let r = RelabelConfig {
        source_labels: vec!["b".into()],
        regex: re("nomatch"),
        ..rule(Action::Drop)
    };
    assert_eq!(process(&input, &[r]).unwrap(), l(&[("b", "1")]));
    // No rules: the input as is.
    assert_eq!(process(&input, &[]).unwrap(), input);
}

#[test]
fn action_names_parse_case_insensitively() {
    let r: RelabelConfig =
        serde_saphyr::from_str("action: HashMod\nmodulus: 2\ntarget_label: x").unwrap();
    assert_eq!(r.action, Action::HashMod);
    assert!(serde_saphyr::from_str::<RelabelConfig>("action: nope").is_err());
}
