//! The shard hub: the coordinator's side of promshard.v1.
//!
//! Shards open one `Coordinator.Attach` stream each; the hub keeps one
//! *session* per shard id and lets the rest of the coordinator (the control
//! loop) talk to shards through a [`ShardHub`] handle and a stream of
//! [`HubEvent`]s.
//!
//! # Session lifecycle
//!
//! 1. **Attach.** If a bearer token is configured, the call must carry
//!    `authorization: Bearer <token>` (constant-time compare), otherwise it
//!    ends with `Unauthenticated`. The first message must be a valid
//!    [`Hello`](promshard_proto::v1::Hello) within
//!    [`HubOptions::hello_timeout`]: a non-empty, at most 253 byte,
//!    printable-ASCII shard id, sane strings and a finite capacity. Anything
//!    else (a Report first, an empty id, an unreadable message) ends the call
//!    with `InvalidArgument` and a message naming the problem; no session
//!    exists, nothing else is affected.
//! 2. **Attached.** The hub registers the session and starts its task
//!    (from here on, nothing depends on the Attach call staying alive). If a
//!    session with the same shard id exists, the task detaches it first with
//!    [`DetachReason::Replaced`] and waits (bounded by
//!    [`HubOptions::event_timeout`]) until its `Detached` event is out. Then
//!    it emits [`HubEvent::Attached`] with the whole Hello: after a
//!    coordinator restart that Hello, with the targets the shard scrapes and
//!    the last assignment version it applied, is what the coordinator
//!    rebuilds its state from.
//! 3. **Running.** The session task reads the shard's messages: `Report`s
//!    become [`HubEvent::Report`] (dropped and counted if the event queue is
//!    full, never blocking the reader), `Ack`s complete the waiting
//!    [`ShardHub::send_delta`] of that version, `Pong`s (like every message)
//!    refresh liveness. Every [`HubOptions::ping_interval`] the hub enqueues
//!    a `Ping`. Messages that make no sense (a second Hello, an empty
//!    message, an Ack nobody waits for) are counted, logged and ignored.
//!    Outbound messages go through a bounded per-session queue
//!    ([`HubOptions::session_queue`]) with `try_send`: nothing the hub does
//!    ever waits on a shard, except `send_delta` waiting (bounded by
//!    [`HubOptions::ack_timeout`]) for its own Ack.
//! 4. **Detached.** A session ends when the shard closes its stream or the
//!    transport fails, when it sends nothing for
//!    [`HubOptions::failure_timeout`], when its outbound queue is full (it
//!    does not read), when an unreadable (e.g. oversize) message arrives,
//!    when a newer session replaces it, on [`ShardHub::detach`], or on
//!    shutdown. The hub then removes it, fails its pending `send_delta`s
//!    with [`HubError::Detached`], ends the shard's stream with a status
//!    naming the reason, and emits [`HubEvent::Detached`] exactly once.
//!
//! Events carry a [`SessionId`]; a consumer can ignore events of a session
//! that is no longer the shard's current one.
//!
//! Counters for metrics are read with [`ShardHub::stats`].

mod auth;
mod counters;
mod error;
mod hello;
mod serve;
mod service;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use promshard_proto::v1::coordinator_server::CoordinatorServer;
use promshard_proto::v1::{
    AssignmentDelta, CoordinatorMessage, Hello, JobDefinitions, Report, coordinator_message,
};
use prost::Message;
use tokio::sync::mpsc;

use crate::model::ShardId;

pub use auth::BearerToken;
pub use counters::{Acks, Anomalies, Detaches, HubStats, MessagesIn, MessagesOut, Rejections};
pub use error::HubError;
pub use hello::MAX_SHARD_ID_LEN;
pub use service::HubService;
pub use session::{AckOutcome, DetachReason, ReportSummary, SessionId, ShardSnapshot};

/// How the hub treats its sessions.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// How long `send_delta` waits for the Ack of its version.
    pub ack_timeout: Duration,
    /// How often each session gets a Ping.
    pub ping_interval: Duration,
    /// A shard that sends nothing (no Pong, Report, Ack) for this long is
    /// considered gone and detached.
    pub failure_timeout: Duration,
    /// How long after Attach the Hello must arrive.
    pub hello_timeout: Duration,
    /// Bound on emitting Attached/Detached events when the consumer lags.
    pub event_timeout: Duration,
    /// After the shutdown signal, how long [`ShardHub::serve`] lets
    /// connections close gracefully before it closes them itself (a shard
    /// that does not read its stream would otherwise hold shutdown forever).
    pub shutdown_grace: Duration,
    /// Shards must present `authorization: Bearer <token>` when set.
    pub auth_token: Option<BearerToken>,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Outbound queue per session, in messages; a full queue detaches the
    /// session.
    pub session_queue: usize,
    /// Capacity of the [`HubEvent`] channel.
    pub event_queue: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            ack_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            failure_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            event_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            auth_token: None,
            max_message_bytes: 64 << 20,
            session_queue: 64,
            event_queue: 1024,
        }
    }
}

/// What happened on the hub, in order per session.
///
/// The consumer should drain the channel promptly. When it is full,
/// Reports are dropped (counted in `anomalies.reports_dropped`); Attached
/// and Detached wait up to [`HubOptions::event_timeout`] and are then
/// dropped too (`anomalies.events_dropped`, logged as an error); after such a
/// drop, reconcile with [`ShardHub::shards`].
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A shard attached and said hello (what it scrapes, its capacity, ...).
    Attached {
        shard: ShardId,
        session: SessionId,
        hello: Hello,
    },
    /// A shard's periodic load report.
    Report {
        shard: ShardId,
        session: SessionId,
        report: Report,
    },
    /// A session ended (exactly once per session).
    Detached {
        shard: ShardId,
        session: SessionId,
        reason: DetachReason,
    },
}

/// The coordinator's handle on attached shards. Cheap to clone.
#[derive(Clone)]
pub struct ShardHub {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) opts: HubOptions,
    sessions: Mutex<HashMap<ShardId, Arc<session::Session>>>,
    pub(crate) events: mpsc::Sender<HubEvent>,
    pub(crate) counters: counters::Counters,
    pub(crate) next_session: AtomicU64,
    pub(crate) shutting_down: AtomicBool,
}

impl Inner {
    fn sessions(&self) -> MutexGuard<'_, HashMap<ShardId, Arc<session::Session>>> {
        // Never held across an await; a poisoned map is still consistent.
        crate::util::lock(&self.sessions)
    }

    /// Registers a session; returns the one it replaces.
    pub(crate) fn insert(&self, s: Arc<session::Session>) -> Option<Arc<session::Session>> {
        self.sessions().insert(s.shard.clone(), s)
    }

    pub(crate) fn remove_if_current(&self, s: &session::Session) {
        let mut map = self.sessions();
        if map.get(&s.shard).is_some_and(|cur| cur.id == s.id) {
            map.remove(&s.shard);
        }
    }

    fn get(&self, shard: &ShardId) -> Option<Arc<session::Session>> {
        self.sessions().get(shard).cloned()
    }

    /// Emits an Attached/Detached event, waiting at most `event_timeout`.
    pub(crate) async fn emit(&self, event: HubEvent) {
        match tokio::time::timeout(self.opts.event_timeout, self.events.send(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {} // nobody listens (e.g. the coordinator is stopping)
            Err(_) => {
                counters::inc(&self.counters.anomalies.events_dropped);
                tracing::error!(timeout = ?self.opts.event_timeout,
                    "hub event consumer does not keep up; event dropped");
            }
        }
    }
}

impl ShardHub {
    /// A hub and the receiver of its events.
    pub fn new(opts: HubOptions) -> (ShardHub, mpsc::Receiver<HubEvent>) {
        let (events, rx) = mpsc::channel(opts.event_queue.max(1));
        let opts = HubOptions {
            session_queue: opts.session_queue.max(1),
            ..opts
        };
        let inner = Inner {
            opts,
            sessions: Mutex::new(HashMap::new()),
            events,
            counters: counters::Counters::default(),
            next_session: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        };
        (
            ShardHub {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// The gRPC service to mount in a tonic server (message size limits set).
    pub fn service(&self) -> CoordinatorServer<HubService> {
        let limit = self.inner.opts.max_message_bytes;
        CoordinatorServer::new(HubService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
    }

    /// Refuses new sessions and detaches every session with
    /// [`DetachReason::Shutdown`].
    pub fn close_all(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let sessions: Vec<_> = self.inner.sessions().values().cloned().collect();
        for s in sessions {
            s.detach(DetachReason::Shutdown);
        }
    }

    /// Detaches a shard's session ([`DetachReason::Requested`]); false when
    /// it is not attached.
    pub fn detach(&self, shard: &ShardId) -> bool {
        match self.inner.get(shard) {
            Some(s) => {
                s.detach(DetachReason::Requested);
                true
            }
            None => false,
        }
    }

    /// Every attached shard, sorted by id.
    pub fn shards(&self) -> Vec<ShardSnapshot> {
        let sessions: Vec<_> = self.inner.sessions().values().cloned().collect();
        let mut out: Vec<_> = sessions
            .iter()
            .map(|s| s.snapshot(self.inner.opts.failure_timeout))
            .collect();
        out.sort_by(|a, b| a.shard.cmp(&b.shard));
        out
    }

    /// One attached shard.
    pub fn shard(&self, shard: &ShardId) -> Option<ShardSnapshot> {
        self.inner
            .get(shard)
            .map(|s| s.snapshot(self.inner.opts.failure_timeout))
    }

    /// Counters for metrics.
    pub fn stats(&self) -> HubStats {
        let attached = self.inner.sessions().len() as u64;
        self.inner.counters.snapshot(attached)
    }

    /// Queues job definitions for a shard (no Ack in the protocol).
    pub async fn send_jobs(&self, shard: &ShardId, jobs: JobDefinitions) -> Result<(), HubError> {
        let session = self.session(shard)?;
        let msg = CoordinatorMessage {
            msg: Some(coordinator_message::Msg::Jobs(jobs)),
        };
        self.check_size(shard, "JobDefinitions", &msg)?;
        self.enqueue(&session, msg)
    }

    /// Sends an assignment delta and waits (at most `ack_timeout`) for the
    /// shard's Ack of `delta.version`. An Ack with `ok = false` or rejected
    /// targets is returned as `Ok` with that content; `Err(Timeout)` means
    /// the caller must treat the delta as not applied (cancel the move).
    pub async fn send_delta(
        &self,
        shard: &ShardId,
        delta: AssignmentDelta,
    ) -> Result<AckOutcome, HubError> {
        self.send_delta_within(shard, delta, self.inner.opts.ack_timeout)
            .await
    }

    /// [`ShardHub::send_delta`] with a deadline of its own: a handover's
    /// acknowledgements must arrive while there is still time to cancel it
    /// before its start slot. `timeout` is capped at `ack_timeout`.
    pub async fn send_delta_within(
        &self,
        shard: &ShardId,
        delta: AssignmentDelta,
        timeout: Duration,
    ) -> Result<AckOutcome, HubError> {
        let session = self.session(shard)?;
        let version = delta.version;
        let msg = CoordinatorMessage {
            msg: Some(coordinator_message::Msg::Assignment(delta)),
        };
        self.check_size(shard, "AssignmentDelta", &msg)?;
        let waiter = match session.wait_for_ack(version) {
            session::AckWait::Waiting(rx) => rx,
            session::AckWait::InFlight => {
                return Err(HubError::VersionInFlight {
                    shard: shard.clone(),
                    version,
                });
            }
            session::AckWait::Detached => return Err(HubError::NotAttached(shard.clone())),
        };
        if let Err(e) = self.enqueue(&session, msg) {
            session.forget_ack(version);
            return Err(e);
        }
        let timeout = timeout.min(self.inner.opts.ack_timeout);
        match tokio::time::timeout(timeout, waiter).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(HubError::Detached {
                shard: shard.clone(),
                version,
                reason: session.reason(),
            }),
            Err(_) => {
                session.forget_ack(version);
                counters::inc(&self.inner.counters.acks.timeout);
                tracing::warn!(%shard, version, ?timeout, "no Ack of assignment delta in time");
                Err(HubError::Timeout {
                    shard: shard.clone(),
                    version,
                    timeout,
                })
            }
        }
    }

    fn session(&self, shard: &ShardId) -> Result<Arc<session::Session>, HubError> {
        self.inner
            .get(shard)
            .filter(|s| !s.is_detached())
            .ok_or_else(|| HubError::NotAttached(shard.clone()))
    }

    fn check_size(
        &self,
        shard: &ShardId,
        kind: &'static str,
        msg: &CoordinatorMessage,
    ) -> Result<(), HubError> {
        let size = msg.encoded_len();
        let limit = self.inner.opts.max_message_bytes;
        if size > limit {
            return Err(HubError::TooLarge {
                shard: shard.clone(),
                kind,
                size,
                limit,
            });
        }
        Ok(())
    }

    fn enqueue(&self, session: &session::Session, msg: CoordinatorMessage) -> Result<(), HubError> {
        session.enqueue(msg).map_err(|e| match e {
            session::EnqueueError::Full(capacity) => {
                tracing::warn!(shard = %session.shard, session = %session.id, capacity,
                    "shard does not read its stream (outbound queue full); detached");
                HubError::QueueFull {
                    shard: session.shard.clone(),
                    capacity,
                }
            }
            session::EnqueueError::Detached => HubError::NotAttached(session.shard.clone()),
        })
    }
}
