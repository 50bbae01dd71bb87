//! The rustls client configuration of a job, from its `tls_config`, with
//! the aws-lc-rs provider only (never ring).
//!
//! Files (`ca_file`, `cert_file`, `key_file`) are read when the client is
//! built. Without `ca`/`ca_file` the system roots are used, as Go's
//! `SystemCertPool`.

use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsConfig;

use super::auth::resolve;
use super::error::ClientError;

/// Builds the rustls config. `http2` sets ALPN (`h2`, `http/1.1`) or
/// `http/1.1` only, since reqwest leaves ALPN of a preconfigured TLS alone.
pub(crate) fn client_config(
    cfg: &TlsConfig,
    base_dir: &Path,
    http2: bool,
) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = protocol_versions(cfg)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ClientError::Tls(e.to_string()))?;

    let verifier: Arc<dyn ServerCertVerifier> = if cfg.insecure_skip_verify {
        Arc::new(SkipVerify {
            algorithms: provider.signature_verification_algorithms,
        })
    } else {
        let roots =
            match read_pem_source(cfg.ca.as_deref(), cfg.ca_file.as_deref(), "ca", base_dir)? {
                Some((pem, origin)) => Arc::new(roots_from_pem(&pem, &origin)?),
                None => system_roots(),
            };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        match cfg.server_name.as_deref().filter(|s| !s.is_empty()) {
            Some(name) => {
                let name = ServerName::try_from(name.to_string())
                    .map_err(|e| ClientError::Tls(format!("invalid server_name {name:?}: {e}")))?;
                Arc::new(ServerNameOverride {
                    inner: webpki,
                    name,
                })
            }
            None => webpki,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let cert = read_pem_source(
        cfg.cert.as_deref(),
        cfg.cert_file.as_deref(),
        "cert",
        base_dir,
    )?;
    let key_inline = cfg.key.as_ref().map(|k| k.expose());
    let key = read_pem_source(key_inline, cfg.key_file.as_deref(), "key", base_dir)?;
    let mut config = match (cert, key) {
        (Some((cert_pem, cert_origin)), Some((key_pem, key_origin))) => {
            let certs = certs_from_pem(&cert_pem, &cert_origin)?;
            let key = key_from_pem(&key_pem, &key_origin)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(ClientError::Tls(
                "client cert is configured but client key is missing".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ClientError::Tls(
                "client key is configured but client cert is missing".into(),
            ));
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

fn protocol_versions(
    cfg: &TlsConfig,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ClientError> {
    // Go's numbering: TLS10 = 10 ... TLS13 = 13. rustls has 1.2 and 1.3.
    fn parse(v: Option<&str>, field: &str) -> Result<Option<u8>, ClientError> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some("TLS10") => Ok(Some(10)),
            Some("TLS11") => Ok(Some(11)),
            Some("TLS12") => Ok(Some(12)),
            Some("TLS13") => Ok(Some(13)),
            Some(other) => Err(ClientError::Tls(format!(
                "unknown TLS version {other:?} in {field}"
            ))),
        }
    }
    let min = parse(cfg.min_version.as_deref(), "min_version")?.unwrap_or(12);
    let max = parse(cfg.max_version.as_deref(), "max_version")?.unwrap_or(13);
    let mut out = Vec::new();
    if min <= 12 && max >= 12 {
        out.push(&rustls::version::TLS12);
    }
    if min <= 13 && max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        return Err(ClientError::Tls("no TLS version between min_version and max_version is supported (rustls speaks TLS12 and TLS13)".to_string()));
    }
    Ok(out)
}

/// Inline PEM or the content of its file; `None` when neither is set.
fn read_pem_source(
    inline: Option<&str>,
    file: Option<&str>,
    field: &'static str,
    base_dir: &Path,
) -> Result<Option<(Vec<u8>, String)>, ClientError> {
    let inline = inline.filter(|s| !s.is_empty());
    let file = file.filter(|s| !s.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(ClientError::Tls(format!(
            "at most one of {field} and {field}_file must be configured"
        ))),
        (Some(pem), None) => Ok(Some((pem.as_bytes().to_vec(), field.to_string()))),
        (None, Some(f)) => {
            let path = resolve(base_dir, f);
            let what = match field {
                "ca" => "ca_file",
                "cert" => "cert_file",
                _ => "key_file",
            };
            let bytes = std::fs::read(&path).map_err(|source| ClientError::ReadFile {
                what,
                path: path.clone(),
                source,
            })?;
            Ok(Some((bytes, path.display().to_string())))
        }
        (None, None) => Ok(None),
    }
}

fn certs_from_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::InvalidPem {
            what: "certificate",
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientError::InvalidPem {
            what: "certificate",
            origin: origin.to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, ClientError> {
    // The reason never quotes the key itself.
    match rustls_pemfile::private_key(&mut BufReader::new(pem)) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(ClientError::InvalidPem {
            what: "private key",
            origin: origin.to_string(),
            reason: "no PEM private key found".into(),
        }),
        Err(e) => Err(ClientError::InvalidPem {
            what: "private key",
            origin: origin.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn roots_from_pem(pem: &[u8], origin: &str) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, origin)? {
        roots.add(cert).map_err(|e| ClientError::InvalidPem {
            what: "CA certificate",
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The system roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!(error = %e, "loading system TLS roots");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system TLS roots loaded");
            Arc::new(roots)
        })
        .clone()
}

/// Verifies the chain against `server_name` instead of the URL's host, as
/// Go's `tls.Config.ServerName` does.
#[derive(Debug)]
struct ServerNameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ServerNameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate chain and name is accepted; the
/// handshake signatures are still checked (as Go does).
#[derive(Debug)]
struct SkipVerify {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
