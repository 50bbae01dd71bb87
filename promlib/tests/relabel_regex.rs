//! Go RE2 acceptance of relabel regexes, pinned from promtool 2.42
//! (`promtool check config` with one `regex:` per case).

use promshard_promlib::relabel::Regex;

/// (pattern, Go's result: "OK" or the error after "error parsing regexp: ").
const GO_ACCEPTANCE: &[(&str, &str)] = &[
    (r#"a(?i)*"#, r#"OK"#),
    (r#"a(?i)(?s)+"#, r#"OK"#),
    (
        r#"(?i)*"#,
        r#"missing argument to repetition operator: `*`"#,
    ),
    (r#"a\Q\E*"#, r#"OK"#),
    (r#"a(?)*"#, r#"OK"#),
    (
        r#"a|(?i)*"#,
        r#"missing argument to repetition operator: `*`"#,
    ),
    (r#"a{1000}"#, r#"OK"#),
    (r#"a{1001}"#, r#"invalid repeat count: `{1001}`"#),
    (r#"a{2,1}"#, r#"invalid repeat count: `{2,1}`"#),
    (r#"a{,5}"#, r#"OK"#),
    (r#"a{01}"#, r#"OK"#),
    (r#"a{1,1001}"#, r#"invalid repeat count: `{1,1001}`"#),
    (r#"a{100000000}"#, r#"invalid repeat count: `{100000000}`"#),
    (r#"a**"#, r#"invalid nested repetition operator: `**`"#),
    (r#"a*?"#, r#"OK"#),
    (r#"a*??"#, r#"invalid nested repetition operator: `*??`"#),
    (r#"a+*"#, r#"invalid nested repetition operator: `+*`"#),
    (r#"*a"#, r#"missing argument to repetition operator: `*`"#),
    (r#"a|*"#, r#"missing argument to repetition operator: `*`"#),
    (r#"(*a)"#, r#"missing argument to repetition operator: `*`"#),
    (
        r#"a{2}{3}"#,
        r#"invalid nested repetition operator: `{2}{3}`"#,
    ),
    (r#"a{2}*"#, r#"invalid nested repetition operator: `{2}*`"#),
    (r#"\Qa.b\E"#, r#"OK"#),
    (r#"\Qa.b"#, r#"missing closing ): `^(?:\Qa.b)$`"#),
    (r#"[\Q]\E]"#, r#"invalid escape sequence: `\Q`"#),
    (r#"\1"#, r#"invalid escape sequence: `\1`"#),
    (r#"\12"#, r#"OK"#),
    (r#"\0"#, r#"OK"#),
    (r#"\8"#, r#"invalid escape sequence: `\8`"#),
    (r#"\C"#, r#"invalid escape sequence: `\C`"#),
    (r#"\Z"#, r#"invalid escape sequence: `\Z`"#),
    (r#"\z"#, r#"OK"#),
    (r#"\A"#, r#"OK"#),
    (r#"\E"#, r#"invalid escape sequence: `\E`"#),
    (r#"\<"#, r#"OK"#),
    (r#"\pL"#, r#"OK"#),
    (r#"\p{Greek}"#, r#"OK"#),
    (
        r#"\p{greek}"#,
        r#"invalid character class range: `\p{greek}`"#,
    ),
    (r#"\p{^Greek}"#, r#"OK"#),
    (
        r#"\p{Alphabetic}"#,
        r#"invalid character class range: `\p{Alphabetic}`"#,
    ),
    (r#"\p{L&}"#, r#"invalid character class range: `\p{L&}`"#),
    (r#"\pN"#, r#"OK"#),
    (r#"\p{Lu}"#, r#"OK"#),
    (r#"\p{Any}"#, r#"OK"#),
    (r#"\p{Old_Italic}"#, r#"OK"#),
    (r#"[[:alpha:]]"#, r#"OK"#),
    (
        r#"[[:foo:]]"#,
        r#"invalid character class range: `[:foo:]`"#,
    ),
    (r#"[[:^alpha:]]"#, r#"OK"#),
    (r#"[[:alpha:]"#, r#"missing closing ]: `[[:alpha:])$`"#),
    (r#"(?P<n>a)"#, r#"OK"#),
    (r#"(?<n>a)"#, r#"invalid or unsupported Perl syntax: `(?<`"#),
    (r#"(?P<n>a)(?P<n>b)"#, r#"OK"#),
    (r#"(?P<>a)"#, r#"invalid named capture: `(?P<>`"#),
    (r#"(?P<1>a)"#, r#"OK"#),
    (r#"(?P<é>a)"#, r#"invalid named capture: `(?P<é>`"#),
    (r#"(?i)a"#, r#"OK"#),
    (r#"(?x)a"#, r#"invalid or unsupported Perl syntax: `(?x`"#),
    (r#"(?i-s:a)"#, r#"OK"#),
    (r#"(?-)a"#, r#"invalid or unsupported Perl syntax: `(?-)`"#),
    (r#"(?)a"#, r#"OK"#),
    (
        r#"(?i-)a"#,
        r#"invalid or unsupported Perl syntax: `(?i-)`"#,
    ),
    (r#"(?U)a*"#, r#"OK"#),
    (r#"(?=a)"#, r#"invalid or unsupported Perl syntax: `(?=`"#),
    (r#"(?#c)"#, r#"invalid or unsupported Perl syntax: `(?#`"#),
    (r#"a)"#, r#"unexpected ): `^(?:a))$`"#),
    (r#"(a"#, r#"missing closing ): `^(?:(a)$`"#),
    (r#"[a"#, r#"missing closing ]: `[a)$`"#),
    (r#"[]a]"#, r#"OK"#),
    (r#"[^]a]"#, r#"OK"#),
    (r#"[a-]"#, r#"OK"#),
    (r#"[z-a]"#, r#"invalid character class range: `z-a`"#),
    (r#"[a&&b]"#, r#"OK"#),
    (r#"[a--b]"#, r#"invalid character class range: `a--`"#),
    (r#"[a~~b]"#, r#"OK"#),
    (r#"[[a]"#, r#"OK"#),
    (r#"\x{110000}"#, r#"invalid escape sequence: `\x{110000`"#),
    (r#"\x{41}"#, r#"OK"#),
    (r#"\x4"#, r#"invalid escape sequence: `\x4)`"#),
    (r#"\xZZ"#, r#"invalid escape sequence: `\xZZ`"#),
    (r#"^*"#, r#"OK"#),
    (r#"$+"#, r#"OK"#),
    (r#"\b+"#, r#"OK"#),
    (r#"x{2}{,3}"#, r#"OK"#),
    (r#"\"#, r#"missing closing ): `^(?:\)$`"#),
    (r#"a\"#, r#"missing closing ): `^(?:a\)$`"#),
    (r#"[\d-z]"#, r#"OK"#),
    (r#"[a-\d]"#, r#"invalid escape sequence: `\d`"#),
    (r#"\v"#, r#"OK"#),
    (r#"\_"#, r#"OK"#),
    (r#"\ "#, r#"OK"#),
    (r#"\-"#, r#"OK"#),
    (r#"{"#, r#"OK"#),
    (r#"a{"#, r#"OK"#),
    (r#"a{1"#, r#"OK"#),
    (r#"a{1,"#, r#"OK"#),
    (r#"}"#, r#"OK"#),
    (r#"]"#, r#"OK"#),
    (r#"(?i)(?m)^a$"#, r#"OK"#),
    (r#"\b{start}"#, r#"OK"#),
    (r#"(?s)."#, r#"OK"#),
    (r#"\k<n>"#, r#"invalid escape sequence: `\k`"#),
    (r#"\pX"#, r#"invalid character class range: `\pX`"#),
    (
        r#"\p{Zzzz}"#,
        r#"invalid character class range: `\p{Zzzz}`"#,
    ),
    (r#"\p{Latin}"#, r#"OK"#),
    (r#"\p{Cn}"#, r#"invalid character class range: `\p{Cn}`"#),
    (r#"\p{LC}"#, r#"invalid character class range: `\p{LC}`"#),
    (r#"\p{Han}"#, r#"OK"#),
    (r#"(a{1000}){1000}"#, r#"invalid repeat count: `{1000}`"#),
    (
        r#"((a{100}){100}){100}"#,
        r#"invalid repeat count: `{100}`"#,
    ),
];

#[test]
fn acceptance_matches_go_regexp() {
    let mut failures = Vec::new();
    for (pattern, go) in GO_ACCEPTANCE {
        let ours = match Regex::new(pattern) {
            Ok(_) => "OK".to_string(),
            Err(e) => e.reason,
        };
        let same = if *go == "OK" {
            ours == "OK"
        } else {
            ours == *go
        };
        if !same {
            failures.push(format!("{pattern:?}: go {go:?}, ours {ours:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
