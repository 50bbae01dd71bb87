//! The prometheus.yml model with Prometheus 2.42 defaults and validation.
//!
//! Load with [`load_file`] or [`load_str`]; defaults from `global` are filled
//! into every scrape config, so consumers read final values. Errors name the
//! file, line and column of the offending node.

mod http;
mod load;
mod raw;
mod sd;
mod yaml_tree;

pub use self::http::{
    Authorization, BasicAuth, HttpClientConfig, HttpConfigIssue, OAuth2, TlsConfig,
};
pub use self::load::{load_file, load_str};
pub use self::sd::{DnsRecordType, DnsSdConfig, HttpSdConfig, UNSUPPORTED_SD_CONFIGS};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::labels::Labels;
use crate::relabel::RelabelConfig;
use crate::secret::Secret;

/// A config that cannot be loaded. Displays as `FILE:LINE:COL: message`
/// where the position is known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl ConfigError {
    /// The 1-based line of the error, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::At { line, .. } => Some(*line),
            _ => None,
        }
    }
    /// The message without file and position.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Io { source, .. } => source.to_string(),
            ConfigError::At { message, .. } | ConfigError::Invalid { message, .. } => {
                message.clone()
            }
        }
    }
}

/// The whole prometheus.yml.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub global: GlobalConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule_files: Vec<String>,
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Kept as raw YAML: promshard does not use them, but must accept them.
    /// Secret-looking keys are redacted when printed or serialized.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_read: Vec<PassThrough>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerting: Option<PassThrough>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<PassThrough>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<PassThrough>,
    /// Where the config was loaded from (relative `*_file` paths resolve
    /// against its directory).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// The scrape config of job `name`.
    pub fn job(&self, name: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|s| s.job_name == name)
    }

    /// Joins every relative `*_file` path (credentials, TLS files, file SD
    /// globs) with `dir`, as Prometheus does with the config file's
    /// directory. [`load_file`] calls it with the file's directory.
    pub fn resolve_files(&mut self, dir: &Path) {
        for sc in &mut self.scrape_configs {
            sc.resolve_files(dir);
        }
        for rw in &mut self.remote_write {
            rw.http.resolve_files(dir);
        }
    }
}

/// A section promshard accepts without modelling it. `Debug` and
/// `Serialize` replace values under secret-looking keys with `<secret>`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PassThrough(pub serde_json::Value);

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    !k.ends_with("_file")
        && !k.ends_with("_id")
        && ["password", "secret", "token", "credentials", "key"]
            .iter()
            .any(|s| k.contains(s))
}

impl PassThrough {
    /// The value with secrets replaced by `<secret>`.
    pub fn redacted(&self) -> serde_json::Value {
        fn walk(v: &serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(m) => serde_json::Value::Object(
                    m.iter()
                        .map(|(k, v)| {
                            let v = if is_secret_key(k) && !v.is_object() && !v.is_null() {
                                serde_json::Value::String(crate::secret::REDACTED.to_string())
                            } else {
                                walk(v)
                            };
                            (k.clone(), v)
                        })
                        .collect(),
                ),
                serde_json::Value::Array(a) => {
                    serde_json::Value::Array(a.iter().map(walk).collect())
                }
                other => other.clone(),
            }
        }
        walk(&self.0)
    }
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl Serialize for PassThrough {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

/// `global:`. Prometheus 2.42 knows only the intervals, external labels and
/// the query log file here; the limit fields (global limits came with 2.45)
/// are rejected in YAML and stay 0 ("no limit").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub external_labels: Labels,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query_log_file: String,
    #[serde(skip)]
    pub body_size_limit: ByteSize,
    #[serde(skip)]
    pub sample_limit: u64,
    #[serde(skip)]
    pub target_limit: u64,
    #[serde(skip)]
    pub label_limit: u64,
    #[serde(skip)]
    pub label_name_length_limit: u64,
    #[serde(skip)]
    pub label_value_length_limit: u64,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            external_labels: Labels::new(),
            query_log_file: String::new(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        }
    }
}

/// A size in bytes, written as Prometheus' units (`10MB`, `1GiB`, `0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// One `scrape_configs` entry. After loading, the optional fields are
/// filled from `global`, so every field holds its final value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawScrapeConfig")]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    /// Defaults to `global.scrape_interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<Duration>,
    /// Defaults to `global.scrape_timeout`, capped at the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<Duration>,
    pub metrics_path: String,
    pub scheme: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<ByteSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_name_length_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_value_length_limit: Option<u64>,
    #[serde(flatten)]
    pub http: HttpClientConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_sd_configs: Vec<DnsSdConfig>,
    /// Service discoveries of Prometheus 2.42 that promshard does not
    /// support yet, by key (`consul_sd_configs`...). Loading fails when one
    /// is non-empty; kept so the parser accepts every 2.42 key.
    #[serde(flatten)]
    pub unsupported_sd_configs: BTreeMap<String, PassThrough>,
    /// The job's YAML exactly as written (its sequence item, re-indented to
    /// stand alone), so that a config rewrite never loses a field promshard
    /// does not model. Filled by the loader.
    #[serde(skip)]
    pub original_yaml: OriginalYaml,
}

/// A job's YAML as the user wrote it. It may hold secrets, so `Debug`
/// prints only its size; read the text through `Deref`/[`OriginalYaml::as_str`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OriginalYaml(pub String);

impl OriginalYaml {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for OriginalYaml {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OriginalYaml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OriginalYaml(<{} bytes>)", self.0.len())
    }
}

impl ScrapeConfig {
    /// The final scrape interval (after defaults).
    pub fn interval(&self) -> Duration {
        self.scrape_interval.unwrap_or(Duration::from_secs(60))
    }
    /// The final scrape timeout (after defaults).
    pub fn timeout(&self) -> Duration {
        self.scrape_timeout.unwrap_or(Duration::from_secs(10))
    }
    /// The final body size limit in bytes (0: none).
    pub fn body_size_limit_bytes(&self) -> u64 {
        self.body_size_limit.map_or(0, |b| b.0)
    }

    /// Parses one scrape config on its own (e.g. [`ScrapeConfig::original_yaml`])
    /// without filling defaults from a `global` section.
    pub fn from_yaml(text: &str, file: &str) -> Result<ScrapeConfig, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| load::yaml_error(&e, file))
    }

    /// Joins relative `*_file` paths (also those of `http_sd_configs`) and
    /// file SD globs with `dir`.
    pub fn resolve_files(&mut self, dir: &Path) {
        self.http.resolve_files(dir);
        for h in &mut self.http_sd_configs {
            h.http.resolve_files(dir);
        }
        for f in &mut self.file_sd_configs {
            for p in &mut f.files {
                if Path::new(p.as_str()).is_relative() {
                    *p = dir.join(&*p).to_string_lossy().into_owned();
                }
            }
        }
    }
}

/// `static_configs` entry: a target group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// `file_sd_configs` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    #[serde(default = "default_file_sd_refresh")]
    pub refresh_interval: Duration,
}

fn default_file_sd_refresh() -> Duration {
    Duration::from_secs(300)
}

/// `remote_write` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "raw::RawRemoteWriteConfig")]
pub struct RemoteWriteConfig {
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub remote_timeout: Duration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    #[serde(flatten)]
    pub http: HttpClientConfig,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    /// AWS Signature Version 4 signing (`sigv4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4Config>,
}

/// `remote_write.sigv4`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigV4Config {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub profile: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
}

/// `remote_write.queue_config`, with Prometheus 2.42's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

/// `remote_write.metadata_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}B", self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_byte_size(&s).map(ByteSize).ok_or_else(|| {
            serde::de::Error::custom(format!("units: unknown unit or invalid size in {s}"))
        })
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_byte_size(s)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?} (examples: 0, 512B, 64MB, 1GiB)"))
    }
}

/// Parses Prometheus' units.Base2Bytes: `0`, `512B`, `10KB`, `1MiB`, `2GB`...
/// (KB and KiB both mean 1024 there).
fn parse_byte_size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match &s[digits..] {
        "" if n == 0 => 1,
        "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        _ => return None,
    };
    n.checked_mul(mult)
}
