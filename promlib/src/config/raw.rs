//! The YAML shapes of a scrape config and a remote write config: every key
//! Prometheus 2.42 accepts, flat (no `#[serde(flatten)]`, which would lose
//! error positions and unknown-field checks). Converted 1:1 into the public
//! model; validation happens in the loader.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::http::{Authorization, BasicAuth, HttpClientConfig, OAuth2, TlsConfig};
use super::sd::default_http_sd_refresh;
use super::{
    ByteSize, DnsSdConfig, FileSdConfig, HttpSdConfig, MetadataConfig, PassThrough, QueueConfig,
    RemoteWriteConfig, ScrapeConfig, SigV4Config, StaticConfig,
};
use crate::duration::Duration;
use crate::relabel::RelabelConfig;
use crate::secret::Secret;

/// Reads `key:` with nothing (null) as the empty value, as Go's YAML does.
pub(super) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn default_true() -> bool {
    true
}
fn default_metrics_path() -> String {
    "/metrics".to_string()
}
fn default_scheme() -> String {
    "http".to_string()
}
fn default_remote_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Declares `RawScrapeConfig` with one pass-through field per service
/// discovery promshard does not support yet (listed once, here).
macro_rules! raw_scrape_config {
    ($($sd:ident),* $(,)?) => {
        /// Service discovery keys of Prometheus 2.42 that promshard does
        /// not support yet.
        pub const UNSUPPORTED_SD_CONFIGS: &[&str] = &[$(stringify!($sd)),*];

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawScrapeConfig {
            #[serde(default)]
            job_name: String,
            #[serde(default)]
            honor_labels: bool,
            #[serde(default = "default_true")]
            honor_timestamps: bool,
            #[serde(default, deserialize_with = "null_default")]
            params: BTreeMap<String, Vec<String>>,
            #[serde(default)]
            scrape_interval: Option<Duration>,
            #[serde(default)]
            scrape_timeout: Option<Duration>,
            #[serde(default = "default_metrics_path")]
            metrics_path: String,
            #[serde(default = "default_scheme")]
            scheme: String,
            #[serde(default)]
            body_size_limit: Option<ByteSize>,
            #[serde(default)]
            sample_limit: Option<u64>,
            #[serde(default)]
            target_limit: Option<u64>,
            #[serde(default)]
            label_limit: Option<u64>,
            #[serde(default)]
            label_name_length_limit: Option<u64>,
            #[serde(default)]
            label_value_length_limit: Option<u64>,
            #[serde(default)]
            basic_auth: Option<BasicAuth>,
            #[serde(default)]
            authorization: Option<Authorization>,
            #[serde(default)]
            oauth2: Option<OAuth2>,
            #[serde(default)]
            bearer_token: Option<Secret>,
            #[serde(default)]
            bearer_token_file: Option<String>,
            #[serde(default)]
            tls_config: Option<TlsConfig>,
            #[serde(default)]
            proxy_url: Option<String>,
            #[serde(default, deserialize_with = "null_default")]
            proxy_connect_header: BTreeMap<String, Vec<Secret>>,
            #[serde(default = "default_true")]
            follow_redirects: bool,
            #[serde(default = "default_true")]
            enable_http2: bool,
            #[serde(default, deserialize_with = "null_default")]
            relabel_configs: Vec<Option<RelabelConfig>>,
            #[serde(default, deserialize_with = "null_default")]
            metric_relabel_configs: Vec<Option<RelabelConfig>>,
            #[serde(default, deserialize_with = "null_default")]
            static_configs: Vec<Option<StaticConfig>>,
            #[serde(default, deserialize_with = "null_default")]
            file_sd_configs: Vec<Option<FileSdConfig>>,
            #[serde(default, deserialize_with = "null_default")]
            http_sd_configs: Vec<Option<HttpSdConfig>>,
            #[serde(default, deserialize_with = "null_default")]
            dns_sd_configs: Vec<Option<DnsSdConfig>>,
            $(
                #[serde(default)]
                $sd: Option<PassThrough>,
            )*
        }

        impl RawScrapeConfig {
            fn take_unsupported_sd(&mut self) -> BTreeMap<String, PassThrough> {
                let mut out = BTreeMap::new();
                $(
                    if let Some(v) = self.$sd.take() {
                        out.insert(stringify!($sd).to_string(), v);
                    }
                )*
                out
            }
        }
    };
}

raw_scrape_config!(
    azure_sd_configs,
    consul_sd_configs,
    digitalocean_sd_configs,
    docker_sd_configs,
    dockerswarm_sd_configs,
    ec2_sd_configs,
    eureka_sd_configs,
    gce_sd_configs,
    hetzner_sd_configs,
    ionos_sd_configs,
    kubernetes_sd_configs,
    kuma_sd_configs,
    lightsail_sd_configs,
    linode_sd_configs,
    marathon_sd_configs,
    nerve_sd_configs,
    nomad_sd_configs,
    openstack_sd_configs,
    ovhcloud_sd_configs,
    puppetdb_sd_configs,
    scaleway_sd_configs,
    serverset_sd_configs,
    triton_sd_configs,
    uyuni_sd_configs,
    vultr_sd_configs,
);

/// Null list entries (`- ` with nothing) are kept as `None` by the raw
/// shapes so the loader can report them as Prometheus does; the public
/// model drops them (a loaded config never has any).
fn some<T>(v: Vec<Option<T>>) -> Vec<T> {
    v.into_iter().flatten().collect()
}

/// Which lists of a raw scrape config held null entries (`- ` alone).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NullEntries {
    pub relabel_configs: bool,
    pub metric_relabel_configs: bool,
    pub static_configs: bool,
    pub file_sd_configs: bool,
    pub http_sd_configs: bool,
    pub dns_sd_configs: bool,
}

impl RawScrapeConfig {
    pub fn null_entries(&self) -> NullEntries {
        NullEntries {
            relabel_configs: self.relabel_configs.iter().any(Option::is_none),
            metric_relabel_configs: self.metric_relabel_configs.iter().any(Option::is_none),
            static_configs: self.static_configs.iter().any(Option::is_none),
            file_sd_configs: self.file_sd_configs.iter().any(Option::is_none),
            http_sd_configs: self.http_sd_configs.iter().any(Option::is_none),
            dns_sd_configs: self.dns_sd_configs.iter().any(Option::is_none),
        }
    }
}

impl From<RawScrapeConfig> for ScrapeConfig {
    fn from(mut r: RawScrapeConfig) -> Self {
        let unsupported_sd_configs = r.take_unsupported_sd();
        ScrapeConfig {
            job_name: r.job_name,
            honor_labels: r.honor_labels,
            honor_timestamps: r.honor_timestamps,
            params: r.params,
            scrape_interval: r.scrape_interval,
            scrape_timeout: r.scrape_timeout,
            metrics_path: r.metrics_path,
            scheme: r.scheme,
            body_size_limit: r.body_size_limit,
            sample_limit: r.sample_limit,
            target_limit: r.target_limit,
            label_limit: r.label_limit,
            label_name_length_limit: r.label_name_length_limit,
            label_value_length_limit: r.label_value_length_limit,
            http: HttpClientConfig {
                basic_auth: r.basic_auth,
                authorization: r.authorization,
                oauth2: r.oauth2,
                bearer_token: r.bearer_token,
                bearer_token_file: r.bearer_token_file,
                tls_config: r.tls_config.unwrap_or_default(),
                proxy_url: r.proxy_url,
                proxy_connect_header: r.proxy_connect_header,
                follow_redirects: r.follow_redirects,
                enable_http2: r.enable_http2,
            },
            relabel_configs: some(r.relabel_configs),
            metric_relabel_configs: some(r.metric_relabel_configs),
            static_configs: some(r.static_configs),
            file_sd_configs: some(r.file_sd_configs),
            http_sd_configs: some(r.http_sd_configs),
            dns_sd_configs: some(r.dns_sd_configs),
            unsupported_sd_configs,
            original_yaml: Default::default(),
        }
    }
}

/// `http_sd_configs` entry as written: the URL, the interval and the HTTP
/// client settings, flat.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpSdConfig {
    #[serde(default)]
    url: String,
    #[serde(default = "default_http_sd_refresh")]
    refresh_interval: Duration,
    #[serde(default)]
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    authorization: Option<Authorization>,
    #[serde(default)]
    oauth2: Option<OAuth2>,
    #[serde(default)]
    bearer_token: Option<Secret>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    tls_config: Option<TlsConfig>,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    #[serde(default = "default_true")]
    follow_redirects: bool,
    #[serde(default = "default_true")]
    enable_http2: bool,
}

impl From<RawHttpSdConfig> for HttpSdConfig {
    fn from(r: RawHttpSdConfig) -> Self {
        HttpSdConfig {
            url: r.url,
            refresh_interval: r.refresh_interval,
            http: HttpClientConfig {
                basic_auth: r.basic_auth,
                authorization: r.authorization,
                oauth2: r.oauth2,
                bearer_token: r.bearer_token,
                bearer_token_file: r.bearer_token_file,
                tls_config: r.tls_config.unwrap_or_default(),
                proxy_url: r.proxy_url,
                proxy_connect_header: r.proxy_connect_header,
                follow_redirects: r.follow_redirects,
                enable_http2: r.enable_http2,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWriteConfig {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default = "default_remote_timeout")]
    remote_timeout: Duration,
    #[serde(default, deserialize_with = "null_default")]
    headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    write_relabel_configs: Vec<Option<RelabelConfig>>,
    #[serde(default)]
    send_exemplars: bool,
    #[serde(default)]
    send_native_histograms: bool,
    #[serde(default)]
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    authorization: Option<Authorization>,
    #[serde(default)]
    oauth2: Option<OAuth2>,
    #[serde(default)]
    bearer_token: Option<Secret>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    tls_config: Option<TlsConfig>,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    #[serde(default = "default_true")]
    follow_redirects: bool,
    #[serde(default = "default_true")]
    enable_http2: bool,
    #[serde(default)]
    queue_config: Option<QueueConfig>,
    #[serde(default)]
    metadata_config: Option<MetadataConfig>,
    #[serde(default)]
    sigv4: Option<SigV4Config>,
}

impl RawRemoteWriteConfig {
    pub fn has_null_relabel(&self) -> bool {
        self.write_relabel_configs.iter().any(Option::is_none)
    }
}

impl From<RawRemoteWriteConfig> for RemoteWriteConfig {
    fn from(r: RawRemoteWriteConfig) -> Self {
        RemoteWriteConfig {
            url: r.url.unwrap_or_default(),
            name: r.name,
            remote_timeout: r.remote_timeout,
            headers: r.headers,
            write_relabel_configs: some(r.write_relabel_configs),
            send_exemplars: r.send_exemplars,
            send_native_histograms: r.send_native_histograms,
            http: HttpClientConfig {
                basic_auth: r.basic_auth,
                authorization: r.authorization,
                oauth2: r.oauth2,
                bearer_token: r.bearer_token,
                bearer_token_file: r.bearer_token_file,
                tls_config: r.tls_config.unwrap_or_default(),
                proxy_url: r.proxy_url,
                proxy_connect_header: r.proxy_connect_header,
                follow_redirects: r.follow_redirects,
                enable_http2: r.enable_http2,
            },
            queue_config: r.queue_config.unwrap_or_default(),
            metadata_config: r.metadata_config.unwrap_or_default(),
            sigv4: r.sigv4,
        }
    }
}
