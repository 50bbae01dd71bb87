//! The `http_sd_configs` / `dns_sd_configs` model: Prometheus 2.42's
//! defaults, its load-time errors naming the job and entry, secrets
//! redacted where the config is shown, relative `*_file` paths joined with
//! the config's directory, and provider construction by `Discoverer`.

use promshard_promlib::config::{self, DnsRecordType, ScrapeConfig};
use promshard_promlib::discovery::{Discoverer, DiscoveryError};
use promshard_promlib::duration::Duration;

fn load(text: &str) -> Result<config::Config, String> {
    config::load_str(text, "sd.yml").map_err(|e| e.to_string())
}

#[test]
fn defaults_are_prometheus_2_42s() {
    let cfg = load(
        "scrape_configs:\n  - job_name: j\n    http_sd_configs: [{url: 'http://sd/x'}]\n    dns_sd_configs: [{names: [_a._tcp.example]}]\n",
    )
    .unwrap();
    let sc = &cfg.scrape_configs[0];
    let h = &sc.http_sd_configs[0];
    assert_eq!(h.refresh_interval, Duration::from_secs(60));
    assert!(h.http.follow_redirects && h.http.enable_http2);
    let d = &sc.dns_sd_configs[0];
    assert_eq!(d.refresh_interval, Duration::from_secs(30));
    assert_eq!(d.record_type(), Some(DnsRecordType::Srv));
    assert_eq!(d.port, 0);
    // The type is case-insensitive, as in Prometheus.
    let cfg = load(
        "scrape_configs:\n  - job_name: j\n    dns_sd_configs: [{names: [a], type: aaaa, port: 1}]\n",
    )
    .unwrap();
    assert_eq!(
        cfg.scrape_configs[0].dns_sd_configs[0].record_type(),
        Some(DnsRecordType::Aaaa)
    );
}

#[test]
fn errors_name_the_job_entry_and_line() {
    let cases = [
        (
            "scrape_configs:\n  - job_name: web\n    dns_sd_configs:\n      - names: [a]\n        type: A\n",
            "sd.yml:4:9: dns_sd_configs[0] of scrape config with job name \"web\": a port is required in DNS-SD configs for all record types except SRV",
        ),
        (
            "scrape_configs:\n  - job_name: web\n    dns_sd_configs:\n      - names: [a]\n        type: NS\n        port: 1\n",
            "sd.yml:5:9: dns_sd_configs[0] of scrape config with job name \"web\": invalid DNS-SD records type NS",
        ),
        (
            "scrape_configs:\n  - job_name: web\n    dns_sd_configs:\n      - names: []\n",
            "sd.yml:4:9: dns_sd_configs[0] of scrape config with job name \"web\": DNS-SD config must contain at least one SRV record name",
        ),
        (
            "scrape_configs:\n  - job_name: api\n    http_sd_configs:\n      - url: file:///etc/t.json\n",
            "sd.yml:4:9: http_sd_configs[0] of scrape config with job name \"api\": URL scheme must be 'http' or 'https'",
        ),
        (
            "scrape_configs:\n  - job_name: api\n    http_sd_configs:\n      - url: 'http://?x'\n",
            "host is missing in URL",
        ),
        (
            "scrape_configs:\n  - job_name: api\n    http_sd_configs:\n      - url: http://sd/x\n        proxy_url: ':nope'\n",
            "missing protocol scheme",
        ),
        (
            "scrape_configs:\n  - job_name: api\n    http_sd_configs:\n      -\n",
            "sd.yml:3:5: empty or null section in http_sd_configs",
        ),
    ];
    for (text, want) in cases {
        let e = load(text).unwrap_err();
        assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn other_discoveries_are_still_refused_naming_the_supported_ones() {
    let e = load("scrape_configs:\n  - job_name: k\n    consul_sd_configs: [{server: 'x:1'}]\n")
        .unwrap_err();
    assert!(
        e.contains("\"k\"")
            && e.contains("consul_sd_configs")
            && e.contains("http_sd_configs, dns_sd_configs"),
        "{e}"
    );
    assert!(!config::UNSUPPORTED_SD_CONFIGS.contains(&"http_sd_configs"));
    assert!(!config::UNSUPPORTED_SD_CONFIGS.contains(&"dns_sd_configs"));
}

#[test]
fn secrets_are_redacted_where_the_config_is_shown() {
    let cfg = load(
        "scrape_configs:\n  - job_name: j\n    http_sd_configs:\n      - url: http://sd/x\n        basic_auth: {username: u, password: hunter2}\n      - url: http://sd/y\n        bearer_token: tok-123\n      - url: http://sd/z\n        oauth2: {client_id: c, client_secret: cs-456, token_url: 'http://t/'}\n",
    )
    .unwrap();
    let sc = &cfg.scrape_configs[0];
    // bearer_token moved into authorization, as Prometheus normalizes.
    let a = sc.http_sd_configs[1].http.authorization.as_ref().unwrap();
    assert_eq!(a.kind, "Bearer");
    assert_eq!(a.credentials.as_ref().unwrap().expose(), "tok-123");
    let json = serde_json::to_string(&cfg).unwrap();
    let debug = format!("{cfg:?}");
    for shown in [&json, &debug] {
        for secret in ["hunter2", "tok-123", "cs-456"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("<secret>"));
    }
    assert!(json.contains("\"http_sd_configs\""), "{json}");
    assert!(json.contains("\"refresh_interval\":\"1m\""), "{json}");
}

#[test]
fn relative_files_are_joined_with_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prom.yml");
    std::fs::write(
        &path,
        "scrape_configs:\n  - job_name: j\n    http_sd_configs:\n      - url: https://sd/x\n        authorization: {credentials_file: tok}\n        tls_config: {ca_file: ca.pem}\n",
    )
    .unwrap();
    let cfg = config::load_file(&path).unwrap();
    let h = &cfg.scrape_configs[0].http_sd_configs[0].http;
    let want = dir.path().join("tok").to_string_lossy().into_owned();
    assert_eq!(
        h.authorization
            .as_ref()
            .unwrap()
            .credentials_file
            .as_deref(),
        Some(want.as_str())
    );
    let want = dir.path().join("ca.pem").to_string_lossy().into_owned();
    assert_eq!(h.tls_config.ca_file.as_deref(), Some(want.as_str()));
    // The CA file does not exist: the client cannot be built, and the
    // error names the job and the entry.
    let e = Discoverer::new(&cfg).unwrap_err();
    assert!(
        matches!(&e, DiscoveryError::HttpSd { job, index: 0, .. } if job == "j"),
        "{e}"
    );
    assert!(e.to_string().contains("ca.pem"), "{e}");
}

#[test]
fn a_scrape_config_parsed_alone_is_checked_by_the_discoverer() {
    // `ScrapeConfig::from_yaml` does not run the loader's checks.
    let sc = ScrapeConfig::from_yaml(
        "job_name: j\ndns_sd_configs: [{names: [a], type: TXT, port: 1}]\n",
        "j.yml",
    )
    .unwrap();
    let cfg = config::Config {
        scrape_configs: vec![sc],
        ..Default::default()
    };
    let e = Discoverer::new(&cfg).unwrap_err();
    assert_eq!(
        e,
        DiscoveryError::DnsType {
            job: "j".into(),
            index: 0,
            kind: "TXT".into()
        }
    );
}
