//! The `Authorization` header of a scrape, chosen as Prometheus'
//! round-tripper chain does (outermost wins: oauth2, basic_auth, then
//! bearer_token / bearer_token_file, then authorization). `*_file` paths are
//! re-read on every scrape so that rotated credentials take effect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::header::HeaderValue;

use crate::config::HttpClientConfig;
use crate::secret::Secret;

use super::error::{ClientError, ScrapeError};
use super::oauth2::OAuth2Source;

/// Where the credentials of a job come from.
#[derive(Clone, Debug)]
pub(crate) enum AuthSource {
    None,
    OAuth2(Arc<OAuth2Source>),
    Basic { username: String, password: Secret },
    BasicFile { username: String, path: PathBuf },
    Credentials { kind: String, credentials: Secret },
    CredentialsFile { kind: String, path: PathBuf },
}

/// `path` as Prometheus resolves it: relative to the config's directory.
pub(crate) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

fn kind_or_bearer(kind: &str) -> String {
    if kind.is_empty() {
        "Bearer".to_string()
    } else {
        kind.to_string()
    }
}

impl AuthSource {
    pub(crate) fn from_config(
        http: &HttpClientConfig,
        base_dir: &Path,
    ) -> Result<AuthSource, ClientError> {
        if let Some(o) = &http.oauth2 {
            return Ok(AuthSource::OAuth2(Arc::new(OAuth2Source::new(
                o, base_dir,
            )?)));
        }
        Ok(Self::from_static_config(http, base_dir))
    }

    fn from_static_config(http: &HttpClientConfig, base_dir: &Path) -> AuthSource {
        if let Some(b) = &http.basic_auth {
            return match b.password_file.as_deref().filter(|f| !f.is_empty()) {
                Some(f) => AuthSource::BasicFile {
                    username: b.username.clone(),
                    path: resolve(base_dir, f),
                },
                None => AuthSource::Basic {
                    username: b.username.clone(),
                    password: Secret::new(
                        b.password
                            .as_ref()
                            .map(|p| p.expose().trim())
                            .unwrap_or_default(),
                    ),
                },
            };
        }
        if let Some(t) = http.bearer_token.as_ref().filter(|t| !t.is_empty()) {
            return AuthSource::Credentials {
                kind: "Bearer".to_string(),
                credentials: t.clone(),
            };
        }
        if let Some(f) = http.bearer_token_file.as_deref().filter(|f| !f.is_empty()) {
            return AuthSource::CredentialsFile {
                kind: "Bearer".to_string(),
                path: resolve(base_dir, f),
            };
        }
        if let Some(a) = &http.authorization {
            if let Some(c) = a.credentials.as_ref().filter(|c| !c.is_empty()) {
                return AuthSource::Credentials {
                    kind: kind_or_bearer(&a.kind),
                    credentials: c.clone(),
                };
            }
            if let Some(f) = a.credentials_file.as_deref().filter(|f| !f.is_empty()) {
                return AuthSource::CredentialsFile {
                    kind: kind_or_bearer(&a.kind),
                    path: resolve(base_dir, f),
                };
            }
        }
        AuthSource::None
    }

    /// The header value for one scrape of `url` (already redacted), reading
    /// credential files now.
    pub(crate) async fn header(&self, url: &str) -> Result<Option<HeaderValue>, ScrapeError> {
        let value = match self {
            AuthSource::None => return Ok(None),
            AuthSource::OAuth2(o) => return o.header(url).await.map(Some),
            AuthSource::Basic { username, password } => basic(username, password.expose()),
            AuthSource::BasicFile { username, path } => {
                let pw = read_trimmed(path, "basic auth password", url).await?;
                basic(username, pw.expose())
            }
            AuthSource::Credentials { kind, credentials } => {
                format!("{kind} {}", credentials.expose())
            }
            AuthSource::CredentialsFile { kind, path } => {
                let c = read_trimmed(path, "authorization credentials", url).await?;
                format!("{kind} {}", c.expose())
            }
        };
        let mut hv = HeaderValue::from_str(&value).map_err(|_| ScrapeError::Request {
            url: url.to_string(),
            reason: "credentials are not a valid HTTP header value".to_string(),
        })?;
        hv.set_sensitive(true);
        Ok(Some(hv))
    }
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

async fn read_trimmed(path: &Path, what: &'static str, url: &str) -> Result<Secret, ScrapeError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Secret::new(String::from_utf8_lossy(&bytes).trim())),
        Err(e) => Err(ScrapeError::CredentialsFile {
            url: url.to_string(),
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}
