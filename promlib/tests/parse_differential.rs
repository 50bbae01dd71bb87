//! Differential parse tests: the real Prometheus 2.42 scrapes exposition
//! bodies served on loopback; what it stored (read back with instant
//! queries) must match what promlib's parser reads from the same bodies.
//! A body Prometheus rejects (target `down`) must be rejected by promlib too.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promshard_promlib::exposition::{Entry, Format, Parser};
use promshard_promlib::labels::Labels;

const TEXT: &str = "text/plain; version=0.0.4";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Case {
    name: String,
    content_type: &'static str,
    /// Body with `@TS_MS@` / `@TS_S@` placeholders for a recent timestamp.
    body: String,
}

fn cases() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/expositions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixture dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("om") => OPENMETRICS,
            _ => TEXT,
        };
        out.push(Case {
            name,
            content_type,
            body: std::fs::read_to_string(&path).expect("fixture"),
        });
    }
    // One case per value form: Go's ParseFloat decides, and we must agree.
    let values = [
        "42",
        "-17",
        "1e10",
        "2.5E-3",
        "+3.5",
        ".5",
        "5.",
        "0x1p3",
        "0x1.8p1",
        "0x10",
        "nan",
        "NaN",
        "inf",
        "+inf",
        "-Inf",
        "Infinity",
        "+Infinity",
        "infinity",
        "4.9e-324",
        "1.7976931348623157e308",
        "1e309",
        "-1e309",
        "2.2250738585072014e-308",
        "0.1000000000000000055511151231257827021181583404541015625",
        "123456789012345678901234567890",
        "-0",
        "1_000",
        "0x_1p0",
        "1e",
        "1.2.3",
        "0b101",
        "0o17",
        "017",
        "00.5",
        "1e+05",
        "1E5",
        "+.5e-1",
        "- 1",
        "1 2",
        "Nan",
        "iNf",
        "",
    ];
    for (i, v) in values.iter().enumerate() {
        out.push(Case {
            name: format!("value_{i:02}"),
            content_type: TEXT,
            body: format!("# value form {v:?}\nv {v}\n"),
        });
        out.push(Case {
            name: format!("om_value_{i:02}"),
            content_type: OPENMETRICS,
            body: format!("v {v}\n# EOF\n"),
        });
    }
    // Line and label syntax corners, one per body.
    let lines = [
        "tabs\t1",
        "trailing_space 1 ",
        "two_spaces  1",
        "ts 1 @TS_MS@",
        "ts_negative 1 -1",
        "ts_float 1 1.5",
        "labels_spaces{ a = \"1\" , b=\"2\" } 1",
        "dup{a=\"1\",a=\"2\"} 1",
        "bad_name{1a=\"x\"} 1",
        "unquoted{a=x} 1",
        "no_value",
        "no_value_labels{a=\"1\"}",
        "utf8_name_é 1",
        "{__name__=\"name_in_braces\"} 1",
        "name_label{__name__=\"other\"} 1",
        "# TYPE t counter\n# TYPE t gauge\nt 1",
        "# TYPE t bogus\nt 1",
        "# HELP h one\n# HELP h two\nh 1",
        "empty_label_value{a=\"\"} 1",
        "newline_escape{a=\"x\\ny\"} 1",
        "trailing_comma{a=\"1\",} 1",
        "double_comma{a=\"1\",,b=\"2\"} 1",
        "",
        "\n\n\nblank_lines 1\n\n",
        "#comment_without_space\nc 1",
        "# TYPE hist histogram\nhist_bucket{le=\"1\"} 1\nhist_bucket{le=\"+Inf\"} 2\nhist_count 2\nhist_sum 1",
    ];
    for (i, l) in lines.iter().enumerate() {
        out.push(Case {
            name: format!("line_{i:02}"),
            content_type: TEXT,
            body: format!("{l}\n"),
        });
    }
    out
}

fn fill(body: &str, now_ms: i64) -> String {
    body.replace("@TS_MS@", &now_ms.to_string())
        .replace("@TS_S@", &format!("{}.{:03}", now_ms / 1000, now_ms % 1000))
}

/// Serves `bodies` by path `/NAME` on a loopback port, in a thread.
fn serve(bodies: BTreeMap<String, (&'static str, String)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Arc::new(bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let bodies = Arc::clone(&bodies);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let resp = match bodies.get(path.trim_start_matches('/')) {
                    Some((ct, body)) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = stream.write_all(resp.as_bytes());
            });
        }
    });
    port
}

/// What promlib reads: `None` when the body is rejected, else every sample
/// as labels (empty values dropped, as the scrape pipeline does) -> (value
/// bits, explicit timestamp).
type Parsed = BTreeMap<Labels, (f64, Option<i64>)>;

fn parse_ours(body: &str, content_type: &str) -> Result<Parsed, String> {
    let mut out = BTreeMap::new();
    for entry in Parser::new(body.as_bytes(), Format::from_content_type(content_type)) {
        match entry {
            Ok(Entry::Series(s)) => {
                out.insert(s.to_labels().without_empty(), (s.value, s.timestamp_ms));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || a == b
}

#[test]
fn prometheus_stores_what_promlib_parses() {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 2_000;
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let bodies: BTreeMap<String, (&'static str, String)> = cases
        .iter()
        .map(|c| (c.name.clone(), (c.content_type, fill(&c.body, now_ms))))
        .collect();
    let port = serve(bodies.clone());

    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for c in &cases {
        config.push_str(&format!(
            "  - job_name: {n}\n    honor_labels: true\n    metrics_path: /{n}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            n = c.name
        ));
    }
    let prom = common::Prometheus::start(&config);

    // Wait (bounded) until every target was scraped at least twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let health: BTreeMap<String, (String, String)> = loop {
        let t = prom.get_json("/api/v1/targets?state=active");
        let active = t["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let h: BTreeMap<String, (String, String)> = active
            .iter()
            .map(|t| {
                (
                    t["scrapePool"].as_str().unwrap_or_default().to_string(),
                    (
                        t["health"].as_str().unwrap_or_default().to_string(),
                        t["lastError"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect();
        let ready = h.len() == cases.len() && h.values().all(|(health, _)| health != "unknown");
        if ready {
            std::thread::sleep(Duration::from_millis(1500));
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "targets not scraped in time: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    let mut agree = 0;
    let mut disagreements = Vec::new();
    for c in &cases {
        let (ct, body) = &bodies[&c.name];
        let ours = parse_ours(body, ct);
        let (health, last_error) = &health[&c.name];
        let theirs_up = health == "up";
        match (&ours, theirs_up) {
            (Err(_), false) => {
                agree += 1;
                continue;
            }
            (Err(e), true) => {
                disagreements.push(format!(
                    "{}: Prometheus accepts, promlib rejects: {e}\n{body}",
                    c.name
                ));
                continue;
            }
            (Ok(_), false) => {
                disagreements.push(format!(
                    "{}: Prometheus rejects ({last_error}), promlib accepts\n{body}",
                    c.name
                ));
                continue;
            }
            (Ok(_), true) => {}
        }
        let ours = ours.unwrap_or_default();
        let q = format!("{{job=\"{}\",__name__!~\"up|scrape_.+\"}}", c.name);
        let v = prom.get_json(&format!(
            "/api/v1/query?query={}",
            common::percent_encode(&q)
        ));
        let mut theirs: BTreeMap<Labels, f64> = BTreeMap::new();
        for r in v["data"]["result"].as_array().cloned().unwrap_or_default() {
            let mut labels: Labels = serde_json::from_value(r["metric"].clone()).expect("labels");
            labels.remove("job");
            labels.remove("instance");
            let value: f64 = match r["value"][1].as_str().unwrap_or_default() {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s.parse().expect("value"),
            };
            theirs.insert(labels, value);
        }
        let mut problems = Vec::new();
        for (l, (value, ts)) in &ours {
            // A sample with an explicit timestamp far from now is parsed but
            // not stored (out of bounds for the TSDB): storage, not parsing.
            if ts.is_some_and(|t| (t - now_ms).abs() > 60_000) {
                theirs.remove(l);
                continue;
            }
            match theirs.get(l) {
                Some(tv) if same_value(*tv, *value) => {}
                Some(tv) => problems.push(format!("{l}: promlib {value}, Prometheus {tv}")),
                None => problems.push(format!("{l}: parsed by promlib, not stored by Prometheus")),
            }
        }
        for l in theirs.keys() {
            if !ours.contains_key(l) {
                problems.push(format!("{l}: stored by Prometheus, not parsed by promlib"));
            }
        }
        if problems.is_empty() {
            agree += 1;
        } else {
            disagreements.push(format!("{}:\n  {}", c.name, problems.join("\n  ")));
        }
    }
    println!("{} cases, {agree} agree", cases.len());
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree with Prometheus 2.42:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}
