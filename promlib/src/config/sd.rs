//! Service discovery configs beyond `static_configs`/`file_sd_configs`:
//! the modelled ones ([`HttpSdConfig`], [`DnsSdConfig`]) with Prometheus
//! 2.42's defaults and checks, and the ones promshard does not handle yet.
//!
//! The parser accepts every `*_sd_configs` key of Prometheus 2.42 (see
//! [`UNSUPPORTED_SD_CONFIGS`]); loading fails here, in one place, when a
//! job uses an unsupported one. Supporting one means giving it a typed
//! field in `raw.rs`/`ScrapeConfig` and removing it from the macro list
//! there.

use serde::{Deserialize, Serialize};

pub use super::raw::UNSUPPORTED_SD_CONFIGS;

use super::PassThrough;
use super::http::{HttpClientConfig, url_problem};
use crate::duration::Duration;

/// The message for a job that uses an unsupported discovery, or `None`
/// when the key's list is empty (nothing to discover, nothing lost).
pub fn unsupported_sd_message(job: &str, key: &str, value: &PassThrough) -> Option<String> {
    let empty = match &value.0 {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return None;
    }
    Some(format!(
        "scrape config with job name {job:?} uses {key}, which promshard does not support yet \
         (supported: static_configs, file_sd_configs, http_sd_configs, dns_sd_configs)"
    ))
}

/// `http_sd_configs` entry (Prometheus 2.42 `discovery/http`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "super::raw::RawHttpSdConfig")]
pub struct HttpSdConfig {
    pub url: String,
    /// Default 60s; also the request timeout, as in Prometheus.
    pub refresh_interval: Duration,
    /// The client settings (auth, TLS, proxy, redirects). After loading,
    /// `bearer_token(_file)` have moved into `authorization`.
    #[serde(flatten)]
    pub http: HttpClientConfig,
}

pub(super) fn default_http_sd_refresh() -> Duration {
    Duration::from_secs(60)
}

impl HttpSdConfig {
    /// Prometheus' checks of the URL: `(key, message)` of the first problem.
    pub(super) fn url_issue(&self) -> Option<(&'static str, String)> {
        if self.url.is_empty() {
            return Some(("url", "URL is missing".to_string()));
        }
        if let Some(m) = url_problem(&self.url) {
            return Some(("url", m));
        }
        let Some((scheme, rest)) = self.url.split_once(':') else {
            return Some(("url", "URL scheme must be 'http' or 'https'".to_string()));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Some(("url", "URL scheme must be 'http' or 'https'".to_string()));
        }
        // Go's `url.Parse`: the host is what follows `//` up to the path,
        // query or fragment, without userinfo.
        let host = rest.strip_prefix("//").map(|r| {
            let authority = r.split(['/', '?', '#']).next().unwrap_or_default();
            authority.rsplit('@').next().unwrap_or_default()
        });
        if host.is_none_or(str::is_empty) {
            return Some(("url", "host is missing in URL".to_string()));
        }
        None
    }
}

/// The record type a `dns_sd_configs` entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsRecordType {
    Srv,
    A,
    Aaaa,
    Mx,
}

impl DnsRecordType {
    /// Parses a `type:` value as Prometheus does (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SRV" => Some(DnsRecordType::Srv),
            "A" => Some(DnsRecordType::A),
            "AAAA" => Some(DnsRecordType::Aaaa),
            "MX" => Some(DnsRecordType::Mx),
            _ => None,
        }
    }

    /// The type's name as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Mx => "MX",
        }
    }

    /// The wire type code (RFC 1035/3596/2782).
    pub fn code(self) -> u16 {
        match self {
            DnsRecordType::A => 1,
            DnsRecordType::Mx => 15,
            DnsRecordType::Aaaa => 28,
            DnsRecordType::Srv => 33,
        }
    }
}

/// `dns_sd_configs` entry (Prometheus 2.42 `discovery/dns`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSdConfig {
    #[serde(default, deserialize_with = "super::raw::null_default")]
    pub names: Vec<String>,
    #[serde(default = "default_dns_sd_refresh")]
    pub refresh_interval: Duration,
    /// `SRV` (default), `A`, `AAAA` or `MX`, as written; see
    /// [`DnsSdConfig::record_type`].
    #[serde(rename = "type", default = "default_dns_sd_type")]
    pub kind: String,
    /// Required for every type but SRV (ignored there).
    #[serde(default)]
    pub port: u16,
}

fn default_dns_sd_refresh() -> Duration {
    Duration::from_secs(30)
}

fn default_dns_sd_type() -> String {
    "SRV".to_string()
}

impl DnsSdConfig {
    /// The record type (`None` for a type Prometheus rejects; a loaded
    /// config never has one).
    pub fn record_type(&self) -> Option<DnsRecordType> {
        DnsRecordType::parse(&self.kind)
    }

    /// Prometheus' checks: `(key, message)` of the first problem.
    pub(super) fn issue(&self) -> Option<(&'static str, String)> {
        if self.names.is_empty() {
            return Some((
                "names",
                "DNS-SD config must contain at least one SRV record name".to_string(),
            ));
        }
        match self.record_type() {
            None => Some(("type", format!("invalid DNS-SD records type {}", self.kind))),
            Some(DnsRecordType::Srv) => None,
            Some(_) if self.port == 0 => Some((
                "port",
                "a port is required in DNS-SD configs for all record types except SRV".to_string(),
            )),
            Some(_) => None,
        }
    }
}
