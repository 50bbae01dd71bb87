//! Pipeline-level differential test against the real Prometheus 2.42
//! agent: the same scripted responses scraped by `prometheus
//! --enable-feature=agent` (remote-writing to a recording receiver) and
//! fed through `TargetPipeline` at the timestamps Prometheus used; the
//! samples must agree scrape by scrape (labels, timestamps, value bits),
//! except `scrape_duration_seconds`' value, which is timing.

mod pipediff;

use pipediff::{STALE, Scenario, Step, now_ms, run};

fn text(s: &str) -> Step {
    Step::Text(s.to_string())
}

fn check(sc: Scenario) -> pipediff::Outcome {
    let out = run(&sc);
    out.assert_same(sc.name);
    out
}

#[test]
fn series_disappears_and_comes_back() {
    check(Scenario {
        name: "disappear",
        job_extra: String::new(),
        external_labels: vec![],
        steps: vec![
            text("a 1\nb{x=\"1\"} 2\n"),
            text("a 2\n"),
            text("a 3\nb{x=\"1\"} 4\n"),
            text("a 4\nb{x=\"1\"} 5\n"),
        ],
    });
}
