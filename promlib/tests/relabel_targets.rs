//! `targets::populate` and `Target::url` against Prometheus 2.42: the job
//! below ran in a real Prometheus with these targets in a file_sd file;
//! expectations come from `/api/v1/targets?state=any` (active: discovered
//! labels, public labels, scrapeUrl; dropped) and from its log ("Creating
//! target failed" errors).

use promshard_promlib::config;
use promshard_promlib::labels::Labels;
use promshard_promlib::targets::{Populated, populate};

const CONFIG: &str = r####"global:
  scrape_interval: 1h
  scrape_timeout: 10s
scrape_configs:
  - job_name: p1
    scheme: https
    metrics_path: /m/x?y
    params:
      module: [a, b]
      "z": [""]
      e: []
    file_sd_configs:
      - files: [/tmp/relab/pop_sd.json]
    relabel_configs:
      - source_labels: [case]
        regex: noaddr
        target_label: __address__
        replacement: ""
      - source_labels: [case]
        regex: drop
        action: drop
      - source_labels: [__meta_foo]
        target_label: from_meta
      - source_labels: [case]
        regex: meta
        target_label: __param_extra
        replacement: "v w"
"####;

/// (discovered labels as file_sd gives them, kind, discovered-or-error,
/// public labels, scrape URL).
const FROM_PROMETHEUS: &[(&str, &str, &str, &str, &str)] = &[
    (
        r####"{"case": "plain", "__address__": "h1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "h1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "h1:443", "job": "p1"}"####,
        r####"https://h1:443/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "[::1]", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "[::1]", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "[::1]:443", "job": "p1"}"####,
        r####"https://[::1]:443/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "::1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "::1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "::1", "job": "p1"}"####,
        r####"https://::1/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "a:b:c", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "a:b:c", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "a:b:c", "job": "p1"}"####,
        r####"https://a:b:c/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "h:", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "h:", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "h:", "job": "p1"}"####,
        r####"https://h:/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "host/path", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####""host/path:443" is not a valid hostname"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "plain", "__address__": "é:1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "é:1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "é:1", "job": "p1"}"####,
        r####"https://%C3%A9:1/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "plain", "__address__": "h%2:1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "h%2:1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "plain", "job": "p1"}"####,
        r####"{"case": "plain", "instance": "h%2:1", "job": "p1"}"####,
        r####"https://h%252:1/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "inst", "instance": "given", "__address__": "i1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "i1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "inst", "instance": "given", "job": "p1"}"####,
        r####"{"case": "inst", "instance": "given", "job": "p1"}"####,
        r####"https://i1:443/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "tgt", "__scrape_timeout__": "2h", "__address__": "t1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"scrape timeout cannot be greater than scrape interval ("2h" > "1h")"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "zi", "__scrape_interval__": "0s", "__address__": "t2", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"scrape interval cannot be 0"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "badi", "__scrape_interval__": "5x", "__address__": "t3", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"error parsing scrape interval: not a valid duration string: "5x""####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "zt", "__scrape_timeout__": "0", "__address__": "t4", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"scrape timeout cannot be 0"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "ftp", "__scheme__": "ftp", "__address__": "s1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"invalid scheme: "https""####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "ftpport", "__scheme__": "ftp", "__address__": "s2:9", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "s2:9", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "ftp", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "ftpport", "job": "p1"}"####,
        r####"{"case": "ftpport", "instance": "s2:9", "job": "p1"}"####,
        r####"ftp://s2:9/m/x%3Fy?module=a&module=b&z="####,
    ),
    (
        r####"{"case": "noaddr", "__address__": "n1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"error"####,
        r####"no address"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "meta", "__meta_foo": "bar", "__tmp_x": "y", "__param_module": "over", "__address__": "m1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "m1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__meta_foo": "bar", "__metrics_path__": "/m/x?y", "__param_extra": "v w", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "__tmp_x": "y", "case": "meta"}"####,
        r####"{"case": "meta", "from_meta": "bar", "instance": "m1:443", "job": "p1"}"####,
        r####"https://m1:443/m/x%3Fy?extra=v+w&module=a&module=b&z="####,
    ),
    (
        r####"{"case": "drop", "__address__": "k1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"dropped"####,
        r####"{"__address__": "k1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "drop", "job": "p1"}"####,
        r####""####,
        r####""####,
    ),
    (
        r####"{"case": "emptyval", "empty": "", "__metrics_path__": "", "__address__": "e1", "__meta_filepath": "/tmp/relab/pop_sd.json"}"####,
        r####"active"####,
        r####"{"__address__": "e1", "__meta_filepath": "/tmp/relab/pop_sd.json", "__metrics_path__": "/m/x?y", "__param_module": "a", "__scheme__": "https", "__scrape_interval__": "1h", "__scrape_timeout__": "10s", "case": "emptyval", "job": "p1"}"####,
        r####"{"case": "emptyval", "instance": "e1:443", "job": "p1"}"####,
        r####"https://e1:443/m/x%3Fy?module=a&module=b&z="####,
    ),
];

fn labels(json: &str) -> Labels {
    serde_json::from_str(json).unwrap()
}

#[test]
fn populate_matches_prometheus() {
    let cfg = config::load_str(CONFIG, "pop.yml").unwrap();
    let job = &cfg.scrape_configs[0];
    let mut failures = Vec::new();
    for (discovered, kind, a, b, url) in FROM_PROMETHEUS {
        let got = populate(job, labels(discovered));
        let ok = match (*kind, &got) {
            ("active", Ok(Populated::Active(t))) => {
                t.discovered_labels == labels(a)
                    && t.public_labels() == labels(b)
                    && t.url(job) == *url
                    && t.id == promshard_promlib::labels::target_id(&t.job_name, &t.labels)
            }
            ("dropped", Ok(Populated::Dropped { discovered_labels })) => {
                *discovered_labels == labels(a)
            }
            ("error", Err(e)) => e.to_string() == *a,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{discovered}: prometheus {kind} {a} {b} {url}\n  ours {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
