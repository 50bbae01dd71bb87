//! The HTTP client settings shared by scrape configs and remote write
//! (Prometheus 2.42's `common/config.HTTPClientConfig`, common v0.39).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Inline HTTP client settings. After loading, `bearer_token(_file)` have
/// been moved into `authorization` (type `Bearer`), as Prometheus does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpClientConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    pub tls_config: TlsConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Headers sent to the proxy on CONNECT (values are secrets).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            proxy_url: None,
            proxy_connect_header: BTreeMap::new(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// `basic_auth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `authorization`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            kind: "Bearer".to_string(),
            credentials: None,
            credentials_file: None,
        }
    }
}

/// `oauth2`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2 {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    pub token_url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_params: BTreeMap<String, String>,
    pub tls_config: TlsConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

/// `tls_config`. Prometheus 2.42 knows only file references for the CA,
/// certificate and key; the inline `ca`/`cert`/`key` fields came later and
/// are rejected when written (kept here for API stability, always `None`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    #[serde(skip)]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip)]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip)]
    pub key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
}

const TLS_VERSIONS: [&str; 4] = ["TLS10", "TLS11", "TLS12", "TLS13"];

/// Where in an HTTP client config a problem is: the field's key (for the
/// loader to find its line) and Prometheus' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfigIssue {
    /// Path of keys below the config holding the HTTP settings.
    pub keys: Vec<&'static str>,
    pub message: String,
}

fn issue(keys: &[&'static str], message: impl Into<String>) -> HttpConfigIssue {
    HttpConfigIssue {
        keys: keys.to_vec(),
        message: message.into(),
    }
}

fn set(s: &Option<Secret>) -> bool {
    s.as_ref().is_some_and(|s| !s.is_empty())
}

fn set_str(s: &Option<String>) -> bool {
    s.as_ref().is_some_and(|s| !s.is_empty())
}

impl TlsConfig {
    /// The TLS version check Go makes while parsing YAML.
    fn check_versions(&self, at: &[&'static str]) -> Result<(), HttpConfigIssue> {
        for (field, v) in [
            ("min_version", &self.min_version),
            ("max_version", &self.max_version),
        ] {
            if let Some(v) = v
                && !TLS_VERSIONS.contains(&v.as_str())
            {
                let mut keys = at.to_vec();
                keys.push(field);
                return Err(issue(&keys, format!("unknown TLS version: {v}")));
            }
        }
        Ok(())
    }

    /// Prometheus 2.42's TLS checks.
    pub fn validate(&self, at: &[&'static str]) -> Result<(), HttpConfigIssue> {
        self.check_versions(at)?;
        match (set_str(&self.cert_file), set_str(&self.key_file)) {
            (true, false) => Err(issue(
                &[at, &["cert_file"]].concat(),
                format!(
                    "client cert file {:?} specified without client key file",
                    self.cert_file.as_deref().unwrap_or_default()
                ),
            )),
            (false, true) => Err(issue(
                &[at, &["key_file"]].concat(),
                format!(
                    "client key file {:?} specified without client cert file",
                    self.key_file.as_deref().unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn resolve_files(&mut self, dir: &Path) {
        for f in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file] {
            resolve(f, dir);
        }
    }
}

fn resolve(file: &mut Option<String>, dir: &Path) {
    if let Some(f) = file
        && !f.is_empty()
        && Path::new(f).is_relative()
    {
        *f = dir.join(&*f).to_string_lossy().into_owned();
    }
}

/// What Go's `url.Parse` rejects: it accepts nearly anything, but not a
/// missing scheme before a colon (`://x`) nor control characters.
pub(super) fn url_problem(u: &str) -> Option<String> {
    if u.starts_with(':') {
        return Some(format!("parse {u:?}: missing protocol scheme"));
    }
    if u.chars().any(|c| c.is_control()) {
        return Some(format!(
            "parse {u:?}: net/url: invalid control character in URL"
        ));
    }
    None
}

fn valid_proxy_url(u: &str) -> Result<(), String> {
    url_problem(u).map_or(Ok(()), Err)
}

impl HttpClientConfig {
    /// Prometheus' `HTTPClientConfig.Validate`: checks, then moves
    /// `bearer_token(_file)` into `authorization` and defaults its type.
    pub fn validate(&mut self) -> Result<(), HttpConfigIssue> {
        let bearer = set(&self.bearer_token);
        let bearer_file = set_str(&self.bearer_token_file);
        if bearer && bearer_file {
            return Err(issue(
                &["bearer_token"],
                "at most one of bearer_token & bearer_token_file must be configured",
            ));
        }
        if (self.basic_auth.is_some() || self.oauth2.is_some()) && (bearer || bearer_file) {
            return Err(issue(
                &["bearer_token"],
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
            ));
        }
        if let Some(b) = &self.basic_auth
            && set(&b.password)
            && set_str(&b.password_file)
        {
            return Err(issue(
                &["basic_auth", "password_file"],
                "at most one of basic_auth password & password_file must be configured",
            ));
        }
        if let Some(a) = &mut self.authorization {
            if bearer || bearer_file {
                return Err(issue(
                    &["authorization"],
                    "authorization is not compatible with bearer_token & bearer_token_file",
                ));
            }
            if set(&a.credentials) && set_str(&a.credentials_file) {
                return Err(issue(
                    &["authorization", "credentials_file"],
                    "at most one of authorization credentials & credentials_file must be configured",
                ));
            }
            a.kind = a.kind.trim().to_string();
            if a.kind.is_empty() {
                a.kind = "Bearer".to_string();
            }
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(issue(
                    &["authorization", "type"],
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                ));
            }
            if self.basic_auth.is_some() || self.oauth2.is_some() {
                return Err(issue(
                    &["authorization"],
                    "at most one of basic_auth, oauth2 & authorization must be configured",
                ));
            }
        } else if bearer {
            self.authorization = Some(Authorization {
                kind: "Bearer".to_string(),
                credentials: self.bearer_token.take(),
                credentials_file: None,
            });
        } else if bearer_file {
            self.authorization = Some(Authorization {
                kind: "Bearer".to_string(),
                credentials: None,
                credentials_file: self.bearer_token_file.take(),
            });
        }
        if let Some(o) = &self.oauth2 {
            if self.basic_auth.is_some() {
                return Err(issue(
                    &["oauth2"],
                    "at most one of basic_auth, oauth2 & authorization must be configured",
                ));
            }
            if o.client_id.is_empty() {
                return Err(issue(&["oauth2"], "oauth2 client_id must be configured"));
            }
            if !set(&o.client_secret) && !set_str(&o.client_secret_file) {
                return Err(issue(
                    &["oauth2"],
                    "either oauth2 client_secret or client_secret_file must be configured",
                ));
            }
            if o.token_url.is_empty() {
                return Err(issue(&["oauth2"], "oauth2 token_url must be configured"));
            }
            if set(&o.client_secret) && set_str(&o.client_secret_file) {
                return Err(issue(
                    &["oauth2", "client_secret_file"],
                    "at most one of oauth2 client_secret & client_secret_file must be configured",
                ));
            }
            if let Some(p) = &o.proxy_url {
                valid_proxy_url(p).map_err(|m| issue(&["oauth2", "proxy_url"], m))?;
            }
            o.tls_config.validate(&["oauth2", "tls_config"])?;
        }
        if let Some(p) = &self.proxy_url {
            valid_proxy_url(p).map_err(|m| issue(&["proxy_url"], m))?;
        }
        if !self.proxy_connect_header.is_empty() && !set_str(&self.proxy_url) {
            return Err(issue(
                &["proxy_connect_header"],
                "if proxy_connect_header is configured proxy_url must also be configured",
            ));
        }
        self.tls_config.validate(&["tls_config"])
    }

    /// Only the checks Go makes while parsing the YAML (TLS versions,
    /// proxy URLs), for configs whose `Validate` Prometheus 2.42 never
    /// calls (`http_sd_configs`).
    pub(super) fn parse_checks(&self) -> Result<(), HttpConfigIssue> {
        self.tls_config.check_versions(&["tls_config"])?;
        if let Some(p) = &self.proxy_url {
            valid_proxy_url(p).map_err(|m| issue(&["proxy_url"], m))?;
        }
        if let Some(o) = &self.oauth2 {
            o.tls_config.check_versions(&["oauth2", "tls_config"])?;
            if let Some(p) = &o.proxy_url {
                valid_proxy_url(p).map_err(|m| issue(&["oauth2", "proxy_url"], m))?;
            }
        }
        Ok(())
    }

    /// Joins every relative `*_file` path with `dir` (the config file's
    /// directory), as Prometheus' `SetDirectory`.
    pub fn resolve_files(&mut self, dir: &Path) {
        self.tls_config.resolve_files(dir);
        if let Some(b) = &mut self.basic_auth {
            resolve(&mut b.password_file, dir);
        }
        if let Some(a) = &mut self.authorization {
            resolve(&mut a.credentials_file, dir);
        }
        if let Some(o) = &mut self.oauth2 {
            resolve(&mut o.client_secret_file, dir);
            o.tls_config.resolve_files(dir);
        }
        resolve(&mut self.bearer_token_file, dir);
    }
}
