//! The tonic `Coordinator` service: authentication, the Hello handshake,
//! and the start of a session.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::Stream;
use promshard_proto::v1::coordinator_server::Coordinator;
use promshard_proto::v1::{CoordinatorMessage, ShardMessage, shard_message};
use tonic::{Request, Response, Status, Streaming};

use super::counters::{inc, shard_msg_kind};
use super::session::{self, Session, SessionId};
use super::{Inner, auth, hello, serve};

/// The gRPC service of a [`super::ShardHub`]; mount it with
/// [`super::ShardHub::service`].
#[derive(Clone)]
pub struct HubService {
    pub(crate) inner: Arc<Inner>,
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for HubService {
    type AttachStream = AttachStream;

    async fn attach(
        &self,
        request: Request<Streaming<ShardMessage>>,
    ) -> Result<Response<AttachStream>, Status> {
        let inner = &self.inner;
        let conn = serve::ConnHandle::of(&request);
        let conn_killer = conn.map(serve::ConnHandle::killer);
        let peer_addr = conn
            .and_then(serve::ConnHandle::remote_addr)
            .or_else(|| request.remote_addr())
            .map(|a| a.to_string());
        let peer = peer_addr.as_deref().unwrap_or("unknown peer").to_string();
        if inner.shutting_down.load(Ordering::Relaxed) {
            inc(&inner.counters.rejections.shutting_down);
            return Err(Status::unavailable("the coordinator is shutting down"));
        }
        if let Some(token) = &inner.opts.auth_token
            && let Err(failure) = auth::check(request.metadata(), token)
        {
            inc(&inner.counters.rejections.unauthenticated);
            tracing::warn!(%peer, problem = failure.message(), "Attach refused: unauthenticated");
            return Err(Status::unauthenticated(failure.message()));
        }

        let mut inbound = request.into_inner();
        let hello = match read_hello(inner, &mut inbound).await {
            Ok(hello) => hello,
            Err(status) => {
                tracing::warn!(%peer, problem = status.message(), "Attach refused");
                return Err(status);
            }
        };
        inc(&inner.counters.messages_in.hello);

        let id = SessionId(inner.next_session.fetch_add(1, Ordering::Relaxed) + 1);
        let (session, rx) =
            Session::new(id, &hello, inner.opts.session_queue, peer_addr, conn_killer);
        let replaced = inner.insert(session.clone());
        inc(&inner.counters.sessions);
        if inner.shutting_down.load(Ordering::Relaxed) {
            // close_all ran while the Hello was read: end this one too.
            session.detach(session::DetachReason::Shutdown);
        }
        tracing::info!(shard = %session.shard, session = %id, %peer, address = %hello.address,
            targets = hello.targets.len(), replaces = ?replaced.as_ref().map(|o| o.id),
            "shard attached");
        // Nothing below may await: if this call is dropped (the peer went
        // away) after the session was registered, its task still runs and
        // ends it cleanly.
        tokio::spawn(session::run(
            inner.clone(),
            session.clone(),
            replaced,
            hello,
            inbound,
        ));
        let out = session::outbound_stream(inner.clone(), session, rx);
        Ok(Response::new(Box::pin(out)))
    }
}

/// Reads and validates the first message, which must be a Hello.
async fn read_hello(
    inner: &Inner,
    inbound: &mut Streaming<ShardMessage>,
) -> Result<promshard_proto::v1::Hello, Status> {
    let rejections = &inner.counters.rejections;
    let first = match tokio::time::timeout(inner.opts.hello_timeout, inbound.message()).await {
        Err(_) => {
            inc(&rejections.hello_timeout);
            return Err(Status::deadline_exceeded(format!(
                "no Hello within {:?} of Attach",
                inner.opts.hello_timeout
            )));
        }
        Ok(Err(status)) => {
            inc(&rejections.invalid_hello);
            if status.code() == tonic::Code::OutOfRange {
                inc(&inner.counters.anomalies.oversize);
            }
            return Err(Status::invalid_argument(format!(
                "the first message (Hello) is unreadable: {}",
                status.message()
            )));
        }
        Ok(Ok(None)) => {
            inc(&rejections.invalid_hello);
            return Err(Status::invalid_argument(
                "the stream ended before the first message (Hello)",
            ));
        }
        Ok(Ok(Some(first))) => first,
    };
    match first.msg {
        Some(shard_message::Msg::Hello(hello)) => {
            hello::validate(&hello).map_err(|problem| {
                inc(&rejections.invalid_hello);
                Status::invalid_argument(problem)
            })?;
            Ok(hello)
        }
        other => {
            inc(&rejections.invalid_hello);
            inner.counters.message_in(other.as_ref());
            Err(Status::invalid_argument(format!(
                "the first message must be Hello, got {}",
                shard_msg_kind(other.as_ref())
            )))
        }
    }
}
