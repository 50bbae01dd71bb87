//! `oauth2`: the client-credentials grant, as Prometheus' round tripper
//! (golang.org/x/oauth2/clientcredentials) does it. The token is cached
//! until 10 s before it expires; `client_secret_file` is re-read on every
//! scrape and a changed secret fetches a new token. The token request uses
//! its own client built from the oauth2 block's `tls_config`/`proxy_url`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::config::OAuth2;
use crate::secret::Secret;

use super::auth::resolve;
use super::client::build_with_proxy;
use super::error::{ClientError, ScrapeError, error_chain};
use super::tls;

/// x/oauth2 treats a token as expired this long before its expiry.
const EXPIRY_DELTA: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct OAuth2Source {
    client_id: String,
    client_secret: Secret,
    client_secret_file: Option<PathBuf>,
    scopes: Vec<String>,
    token_url: String,
    endpoint_params: Vec<(String, String)>,
    http: reqwest::Client,
    /// Auto-detected auth style: credentials in the body instead of basic auth.
    secret_in_params: AtomicBool,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Debug)]
struct CachedToken {
    header: Secret,
    expires: Option<Instant>,
    /// The client secret the token was fetched with.
    secret: Secret,
}

impl OAuth2Source {
    pub(crate) fn new(cfg: &OAuth2, base_dir: &Path) -> Result<Self, ClientError> {
        let tls = tls::client_config(&cfg.tls_config, base_dir, true)?;
        let http = build_with_proxy(
            reqwest::Client::builder().tls_backend_preconfigured(tls),
            cfg.proxy_url.as_deref(),
        )?;
        Ok(OAuth2Source {
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone().unwrap_or_default(),
            client_secret_file: cfg
                .client_secret_file
                .as_deref()
                .filter(|f| !f.is_empty())
                .map(|f| resolve(base_dir, f)),
            scopes: cfg.scopes.clone(),
            token_url: cfg.token_url.clone(),
            endpoint_params: cfg
                .endpoint_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            http,
            secret_in_params: AtomicBool::new(false),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The `Authorization` header for a scrape of `url` (redacted).
    pub(crate) async fn header(&self, url: &str) -> Result<HeaderValue, ScrapeError> {
        let secret = match &self.client_secret_file {
            Some(path) => match tokio::fs::read(path).await {
                Ok(b) => Secret::new(String::from_utf8_lossy(&b).trim()),
                Err(e) => {
                    return Err(ScrapeError::CredentialsFile {
                        url: url.to_string(),
                        what: "oauth2 client secret",
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            },
            None => self.client_secret.clone(),
        };
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().filter(|t| {
            t.secret == secret && t.expires.is_none_or(|e| Instant::now() + EXPIRY_DELTA < e)
        });
        let header = match fresh {
            Some(t) => t.header.clone(),
            None => {
                let t = self
                    .fetch(&secret)
                    .await
                    .map_err(|reason| ScrapeError::OAuth2 {
                        url: url.to_string(),
                        reason,
                    })?;
                let header = t.header.clone();
                *cache = Some(t);
                header
            }
        };
        let mut hv = HeaderValue::from_str(header.expose()).map_err(|_| ScrapeError::OAuth2 {
            url: url.to_string(),
            reason: "the token is not a valid HTTP header value".into(),
        })?;
        hv.set_sensitive(true);
        Ok(hv)
    }

    /// One token request; on failure with credentials in a basic auth
    /// header, retries with them in the body (x/oauth2's auto-detection).
    async fn fetch(&self, secret: &Secret) -> Result<CachedToken, String> {
        let in_params = self.secret_in_params.load(Ordering::Relaxed);
        match self.request(secret, in_params).await {
            Ok(t) => Ok(t),
            Err(first) if !in_params => match self.request(secret, true).await {
                Ok(t) => {
                    self.secret_in_params.store(true, Ordering::Relaxed);
                    Ok(t)
                }
                Err(_) => Err(first),
            },
            Err(e) => Err(e),
        }
    }

    async fn request(&self, secret: &Secret, in_params: bool) -> Result<CachedToken, String> {
        // Built in a block: the serializer is not `Sync`, and holding it
        // across the await below would make this future not `Send`.
        let form_body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            for (k, v) in &self.endpoint_params {
                form.append_pair(k, v);
            }
            if in_params {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret.expose());
            }
            form.finish()
        };
        let mut req = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if !in_params {
            use base64::Engine as _;
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let creds = format!("{}:{}", enc(&self.client_id), enc(secret.expose()));
            let mut hv = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            ))
            .map_err(|_| "client credentials are not a valid header value".to_string())?;
            hv.set_sensitive(true);
            req = req.header(AUTHORIZATION, hv);
        }
        let resp = req
            .body(form_body)
            .send()
            .await
            .map_err(|e| format!("cannot fetch token: {}", error_chain(&e.without_url())))?;
        let status = resp.status();
        // A token response is small; cap what is read of it.
        let body = read_capped(resp, 1 << 20).await?;
        if !status.is_success() {
            return Err(format!(
                "cannot fetch token: {}\nResponse: {}",
                status,
                String::from_utf8_lossy(&body)
            ));
        }
        let tok: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("cannot parse token response: {e}"))?;
        if tok.access_token.is_empty() {
            return Err("server response missing access_token".into());
        }
        let kind = match tok.token_type.as_deref() {
            None | Some("") => "Bearer".to_string(),
            Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_string(),
            Some(t) if t.eq_ignore_ascii_case("mac") => "MAC".to_string(),
            Some(t) if t.eq_ignore_ascii_case("basic") => "Basic".to_string(),
            Some(t) => t.to_string(),
        };
        let expires = tok
            .expires_in
            .filter(|s| *s > 0)
            .map(|s| Instant::now() + Duration::from_secs(s));
        Ok(CachedToken {
            header: Secret::new(format!("{kind} {}", tok.access_token)),
            expires,
            secret: secret.clone(),
        })
    }
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot fetch token: {}", error_chain(&e.without_url())))?
    {
        if out.len() + chunk.len() > cap {
            return Err("cannot fetch token: response too large".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}
