//! Regex matching and `Regexp.Expand` results pinned from Prometheus 2.42:
//! each case ran as a `replace` rule (`source_labels: [s]`, `target_label:
//! m`) over static targets, reading `m` from `/api/v1/targets`.

use promshard_promlib::labels::Labels;
use promshard_promlib::relabel::{Regex, RelabelConfig, process};

/// (regex, replacement, [(value of s, resulting m or None)]).
#[allow(clippy::type_complexity)]
const FROM_PROMETHEUS: &[(&str, &str, &[(&str, Option<&str>)])] = &[
    (
        "\\d+",
        "Y",
        &[("123", Some("Y")), ("١٢٣", None), ("12a", None)],
    ),
    (
        "\\w+",
        "Y",
        &[("abc_1", Some("Y")), ("é", None), ("aé", None)],
    ),
    (
        "\\s",
        "Y",
        &[
            (" ", Some("Y")),
            ("\t", Some("Y")),
            ("\u{000b}", None),
            (" ", None),
            (" ", None),
        ],
    ),
    (
        "\\S",
        "Y",
        &[("\u{000b}", Some("Y")), ("x", Some("Y")), (" ", Some("Y"))],
    ),
    (
        "\\D\\W",
        "Y",
        &[("é!", Some("Y")), ("ab", None), ("1!", None)],
    ),
    (
        "a\\b.*",
        "Y",
        &[("a b", Some("Y")), ("aé", Some("Y")), ("ab", None)],
    ),
    (
        "a\\B.*",
        "Y",
        &[("a b", None), ("aé", None), ("ab", Some("Y"))],
    ),
    (
        "(?i)k",
        "Y",
        &[("K", Some("Y")), ("k", Some("Y")), ("K", Some("Y"))],
    ),
    (
        "(?i)\\w",
        "Y",
        &[("K", Some("Y")), ("ſ", Some("Y")), ("x", Some("Y"))],
    ),
    ("[[:alpha:]]+", "Y", &[("abc", Some("Y")), ("é", None)]),
    (
        "[[:^alpha:]]",
        "Y",
        &[("1", Some("Y")), ("é", Some("Y")), ("a", None)],
    ),
    ("[\\d\\s]+", "Y", &[("1 2", Some("Y")), ("١", None)]),
    (
        "[^\\d]",
        "Y",
        &[("١", Some("Y")), ("1", None), ("a", Some("Y"))],
    ),
    ("\\pL+", "Y", &[("é", Some("Y")), ("1", None)]),
    ("\\p{Greek}+", "Y", &[("αβ", Some("Y")), ("a", None)]),
    ("\\p{^Greek}", "Y", &[("α", None), ("a", Some("Y"))]),
    ("\\QA.b\\E", "Y", &[("A.b", Some("Y")), ("Axb", None)]),
    (".", "Y", &[("\n", None), ("x", Some("Y"))]),
    ("(?s).", "Y", &[("\n", Some("Y"))]),
    (
        "(a|ab)(c|bcd)(d*)",
        "[$1|$2|$3]",
        &[("abcd", Some("[a|bcd|]"))],
    ),
    ("(a+)(a*)", "[$1|$2]", &[("aaa", Some("[aaa|]"))]),
    ("(?U)(a+)(a*)", "[$1|$2]", &[("aaa", Some("[a|aa]"))]),
    ("(a*)+", "[$1]", &[("b", None), ("aa", Some("[aa]"))]),
    ("(a|b)*", "[$1]", &[("ab", Some("[b]"))]),
    (
        "(?P<n>.)(?P<n>.)",
        "[$n|${n}|$2]",
        &[("xy", Some("[x|x|y]"))],
    ),
    ("(?P<1>.)(.)", "[$1|${1}]", &[("xy", Some("[x|x]"))]),
    (
        "(.)(.)",
        "$1x|${1}x|$$1|$|$ |${|${1|$01|$+|$2$1|${2}",
        &[("ab", Some("|ax|$1|$|$ |${|${1||$+|ba|b"))],
    ),
    (
        "(?P<name>.)(.)",
        "$name|${name}|$name_x|${name}_x|$é",
        &[("ab", Some("a|a||a_x|"))],
    ),
    (
        "a)|(b",
        "Y[$1]",
        &[
            ("a", Some("Y[]")),
            ("b", Some("Y[b]")),
            ("ab", Some("Y[]")),
            ("xa", None),
            ("bx", None),
            ("ba", None),
        ],
    ),
    ("\\x41\\101\\x{42}", "Y", &[("AAB", Some("Y"))]),
    ("\\<\\>", "Y", &[("<>", Some("Y"))]),
    ("[a&&b]+", "Y", &[("a&b", Some("Y")), ("ab", Some("Y"))]),
    ("[a~~b]+", "Y", &[("a~b", Some("Y"))]),
    ("[[a]+", "Y", &[("[a", Some("Y"))]),
    ("a{,2}", "Y", &[("a{,2}", Some("Y")), ("aa", None)]),
    ("\\b{start}a", "Y", &[("{start}a", None)]),
    ("(?m)^a$", "Y", &[("a", Some("Y"))]),
    (
        "(?i)straße",
        "Y",
        &[
            ("STRASSE", None),
            ("STRAßE", Some("Y")),
            ("straẞe", Some("Y")),
        ],
    ),
    ("", "Y", &[("", Some("Y")), ("x", None)]),
    ("(?i)[k-l]", "Y", &[("K", Some("Y")), ("L", Some("Y"))]),
    ("\\v\\f", "Y", &[("\u{000b}\u{c}", Some("Y"))]),
    ("[\\w-]+", "Y", &[("a-b", Some("Y")), ("é", None)]),
    ("\\Q\\\\E", "Y", &[("\\", Some("Y")), ("\\\\", None)]),
    (
        "(?i)\\p{Lu}",
        "Y",
        &[("a", Some("Y")), ("A", Some("Y")), ("1", None)],
    ),
    (
        "(?i)[[:upper:]]",
        "Y",
        &[("a", Some("Y")), ("K", Some("Y")), ("ſ", Some("Y"))],
    ),
    (
        "(?i)\\W",
        "Y",
        &[("K", None), ("ſ", None), ("k", None), ("!", Some("Y"))],
    ),
    (
        "(?i)[^k]",
        "Y",
        &[("K", None), ("K", None), ("x", Some("Y"))],
    ),
    ("(?i)[^\\w]", "Y", &[("K", None), ("!", Some("Y"))]),
    ("(?i)\\S", "Y", &[("a", Some("Y"))]),
    ("(?i)[\\D]", "Y", &[("1", None), ("a", Some("Y"))]),
    (
        "(?i)\\P{Lu}",
        "Y",
        &[("a", None), ("A", None), ("1", Some("Y"))],
    ),
    (
        "(?i)[[:^lower:]]",
        "Y",
        &[("a", None), ("A", None), ("1", Some("Y"))],
    ),
    ("\\pL\\p{Greek}", "Y", &[("aβ", Some("Y"))]),
    (
        "(?i)ǅ",
        "Y",
        &[("Ǆ", Some("Y")), ("ǆ", Some("Y")), ("ǅ", Some("Y"))],
    ),
    ("(?U)a+?", "[$0]", &[("aaa", Some("[aaa]"))]),
    ("a(?i)b", "Y", &[("aB", Some("Y")), ("AB", None)]),
    ("(?i:a)b", "Y", &[("Ab", Some("Y")), ("AB", None)]),
    ("x*", "Y", &[("", Some("Y")), ("xx", Some("Y"))]),
];

#[test]
fn replace_matches_prometheus() {
    let mut failures = Vec::new();
    for (pattern, replacement, cases) in FROM_PROMETHEUS {
        let rule = RelabelConfig {
            source_labels: vec!["s".into()],
            regex: Regex::new(pattern).unwrap(),
            target_label: "m".into(),
            replacement: replacement.to_string(),
            ..RelabelConfig::default()
        };
        for (s, want) in *cases {
            let input = Labels::from_pairs([("s", *s), ("job", "j")]);
            let out = process(&input, std::slice::from_ref(&rule)).unwrap();
            if out.get("m") != *want {
                failures.push(format!(
                    "{pattern:?} {replacement:?} on {s:?}: prometheus {want:?}, ours {:?}",
                    out.get("m")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
