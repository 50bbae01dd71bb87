//! Each construct and each error kind of both exposition parsers, with the
//! behaviour of Prometheus 2.42's textparse.

use std::borrow::Cow;

use promshard_promlib::exposition::{
    Entry, Format, MetricType, ParseError, ParseErrorKind, Parser, Series, Severity, lint,
};
use promshard_promlib::labels::Labels;

fn entries(body: &str, f: Format) -> Vec<Entry<'_>> {
    Parser::new(body.as_bytes(), f)
        .map(|e| e.unwrap_or_else(|e| panic!("{body:?}: {e}")))
        .collect()
}

fn series(body: &str, f: Format) -> Vec<Series<'_>> {
    entries(body, f)
        .into_iter()
        .filter_map(|e| match e {
            Entry::Series(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn first_error(body: &[u8], f: Format) -> ParseError {
    Parser::new(body, f)
        .find_map(|e| e.err())
        .unwrap_or_else(|| panic!("{:?} should fail", String::from_utf8_lossy(body)))
}

fn text_err(body: &str) -> ParseError {
    first_error(body.as_bytes(), Format::Text)
}

fn om_err(body: &str) -> ParseError {
    first_error(body.as_bytes(), Format::OpenMetrics)
}

#[test]
fn content_type_picks_format_like_prometheus() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("Application/OpenMetrics-Text"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Format::Text
    );
    assert_eq!(Format::from_content_type(""), Format::Text);
    assert_eq!(Format::from_content_type("garbage;;"), Format::Text);
}

#[test]
fn text_full_exposition() {
    let body = "# HELP http_requests_total The total.\\nSecond \\\\ line.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                \n\
                # A comment\n\
                metric_without_timestamp_and_labels 12.47\n\
                # TYPE x untyped\n\
                x{a=\"\\\\ \\\" \\n\"} +Inf\n";
    let e = entries(body, Format::Text);
    assert_eq!(
        e[0],
        Entry::Help {
            name: "http_requests_total",
            help: Cow::Owned("The total.\nSecond \\ line.".to_string())
        }
    );
    assert_eq!(
        e[1],
        Entry::Type {
            name: "http_requests_total",
            kind: MetricType::Counter
        }
    );
    let Entry::Series(s) = &e[2] else { panic!() };
    assert_eq!(
        s.raw(),
        b"http_requests_total{method=\"post\",code=\"200\"}"
    );
    assert_eq!(s.metric_name(), "http_requests_total");
    assert_eq!(s.value, 1027.0);
    assert_eq!(s.timestamp_ms, Some(1395066363000));
    assert_eq!(
        s.to_labels(),
        Labels::from_pairs([
            ("__name__", "http_requests_total"),
            ("method", "post"),
            ("code", "200")
        ])
    );
    assert!(matches!(e[4], Entry::Comment(b"# A comment")));
    let Entry::Series(s) = &e[5] else { panic!() };
    assert_eq!(s.timestamp_ms, None);
    assert_eq!(s.labels().count(), 0);
    assert_eq!(
        e[6],
        Entry::Type {
            name: "x",
            kind: MetricType::Unknown
        }
    );
    let Entry::Series(s) = &e[7] else { panic!() };
    assert_eq!(s.value, f64::INFINITY);
    let labels: Vec<_> = s.labels().collect();
    assert_eq!(
        labels,
        vec![("a", Cow::Owned::<str>("\\ \" \n".to_string()))]
    );
    assert_eq!(e.len(), 8);
}

#[test]
fn text_labels_borrow_unless_escaped() {
    let s = series("m{a=\"plain\",b=\"x\\ty\"} 1\n", Format::Text);
    let l: Vec<_> = s[0].labels().collect();
    assert!(matches!(l[0].1, Cow::Borrowed("plain")));
    // Unknown escapes stay as written, like Go's strings.Replacer.
    assert_eq!(l[1].1, "x\\ty");
}

#[test]
fn text_is_lenient_where_prometheus_is() {
    // Whitespace everywhere, missing and trailing commas, leading blanks,
    // no final newline, raw newline inside a label value.
    let s = series(
        "  m { a = \"1\" b=\"2\", } \t 3 \t 42 \n\n\tn{c=\"x\ny\"} 4",
        Format::Text,
    );
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].value, 3.0);
    assert_eq!(s[0].timestamp_ms, Some(42));
    assert_eq!(
        s[0].to_labels(),
        Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")])
    );
    assert_eq!(s[1].to_labels().get("c"), Some("x\ny"));
    // Value right after the brace.
    assert_eq!(series("m{a=\"1\"}5\n", Format::Text)[0].value, 5.0);
    // Empty label block.
    assert_eq!(series("m{} 5\n", Format::Text)[0].raw(), b"m{}");
}

#[test]
fn text_values_follow_go_parse_float() {
    let cases = [
        ("NaN", f64::NAN),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("inf", f64::INFINITY),
        ("-1.5e-3", -0.0015),
        (".5", 0.5),
        ("1e-400", 0.0),
        ("0.1", 0.1),
    ];
    for (v, want) in cases {
        let body = format!("m {v}\n");
        let got = series(&body, Format::Text)[0].value;
        if want.is_nan() {
            assert_eq!(got.to_bits(), 0x7ff8_0000_0000_0001, "canonical NaN");
        } else {
            assert_eq!(got, want, "{v}");
        }
    }
    assert_eq!(
        text_err("m 1e400\n").message,
        "strconv.ParseFloat: parsing \"1e400\": value out of range"
    );
    assert_eq!(
        text_err("m 0x1p3\n").message,
        "unsupported character in float"
    );
    assert_eq!(
        text_err("m 1_0\n").message,
        "unsupported character in float"
    );
    assert_eq!(
        text_err("m abc\n").message,
        "strconv.ParseFloat: parsing \"abc\": invalid syntax"
    );
}

#[test]
fn text_help_and_type_take_the_rest_of_the_line() {
    let e = entries(
        "# HELP m  two spaces\n# HELP n\n# HELP o \n# TYPE p gauge\n",
        Format::Text,
    );
    assert_eq!(
        e[0],
        Entry::Help {
            name: "m",
            help: Cow::Borrowed(" two spaces")
        }
    );
    assert_eq!(
        e[1],
        Entry::Help {
            name: "n",
            help: Cow::Borrowed("")
        }
    );
    assert_eq!(
        e[2],
        Entry::Help {
            name: "o",
            help: Cow::Borrowed("")
        }
    );
    // "# HELP" without a following blank is a comment; so is "#HELP".
    assert!(matches!(
        entries("# HELP\n#HELP m x\n", Format::Text)[..],
        [Entry::Comment(_), Entry::Comment(_)]
    ));
    assert_eq!(
        text_err("# TYPE m  gauge\n").message,
        "invalid metric type \" gauge\""
    );
    assert_eq!(
        text_err("# TYPE m gauge \n").message,
        "invalid metric type \"gauge \""
    );
    assert_eq!(
        text_err("# TYPE m info\n").message,
        "invalid metric type \"info\""
    );
    assert!(
        text_err("# HELP 1m x\n")
            .message
            .starts_with("expected metric name after HELP")
    );
    // NUL bytes are kept in help text, but one right after the name ends
    // the metadata (promlex quirk).
    assert_eq!(
        entries("# HELP m \u{0}x\n", Format::Text)[0],
        Entry::Help {
            name: "m",
            help: Cow::Borrowed("\u{0}x")
        }
    );
    assert!(
        text_err("# HELP m\u{0}x\n")
            .message
            .contains("linebreak expected")
    );
}

#[test]
fn text_nul_at_line_start_ends_the_body() {
    let s = series("a 1\n\0garbage{{{\n", Format::Text);
    assert_eq!(s.len(), 1);
}

#[test]
fn text_errors_name_line_and_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\nb\n", 2, "expected value after metric"),
        ("a 1\n\nb{x} 1\n", 3, "expected equal after label name"),
        ("b{1=\"x\"} 1\n", 1, "expected label name"),
        ("b{x=y} 1\n", 1, "expected quoted label value"),
        ("b{x=\"y} 1\n", 1, "unterminated label value"),
        ("b{x=\"y\\\n\"} 1\n", 1, "unterminated label value"),
        ("b 1 -5\n", 1, "expected timestamp or new record"),
        ("b 1 5 6\n", 1, "expected next entry after timestamp"),
        ("b 1 99999999999999999999\n", 1, "value out of range"),
        ("b 1 12x\n", 1, "expected next entry after timestamp"),
        ("{a=\"b\"} 1\n", 1, "is not a valid start of a line"),
        (
            "b{a=\"1\",a=\"2\"} 1\n",
            1,
            "label name \"a\" is not unique",
        ),
        (
            "b{__name__=\"c\"} 1\n",
            1,
            "label name \"__name__\" is not unique",
        ),
        ("b{a=\"1\",,} 1\n", 1, "expected label name"),
        ("b{a=\"1\"}{b=\"2\"} 1\n", 1, "expected value after metric"),
        ("# TYPE b foo\n", 1, "invalid metric type \"foo\""),
    ];
    for (body, line, msg) in cases {
        let e = text_err(body);
        assert_eq!(e.line, *line, "{body:?}: {e}");
        assert!(e.message.contains(msg), "{body:?}: {e} should say {msg:?}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")));
        let kind = if msg.contains("is not unique") {
            ParseErrorKind::RepeatedLabelName
        } else {
            ParseErrorKind::Syntax
        };
        assert_eq!(e.kind, kind, "{body:?}: {e}");
    }
}

#[test]
fn invalid_utf8_is_an_error_with_its_line() {
    let e = first_error(b"a 1\nb{x=\"\xff\"} 1\n", Format::Text);
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "invalid UTF-8 label value")
    );
    let e = first_error(b"a 1\n\n# HELP b \xc3\x28\n", Format::Text);
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "help text is not a valid utf8 string")
    );
    let e = first_error(b"# HELP b \xc3\x28\n# EOF\n", Format::OpenMetrics);
    assert_eq!(e.line, 1);
    let e = first_error(b"a{b=\"\xe2\x82\"} 1\n# EOF\n", Format::OpenMetrics);
    assert_eq!(e.message, "invalid UTF-8 label value");
    // Non-UTF-8 in a comment is fine in the text format.
    assert_eq!(
        Parser::new(b"# \xff\xfe\na 1\n", Format::Text)
            .filter(|e| e.is_ok())
            .count(),
        2
    );
}

#[test]
fn openmetrics_full_exposition() {
    let body = "# TYPE a counter\n\
                # HELP a Some \\\"text\\\" \\\\ \\n.\n\
                # UNIT a_seconds seconds\n\
                a_total{b=\"c\"} 1 1520879607.789 # {id=\"x\\\"y\"} 0.5 1520879607.1\n\
                a_created{b=\"c\"} 1520430000.123\n\
                # TYPE h histogram\n\
                h_bucket{le=\"+Inf\"} 3 # {} 1\n\
                h_count 3\n\
                # EOF\n";
    let e = entries(body, Format::OpenMetrics);
    assert_eq!(
        e[0],
        Entry::Type {
            name: "a",
            kind: MetricType::Counter
        }
    );
    assert_eq!(
        e[1],
        Entry::Help {
            name: "a",
            help: Cow::Owned("Some \"text\" \\ \n.".into())
        }
    );
    assert_eq!(
        e[2],
        Entry::Unit {
            name: "a_seconds",
            unit: "seconds"
        }
    );
    let Entry::Series(s) = &e[3] else { panic!() };
    assert_eq!(s.raw(), b"a_total{b=\"c\"}");
    assert_eq!(s.timestamp_ms, Some(1520879607789));
    let ex = s.exemplar.as_ref().unwrap();
    assert_eq!(ex.value, 0.5);
    assert_eq!(ex.timestamp_ms, Some(1520879607100));
    assert_eq!(ex.raw_labels(), b"{id=\"x\\\"y\"}");
    // Prometheus 2.42 keeps exemplar label values as written.
    assert_eq!(ex.to_labels().get("id"), Some("x\\\"y"));
    let Entry::Series(s) = &e[6] else { panic!() };
    assert_eq!(s.exemplar.as_ref().unwrap().labels().count(), 0);
    assert_eq!(s.exemplar.as_ref().unwrap().timestamp_ms, None);
    assert_eq!(e.last(), Some(&Entry::Eof));
    assert_eq!(e.len(), 9);
}

#[test]
fn openmetrics_timestamps_convert_like_go() {
    let ts = |t: &str| {
        let body = format!("a 1 {t}\n# EOF\n");
        series(&body, Format::OpenMetrics)[0].timestamp_ms.unwrap()
    };
    assert_eq!(ts("1"), 1000);
    assert_eq!(ts("1.001"), 1000); // 1.001 * 1000 = 1000.9999999999999
    assert_eq!(ts("-1.5"), -1500);
    assert_eq!(ts("1e300"), i64::MIN); // amd64 int64() of an out-of-range float
    assert_eq!(om_err("a 1 NaN\n# EOF\n").message, "invalid timestamp");
    assert_eq!(om_err("a 1 +Inf\n# EOF\n").message, "invalid timestamp");
}

#[test]
fn openmetrics_eof_rules() {
    assert_eq!(entries("# EOF", Format::OpenMetrics), vec![Entry::Eof]);
    assert_eq!(om_err("a 1\n").message, "data does not end with # EOF");
    assert_eq!(om_err("").message, "data does not end with # EOF");
    let e = om_err("a 1\n# EOF\n\n");
    assert_eq!(
        (e.line, e.message.as_str()),
        (3, "unexpected data after # EOF")
    );
    assert_eq!(om_err("# EOF\na 1").message, "unexpected data after # EOF");
    assert_eq!(om_err("# EOF ").message, "unexpected data after # EOF");
}

#[test]
fn openmetrics_errors_name_line_and_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\n\nb 1\n# EOF\n", 2, "is not a valid start of a line"),
        ("# a comment\n# EOF\n", 1, "invalid comment"),
        ("a  1\n# EOF\n", 1, "expected value after metric"),
        ("a{b=\"c\",} 1\n# EOF\n", 1, "expected label name after ','"),
        (
            "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
            1,
            "expected ',' between labels",
        ),
        (
            "a{b=\"c\" d=\"e\"} 1\n# EOF\n",
            1,
            "expected ',' or '}' after label value",
        ),
        ("a{ b=\"c\"} 1\n# EOF\n", 1, "expected label name or '}'"),
        ("a{b=\"c\nd\"} 1\n# EOF\n", 1, "unterminated label value"),
        ("a 1 1 1\n# EOF\n", 1, "expected next entry after timestamp"),
        ("a 1 \n# EOF\n", 1, "expected timestamp or # symbol"),
        (
            "a 1 # {b=\"c\"} 1\n# EOF\n",
            1,
            "metric name a does not support exemplars",
        ),
        (
            "a_total 1 # {b=\"c\"}\n# EOF\n",
            1,
            "expected value after exemplar labels",
        ),
        (
            "a_total 1 # {b=\"c\"} 1 NaN\n# EOF\n",
            1,
            "invalid exemplar timestamp",
        ),
        (
            "a_total 1 # {b=\"c\"} 1 1 1\n# EOF\n",
            1,
            "expected next entry after exemplar timestamp",
        ),
        (
            "a_total 1 # {b=\"c\"} 1 \n# EOF\n",
            1,
            "expected timestamp or comment",
        ),
        (
            "# TYPE a untyped\n# EOF\n",
            1,
            "invalid metric type \"untyped\"",
        ),
        ("# TYPE a\n# EOF\n", 1, "expected a space and text in TYPE"),
        (
            "# UNIT a_x y\n# EOF\n",
            1,
            "unit not a suffix of metric \"a_x\"",
        ),
        (
            "# UNIT ax x\n# EOF\n",
            1,
            "unit not a suffix of metric \"ax\"",
        ),
        ("# HELP 0a x\n# EOF\n", 1, "expected metric name after HELP"),
        (
            "a{a=\"1\",a=\"1\"} 1\n# EOF\n",
            1,
            "label name \"a\" is not unique",
        ),
        ("a 1\n#EOF\n", 2, "invalid comment"),
    ];
    for (body, line, msg) in cases {
        let e = om_err(body);
        assert_eq!(e.line, *line, "{body:?}: {e}");
        assert!(e.message.contains(msg), "{body:?}: {e} should say {msg:?}");
    }
    // Empty HELP/UNIT text after the space is fine.
    assert_eq!(
        entries("# HELP a \n# UNIT a \n# EOF\n", Format::OpenMetrics).len(),
        3
    );
}

#[test]
fn errors_resume_at_next_line_for_lint() {
    let body = b"a 1\nb{\nc 2\nd x\ne 3\n";
    let results: Vec<_> = Parser::new(body, Format::Text).collect();
    let lines: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.line))
        .collect();
    assert_eq!(lines, vec![2, 4]);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
}

#[test]
fn parser_reports_the_line_of_each_entry() {
    let mut p = Parser::new(b"\n\n# TYPE a gauge\n\na 1\n", Format::Text);
    p.next().unwrap().unwrap();
    assert_eq!(p.line(), 3);
    p.next().unwrap().unwrap();
    assert_eq!(p.line(), 5);
}

#[test]
fn lint_reports_promtool_problems_with_lines() {
    let body = b"# TYPE requests counter\nrequests 1\n# HELP lat_milliseconds x\n# TYPE lat_milliseconds gauge\nlat_milliseconds 2\nfooBar{a=\"1\"} 1\nfooBar{a=\"1\"} 1\nbad{ 1\n";
    let p = lint(body, Format::Text);
    let has = |line: usize, sev: Severity, text: &str| {
        p.iter()
            .any(|x| x.line == line && x.severity == sev && x.message.contains(text))
    };
    assert!(
        has(
            1,
            Severity::Warning,
            "counter metrics should have \"_total\" suffix"
        ),
        "{p:?}"
    );
    assert!(has(1, Severity::Warning, "requests: no help text"), "{p:?}");
    assert!(
        has(
            3,
            Severity::Warning,
            "use base unit \"seconds\" instead of \"milliseconds\""
        ),
        "{p:?}"
    );
    assert!(has(6, Severity::Warning, "snake_case"), "{p:?}");
    assert!(has(7, Severity::Warning, "duplicate series"), "{p:?}");
    assert!(has(8, Severity::Error, "expected"), "{p:?}");
    assert!(
        !p.iter()
            .any(|x| x.message.contains("lat_milliseconds: no help text"))
    );
    assert!(
        lint(
            b"# HELP a_total x\n# TYPE a_total counter\na_total 1\n",
            Format::Text
        )
        .is_empty()
    );
}

#[test]
fn lint_openmetrics_family_rules() {
    let p = lint(
        b"# TYPE a counter\na_total 1\n# TYPE b gauge\nb 1\na_total 2\n# EOF\n",
        Format::OpenMetrics,
    );
    assert!(
        p.iter()
            .any(|x| x.line == 5 && x.message.contains("not contiguous")),
        "{p:?}"
    );
    let p = lint(
        b"# TYPE a counter\na_total -1\n# EOF\n",
        Format::OpenMetrics,
    );
    assert!(
        p.iter()
            .any(|x| x.line == 2 && x.message.contains("negative")),
        "{p:?}"
    );
}
