//! Property tests: the parsers never panic, and on generated valid
//! expositions they agree with a small, separate reference parser.

use promshard_promlib::exposition::{Entry, Format, Parser, lint};
use proptest::prelude::*;

/// (name, labels, value bits, timestamp ms) of one parsed sample.
type Parsed = (String, Vec<(String, String)>, u64, Option<i64>);

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    /// Text: milliseconds; OpenMetrics: seconds with up to 3 decimals, as
    /// (integer part, millis).
    ts: Option<i64>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_value(v: f64, style: u8) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    match style % 3 {
        0 => format!("{v}"),
        1 => format!("{v:e}"),
        _ => format!("{v:?}"),
    }
}

fn render(samples: &[(Sample, u8)], format: Format) -> String {
    let mut out = String::new();
    for (i, (s, style)) in samples.iter().enumerate() {
        if style & 4 != 0 {
            out.push_str(&format!("# HELP {} help \\\\ number {i}\n", s.name));
        }
        if style & 8 != 0 && format == Format::Text {
            out.push_str("# just a comment\n\n");
        }
        out.push_str(&s.name);
        if !s.labels.is_empty() || style & 16 != 0 {
            out.push('{');
            let parts: Vec<String> = s
                .labels
                .iter()
                .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
                .collect();
            out.push_str(&parts.join(","));
            out.push('}');
        }
        out.push(' ');
        out.push_str(&render_value(s.value, *style));
        if let Some(ts) = s.ts {
            match format {
                Format::Text => out.push_str(&format!(" {ts}")),
                Format::OpenMetrics => out.push_str(&format!(" {}.{:03}", ts / 1000, ts % 1000)),
            }
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The reference: a straightforward parser for the canonical form rendered
/// above, building owned strings char by char.
fn reference(body: &str, format: Format) -> Vec<Parsed> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut chars = line.chars().peekable();
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '{' || c == ' ' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut labels = Vec::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                match chars.peek() {
                    Some('}') => {
                        chars.next();
                        break;
                    }
                    Some(',') => {
                        chars.next();
                        continue;
                    }
                    _ => {}
                }
                let mut ln = String::new();
                for c in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    ln.push(c);
                }
                assert_eq!(chars.next(), Some('"'));
                let mut lv = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => lv.push('\n'),
                            Some(o) => lv.push(o),
                            None => {}
                        },
                        o => lv.push(o),
                    }
                }
                labels.push((ln, lv));
            }
        }
        let rest: String = chars.collect();
        let mut fields = rest.split(' ').filter(|f| !f.is_empty());
        let v = fields.next().unwrap();
        let value = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            o => o.parse::<f64>().unwrap(),
        };
        let bits = if value.is_nan() {
            0x7ff8_0000_0000_0001
        } else {
            value.to_bits()
        };
        let ts = fields.next().map(|t| match format {
            Format::Text => t.parse::<i64>().unwrap(),
            Format::OpenMetrics => (t.parse::<f64>().unwrap() * 1000.0) as i64,
        });
        out.push((name, labels, bits, ts));
    }
    out
}

fn ours(body: &[u8], format: Format) -> Vec<Parsed> {
    Parser::new(body, format)
        .filter_map(|e| {
            match e.unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(body))) {
                Entry::Series(s) => Some((
                    s.metric_name().to_string(),
                    s.labels()
                        .map(|(n, v)| (n.to_string(), v.into_owned()))
                        .collect(),
                    s.value.to_bits(),
                    s.timestamp_ms,
                )),
                _ => None,
            }
        })
        .collect()
}

fn sample() -> impl Strategy<Value = (Sample, u8)> {
    let name = "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}";
    let label_name = "[a-zA-Z][a-zA-Z0-9_]{0,8}";
    let label_value = prop_oneof![
        "[a-z0-9 ]{0,8}",
        "[\\\\\"\n{}=, #a-zé日\u{0}]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(10).collect()),
    ];
    let value = prop_oneof![
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(5e-324),
    ];
    let ts = prop_oneof![Just(None), (0i64..4_000_000_000_000).prop_map(Some)];
    (
        name,
        proptest::collection::btree_map(label_name, label_value, 0..5),
        value,
        ts,
        any::<u8>(),
    )
        .prop_map(|(name, labels, value, ts, style)| {
            (
                Sample {
                    name,
                    labels: labels.into_iter().collect(),
                    value,
                    ts,
                },
                style,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        for f in [Format::Text, Format::OpenMetrics] {
            for e in Parser::new(&body, f) {
                if let Ok(Entry::Series(s)) = e {
                    let _ = s.to_labels();
                    if let Some(ex) = s.exemplar { let _ = ex.to_labels(); }
                }
            }
            let _ = lint(&body, f);
        }
    }

    #[test]
    fn never_panics_on_exposition_like_bytes(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("# HELP ".to_string()), Just("# TYPE ".to_string()), Just("# EOF".to_string()),
                Just("# UNIT ".to_string()), Just("{".to_string()), Just("}".to_string()),
                Just("=\"".to_string()), Just("\"".to_string()), Just(",".to_string()),
                Just("\\".to_string()), Just(" ".to_string()), Just("\n".to_string()),
                Just(" # {".to_string()), Just("_total".to_string()), Just("1.5".to_string()),
                Just("NaN".to_string()), Just("\u{0}".to_string()), "[a-z]{1,4}",
                "[0-9.e+-]{1,5}",
            ],
            0..40,
        )
    ) {
        let body = parts.concat();
        for f in [Format::Text, Format::OpenMetrics] {
            for e in Parser::new(body.as_bytes(), f) {
                if let Ok(Entry::Series(s)) = e {
                    let _ = s.to_labels();
                    if let Some(ex) = s.exemplar { let _ = ex.to_labels(); }
                }
            }
            let _ = lint(body.as_bytes(), f);
        }
    }

    #[test]
    fn agrees_with_reference_parser(samples in proptest::collection::vec(sample(), 0..20)) {
        for f in [Format::Text, Format::OpenMetrics] {
            let body = render(&samples, f);
            let want = reference(&body, f);
            let got = ours(body.as_bytes(), f);
            prop_assert_eq!(&got, &want, "{}", body);
            prop_assert_eq!(got.len(), samples.len());
            // And with what was generated.
            for ((s, _), g) in samples.iter().zip(&got) {
                prop_assert_eq!(&s.labels, &g.1);
                if !s.value.is_nan() {
                    prop_assert_eq!(s.value.to_bits(), g.2);
                }
            }
        }
    }
}
