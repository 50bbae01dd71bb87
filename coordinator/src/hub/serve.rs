//! Serving the hub: a tonic server on a listener, with a bounded shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming, TlsConnectInfo};
use tonic::transport::{Server, ServerTlsConfig};

use super::{HubError, ShardHub};

impl ShardHub {
    /// Serves the hub on `listener` (TLS when `tls` is set, with the
    /// aws-lc-rs provider) until `shutdown` completes. Then it refuses new
    /// sessions, detaches every session (their streams end with
    /// `Unavailable`), waits up to [`super::HubOptions::shutdown_grace`] for
    /// connections to close, closes the remaining ones (peers that do not
    /// read) and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<ServerTlsConfig>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HubError> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let serve_err = |source| HubError::Serve {
            addr: addr.clone(),
            source,
        };
        let opts = &self.inner.opts;
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(opts.ping_interval))
            .http2_keepalive_timeout(Some(opts.failure_timeout));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(serve_err)?;
        }
        let kill = CancellationToken::new();
        let conn_kill = kill.clone();
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map(move |conn| conn.map(|io| KillableConn::new(io, &conn_kill)));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = builder
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        let mut server = std::pin::pin!(server);
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            r = &mut server => return r.map_err(serve_err),
            _ = &mut shutdown => {}
        }
        tracing::info!(%addr, "hub shutting down");
        self.close_all();
        let _ = stop_tx.send(());
        if let Ok(r) = tokio::time::timeout(opts.shutdown_grace, &mut server).await {
            return r.map_err(serve_err);
        }
        tracing::warn!(%addr, grace = ?opts.shutdown_grace,
            "connections still open after the shutdown grace; closing them");
        kill.cancel();
        match tokio::time::timeout(opts.shutdown_grace, server).await {
            Ok(r) => r.map_err(serve_err),
            Err(_) => {
                tracing::error!(%addr, "gRPC server did not stop; abandoning it");
                Ok(())
            }
        }
    }
}

/// What a request knows about its connection when served by
/// [`ShardHub::serve`]: the peer address, and a token that closes the
/// connection (used to drop peers that stopped reading or went silent).
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    tcp: TcpConnectInfo,
    kill: CancellationToken,
}

impl ConnHandle {
    /// The handle of a request's connection, plain or TLS; None when the
    /// service is mounted in a server the hub did not build.
    pub(crate) fn of<T>(req: &tonic::Request<T>) -> Option<&ConnHandle> {
        let ext = req.extensions();
        ext.get::<ConnHandle>()
            .or_else(|| ext.get::<TlsConnectInfo<ConnHandle>>().map(|t| t.get_ref()))
    }

    pub(crate) fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.remote_addr()
    }

    pub(crate) fn killer(&self) -> CancellationToken {
        self.kill.clone()
    }
}

/// A TCP connection the hub can close on its own (at shutdown, or when a
/// session on it is detached for not reading or going silent): once its
/// token fires, reads and writes fail, which ends the HTTP/2 connection even
/// if the peer never reads.
struct KillableConn {
    io: TcpStream,
    kill: CancellationToken,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableConn {
    fn new(io: TcpStream, server_kill: &CancellationToken) -> Self {
        let kill = server_kill.child_token();
        KillableConn {
            io,
            killed: Box::pin(kill.clone().cancelled_owned()),
            kill,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.killed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the hub",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for KillableConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for KillableConn {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        ConnHandle {
            tcp: self.io.connect_info(),
            kill: self.kill.clone(),
        }
    }
}
