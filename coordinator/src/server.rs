//! A whole coordinator: the shard hub (gRPC), the control loop and the
//! admin HTTP API, started together. Used by `promshard coordinator`,
//! `promshard local`, `promshard demo` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::control::{ControlError, ControlOptions, Coordinator};
use crate::hub::{HubOptions, ShardHub};
use crate::provider::ShardProvider;

/// Where and how the coordinator serves.
pub struct ServerOptions {
    pub control: ControlOptions,
    pub hub: HubOptions,
    /// gRPC (shards attach here).
    pub grpc_listen: SocketAddr,
    /// Admin HTTP API.
    pub web_listen: SocketAddr,
    /// Bearer token for the admin API's POST endpoints.
    pub web_token: Option<String>,
    /// Serve gRPC over TLS with this certificate and key (PEM files).
    pub grpc_tls: Option<TlsFiles>,
}

/// A server certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

impl TlsFiles {
    fn load(&self) -> Result<tonic::transport::ServerTlsConfig, ServerError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| ServerError::TlsFile {
                path: p.display().to_string(),
                source,
            })
        };
        let cert = read(&self.cert_file)?;
        let key = read(&self.key_file)?;
        Ok(tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the gRPC TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A running coordinator.
pub struct Server {
    pub coordinator: Coordinator,
    pub provider: Arc<ShardProvider>,
    grpc_addr: SocketAddr,
    web_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    pub async fn start(
        opts: ServerOptions,
        provider: ShardProvider,
    ) -> Result<Server, ServerError> {
        let grpc = TcpListener::bind(opts.grpc_listen)
            .await
            .map_err(|source| ServerError::Listen {
                what: "gRPC",
                addr: opts.grpc_listen,
                source,
            })?;
        let web =
            TcpListener::bind(opts.web_listen)
                .await
                .map_err(|source| ServerError::Listen {
                    what: "admin API",
                    addr: opts.web_listen,
                    source,
                })?;
        let tls = opts.grpc_tls.as_ref().map(TlsFiles::load).transpose()?;
        let grpc_addr = grpc.local_addr().unwrap_or(opts.grpc_listen);
        let web_addr = web.local_addr().unwrap_or(opts.web_listen);
        let (hub, events) = ShardHub::new(opts.hub);
        let coordinator = Coordinator::start(opts.control, hub.clone(), events)?;
        let provider = Arc::new(provider);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = hub.serve(grpc, tls, shutdown).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }));
        let app = admin::router(AdminState {
            control: coordinator.admin(Arc::clone(&provider)),
            token: opts.web_token.map(Arc::from),
        });
        let mut rx = stop_rx;
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(web, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "admin API server failed");
            }
        }));
        tracing::info!(grpc = %grpc_addr, web = %web_addr, provider = provider.kind(), "coordinator started");
        Ok(Server {
            coordinator,
            provider,
            grpc_addr,
            web_addr,
            stop,
            tasks,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    /// Stops the shards the provider runs (each within `grace`, so their
    /// WALs are delivered), then the servers and the loop.
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.provider.shutdown(grace).await;
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
        self.coordinator.stop();
    }
}
