//! Bad and huge inputs: truncation at every byte, invalid UTF-8, a line with
//! 100k labels, a body of a million lines.

use std::time::Instant;

use promshard_promlib::exposition::{Entry, Format, Parser, lint};

const TEXT: &str = "# HELP http_requests_total The total \\\\ number.\n\
# TYPE http_requests_total counter\n\
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
http_requests_total{method=\"p\\\"o\\\\s\\nt\",code=\"400\"} 3e2\n\
# TYPE lat histogram\n\
lat_bucket{le=\"0.5\"} 12\n\
lat_bucket{le=\"+Inf\"} 15\n\
lat_sum 7.25\n\
lat_count 15\n\
x NaN\n";

const OM: &str = "# TYPE a counter\n\
# HELP a Some \\\"text\\\".\n\
a_total{b=\"c\"} 1 1520879607.789 # {id=\"x\"} 0.5 1520879607.1\n\
a_created{b=\"c\"} 1520430000.123\n\
# TYPE h histogram\n\
# UNIT h_seconds seconds\n\
h_bucket{le=\"+Inf\"} 3 # {} 1\n\
h_count 3\n\
# EOF\n";

fn count(body: &[u8], f: Format) -> (usize, usize) {
    let (mut ok, mut err) = (0, 0);
    for e in Parser::new(body, f) {
        match e {
            Ok(Entry::Series(s)) => {
                ok += 1;
                let _ = s.to_labels();
            }
            Ok(_) => {}
            Err(_) => err += 1,
        }
    }
    (ok, err)
}

#[test]
fn truncated_at_every_byte_gives_an_error_or_fewer_samples() {
    for (body, f) in [(TEXT, Format::Text), (OM, Format::OpenMetrics)] {
        let body = body.as_bytes();
        let (full, full_err) = count(body, f);
        assert_eq!(full_err, 0);
        assert!(full >= 4);
        for cut in 0..body.len() {
            let (ok, err) = count(&body[..cut], f);
            assert!(ok <= full, "cut {cut}: {ok} > {full}");
            if f == Format::OpenMetrics && cut < body.len() - 1 {
                // Without "# EOF" every truncation is an error (the final
                // newline after it is optional).
                assert!(err >= 1, "cut {cut} must fail");
            }
            let _ = lint(&body[..cut], f);
        }
    }
}

#[test]
fn invalid_utf8_anywhere_never_panics_and_label_values_fail() {
    let body = TEXT.as_bytes();
    for i in 0..body.len() {
        let mut b = body.to_vec();
        b[i] = 0xff;
        let _ = count(&b, Format::Text);
        let _ = lint(&b, Format::Text);
    }
    let e = Parser::new(b"a 1\nb 2\nc{x=\"ok\",y=\"\xc0\xaf\"} 3\n", Format::Text)
        .find_map(|e| e.err())
        .unwrap();
    assert_eq!(e.line, 3);
    assert_eq!(e.message, "invalid UTF-8 label value");
}

fn wide_line(n: usize, f: Format) -> String {
    let mut s = String::with_capacity(n * 16);
    s.push_str("wide{");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("l{i}=\"v{i}\""));
    }
    s.push_str("} 1\n");
    if f == Format::OpenMetrics {
        s.push_str("# EOF\n");
    }
    s
}

#[test]
fn one_line_with_100k_labels_parses_in_linear_time() {
    for f in [Format::Text, Format::OpenMetrics] {
        let t = Instant::now();
        let body = wide_line(100_000, f);
        let entries: Vec<_> = Parser::new(body.as_bytes(), f).collect();
        let Ok(Entry::Series(s)) = &entries[0] else {
            panic!("{:?}", entries[0])
        };
        assert_eq!(s.labels().count(), 100_000);
        assert_eq!(s.to_labels().len(), 100_001);
        // Quadratic duplicate checking would take minutes here.
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
        // A duplicate among 100k names is found.
        let dup = body.replacen("} 1", ",l99999=\"again\"} 1", 1);
        let e = Parser::new(dup.as_bytes(), f)
            .find_map(|e| e.err())
            .unwrap();
        assert_eq!(e.message, "label name \"l99999\" is not unique");
        assert_eq!(e.line, 1);
    }
}

#[test]
fn a_million_lines() {
    let mut body = String::with_capacity(40_000_000);
    for i in 0..1_000_000 {
        body.push_str(&format!("m{{i=\"{}\"}} {i} 1700000000000\n", i % 1000));
    }
    let mut n = 0;
    let mut sum = 0.0;
    for e in Parser::new(body.as_bytes(), Format::Text) {
        if let Entry::Series(s) = e.unwrap() {
            n += 1;
            sum += s.value;
        }
    }
    assert_eq!(n, 1_000_000);
    assert_eq!(sum, 999_999.0 * 1_000_000.0 / 2.0);
    // An error on the last line carries its number.
    body.push_str("broken{\n");
    let e = Parser::new(body.as_bytes(), Format::Text)
        .find_map(|e| e.err())
        .unwrap();
    assert_eq!(e.line, 1_000_001);
}
