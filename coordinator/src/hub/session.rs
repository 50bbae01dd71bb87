//! One attached shard: its outbound queue, liveness, pending Acks, and the
//! task that reads its stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use promshard_proto::v1::{
    Ack, BackendKind, CoordinatorMessage, Hello, Report, ShardMessage, coordinator_message,
    shard_message,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::counters::{inc, shard_msg_kind};
use super::{HubEvent, Inner};
use crate::model::{Capacity, ShardId};
use crate::util::unix_ms;

/// Identifies one session (one Attach stream); a shard that reconnects gets
/// a new one. Events carry it so a consumer can ignore a `Detached` of a
/// session that was already replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetachReason {
    /// The shard closed its side of the stream.
    Closed,
    /// The transport failed (connection reset, peer gone, ...).
    StreamError(String),
    /// No message from the shard for this long.
    FailureTimeout(Duration),
    /// The shard did not read its stream and its outbound queue filled up.
    QueueFull,
    /// A newer Attach with the same shard id took over.
    Replaced,
    /// The shard sent something unreadable (e.g. an oversize message).
    ProtocolError(String),
    /// The coordinator asked for it ([`super::ShardHub::detach`]).
    Requested,
    /// The hub is shutting down.
    Shutdown,
}

impl DetachReason {
    /// A short stable label (metrics, logs): `closed`, `stream_error`,
    /// `failure_timeout`, `queue_full`, `replaced`, `protocol_error`,
    /// `requested`, `shutdown`.
    pub fn label(&self) -> &'static str {
        match self {
            DetachReason::Closed => "closed",
            DetachReason::StreamError(_) => "stream_error",
            DetachReason::FailureTimeout(_) => "failure_timeout",
            DetachReason::QueueFull => "queue_full",
            DetachReason::Replaced => "replaced",
            DetachReason::ProtocolError(_) => "protocol_error",
            DetachReason::Requested => "requested",
            DetachReason::Shutdown => "shutdown",
        }
    }

    /// The status the shard's stream ends with.
    pub(crate) fn to_status(&self, shard: &ShardId) -> Status {
        match self {
            DetachReason::Closed | DetachReason::StreamError(_) => {
                Status::cancelled(format!("session of shard {shard} ended: {self}"))
            }
            DetachReason::FailureTimeout(d) => {
                Status::unavailable(format!("shard {shard} sent nothing for {d:?}; detached"))
            }
            DetachReason::QueueFull => Status::resource_exhausted(format!(
                "shard {shard} does not read its stream; outbound queue full; detached"
            )),
            DetachReason::Replaced => {
                Status::aborted(format!("replaced by a newer session of shard {shard}"))
            }
            DetachReason::ProtocolError(e) => Status::invalid_argument(e.clone()),
            DetachReason::Requested => {
                Status::aborted(format!("the coordinator detached shard {shard}"))
            }
            DetachReason::Shutdown => Status::unavailable("the coordinator is shutting down"),
        }
    }
}

impl fmt::Display for DetachReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetachReason::StreamError(e) => write!(f, "stream_error: {e}"),
            DetachReason::FailureTimeout(d) => write!(f, "failure_timeout: no message for {d:?}"),
            DetachReason::ProtocolError(e) => write!(f, "protocol_error: {e}"),
            other => f.write_str(other.label()),
        }
    }
}

/// The shard's answer to an assignment delta.
#[derive(Clone, Debug, PartialEq)]
pub struct AckOutcome {
    pub version: u64,
    /// The shard applied the delta (possibly minus `rejected_target_ids`).
    pub ok: bool,
    pub error: String,
    /// Targets of the delta the shard could not apply.
    pub rejected_target_ids: Vec<u64>,
    /// From enqueueing the delta to receiving the Ack.
    pub round_trip: Duration,
}

impl AckOutcome {
    /// `ok` and nothing rejected.
    pub fn fully_applied(&self) -> bool {
        self.ok && self.rejected_target_ids.is_empty()
    }
}

/// The totals of a shard's last Report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReportSummary {
    pub received_at: SystemTime,
    pub targets: usize,
    pub total_series: u64,
    pub total_samples_per_second: f64,
    pub wal_backlog_bytes: u64,
    pub wal_backlog_samples: u64,
}

/// What the hub knows about one attached shard.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ShardSnapshot {
    pub shard: ShardId,
    pub session: SessionId,
    /// The shard's HTTP API address, from its Hello.
    pub address: String,
    /// Where the Attach stream came from (`host:port`), when known.
    pub peer: Option<String>,
    /// `BackendKind` as its proto name (`BACKEND_KIND_NATIVE`, ...).
    pub backend: String,
    /// None when the Hello carried no capacity (use the coordinator's default).
    pub capacity: Option<Capacity>,
    /// The shard's software version, from its Hello.
    pub version: String,
    /// Number of targets the Hello said the shard scrapes.
    pub hello_targets: usize,
    pub connected_at: SystemTime,
    pub last_message_at: SystemTime,
    /// Round trip of the last Ping/Pong.
    pub last_ping_rtt: Option<Duration>,
    pub last_report: Option<ReportSummary>,
    /// The highest assignment version the shard acknowledged with ok
    /// (initially the version from its Hello).
    pub acked_version: u64,
    /// Heard from within the failure timeout and not being detached.
    pub healthy: bool,
}

struct SessionState {
    last_message: Instant,
    last_message_at: SystemTime,
    last_ping_sent: Option<Instant>,
    last_ping_rtt: Option<Duration>,
    last_report: Option<ReportSummary>,
    acked_version: u64,
    pending: HashMap<u64, PendingAck>,
}

struct PendingAck {
    sent: Instant,
    reply: oneshot::Sender<AckOutcome>,
}

pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) shard: ShardId,
    hello_info: HelloInfo,
    peer: Option<String>,
    connected_at: SystemTime,
    out: mpsc::Sender<CoordinatorMessage>,
    out_capacity: usize,
    cancel: CancellationToken,
    reason: OnceLock<DetachReason>,
    /// Closes the session's connection (when served by `ShardHub::serve`).
    conn_killer: Option<CancellationToken>,
    /// Cancelled once the driver has cleaned up and emitted `Detached`.
    pub(crate) finished: CancellationToken,
    state: Mutex<SessionState>,
}

struct HelloInfo {
    address: String,
    backend: String,
    capacity: Option<Capacity>,
    version: String,
    targets: usize,
}

/// Result of registering a waiter for an Ack.
pub(crate) enum AckWait {
    Waiting(oneshot::Receiver<AckOutcome>),
    InFlight,
    /// The session is ending (its waiters are being, or were, dropped).
    Detached,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        hello: &Hello,
        queue: usize,
        peer: Option<String>,
        conn_killer: Option<CancellationToken>,
    ) -> (Arc<Session>, mpsc::Receiver<CoordinatorMessage>) {
        let (out, rx) = mpsc::channel(queue);
        let now = Instant::now();
        let session = Session {
            id,
            shard: ShardId(hello.shard_id.clone()),
            hello_info: HelloInfo {
                address: hello.address.clone(),
                backend: BackendKind::try_from(hello.backend)
                    .map(|b| b.as_str_name().to_string())
                    .unwrap_or_else(|_| format!("unknown ({})", hello.backend)),
                capacity: hello.capacity.map(|c| Capacity {
                    max_series: c.max_series,
                    max_samples_per_second: c.max_samples_per_second,
                }),
                version: hello.version.clone(),
                targets: hello.targets.len(),
            },
            peer,
            connected_at: SystemTime::now(),
            out,
            out_capacity: queue,
            cancel: CancellationToken::new(),
            reason: OnceLock::new(),
            conn_killer,
            finished: CancellationToken::new(),
            state: Mutex::new(SessionState {
                last_message: now,
                last_message_at: SystemTime::now(),
                last_ping_sent: None,
                last_ping_rtt: None,
                last_report: None,
                acked_version: hello.assignment_version,
                pending: HashMap::new(),
            }),
        };
        (Arc::new(session), rx)
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        crate::util::lock(&self.state)
    }

    /// Ends the session (first reason wins). Returns whether this call did it.
    pub(crate) fn detach(&self, reason: DetachReason) -> bool {
        let first = self.reason.set(reason).is_ok();
        self.cancel.cancel();
        first
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub(crate) fn reason(&self) -> DetachReason {
        self.reason.get().cloned().unwrap_or(DetachReason::Closed)
    }

    /// Puts a message on the outbound queue without waiting; a full queue
    /// means the shard does not read its stream: the session is detached.
    pub(crate) fn enqueue(&self, msg: CoordinatorMessage) -> Result<(), EnqueueError> {
        if self.is_detached() {
            return Err(EnqueueError::Detached);
        }
        match self.out.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.detach(DetachReason::QueueFull);
                Err(EnqueueError::Full(self.out_capacity))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EnqueueError::Detached),
        }
    }

    pub(crate) fn wait_for_ack(&self, version: u64) -> AckWait {
        let mut st = self.state();
        // Checked under the lock: `finish` clears `pending` after the
        // session was cancelled, so no waiter can slip in after the clear.
        if self.is_detached() {
            return AckWait::Detached;
        }
        if st.pending.contains_key(&version) {
            return AckWait::InFlight;
        }
        let (tx, rx) = oneshot::channel();
        st.pending.insert(
            version,
            PendingAck {
                sent: Instant::now(),
                reply: tx,
            },
        );
        AckWait::Waiting(rx)
    }

    pub(crate) fn forget_ack(&self, version: u64) {
        self.state().pending.remove(&version);
    }

    pub(crate) fn snapshot(&self, failure_timeout: Duration) -> ShardSnapshot {
        let st = self.state();
        ShardSnapshot {
            shard: self.shard.clone(),
            session: self.id,
            address: self.hello_info.address.clone(),
            peer: self.peer.clone(),
            backend: self.hello_info.backend.clone(),
            capacity: self.hello_info.capacity,
            version: self.hello_info.version.clone(),
            hello_targets: self.hello_info.targets,
            connected_at: self.connected_at,
            last_message_at: st.last_message_at,
            last_ping_rtt: st.last_ping_rtt,
            last_report: st.last_report.clone(),
            acked_version: st.acked_version,
            healthy: !self.is_detached() && st.last_message.elapsed() <= failure_timeout,
        }
    }
}

pub(crate) enum EnqueueError {
    Full(usize),
    Detached,
}

/// The stream tonic sends to the shard: the outbound queue until the session
/// is detached, then the detach reason as the final status.
pub(crate) fn outbound_stream(
    hub: Arc<Inner>,
    session: Arc<Session>,
    rx: mpsc::Receiver<CoordinatorMessage>,
) -> impl futures_util::Stream<Item = Result<CoordinatorMessage, Status>> + Send + 'static {
    futures_util::stream::unfold(Some((hub, session, rx)), |state| async move {
        let (hub, session, mut rx) = state?;
        tokio::select! {
            biased;
            _ = session.cancel.cancelled() => {
                let status = session.reason().to_status(&session.shard);
                Some((Err(status), None))
            }
            msg = rx.recv() => {
                let msg = msg?;
                hub.counters.message_out(msg.msg.as_ref());
                Some((Ok(msg), Some((hub, session, rx))))
            }
        }
    })
}

/// The task of one session: retires the session it replaces, emits
/// `Attached`, reads the shard's stream until the session ends (sending
/// pings, checking liveness), then cleans up and emits `Detached`.
pub(crate) async fn run(
    hub: Arc<Inner>,
    session: Arc<Session>,
    replaced: Option<Arc<Session>>,
    hello: Hello,
    inbound: Streaming<ShardMessage>,
) {
    if let Some(old) = replaced {
        old.detach(DetachReason::Replaced);
        // Let the old session emit its Detached first (bounded wait).
        let _ = tokio::time::timeout(hub.opts.event_timeout, old.finished.cancelled()).await;
    }
    hub.emit(HubEvent::Attached {
        shard: session.shard.clone(),
        session: session.id,
        hello,
    })
    .await;
    drive(&hub, &session, inbound).await;
    finish(&hub, &session).await;
}

async fn drive(hub: &Inner, session: &Session, mut inbound: Streaming<ShardMessage>) {
    let opts = &hub.opts;
    let tick = opts
        .ping_interval
        .min(opts.failure_timeout / 4)
        .max(Duration::from_millis(5));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = session.cancel.cancelled() => break,
            _ = ticker.tick() => on_tick(hub, session),
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => on_message(hub, session, msg),
                Ok(None) => {
                    session.detach(DetachReason::Closed);
                }
                Err(status) => {
                    let reason = if status.code() == tonic::Code::OutOfRange {
                        inc(&hub.counters.anomalies.oversize);
                        DetachReason::ProtocolError(format!(
                            "unreadable message from shard {}: {}", session.shard, status.message()
                        ))
                    } else {
                        DetachReason::StreamError(format!("{}: {}", status.code(), status.message()))
                    };
                    session.detach(reason);
                }
            }
        }
    }
}

fn on_tick(hub: &Inner, session: &Session) {
    let opts = &hub.opts;
    let (silent_for, ping_due) = {
        let st = session.state();
        let due = st
            .last_ping_sent
            .is_none_or(|t| t.elapsed() >= opts.ping_interval);
        (st.last_message.elapsed(), due)
    };
    if silent_for > opts.failure_timeout {
        tracing::warn!(shard = %session.shard, session = %session.id, ?silent_for,
            "shard sent nothing within the failure timeout; detaching");
        session.detach(DetachReason::FailureTimeout(opts.failure_timeout));
        return;
    }
    if ping_due {
        let ping = CoordinatorMessage {
            msg: Some(coordinator_message::Msg::Ping(promshard_proto::v1::Ping {
                unix_ms: unix_ms(SystemTime::now()),
            })),
        };
        session.state().last_ping_sent = Some(Instant::now());
        if let Err(EnqueueError::Full(cap)) = session.enqueue(ping) {
            tracing::warn!(shard = %session.shard, session = %session.id, queue = cap,
                "shard does not read its stream (outbound queue full); detached");
        }
    }
}

fn on_message(hub: &Inner, session: &Session, msg: ShardMessage) {
    hub.counters.message_in(msg.msg.as_ref());
    {
        let mut st = session.state();
        st.last_message = Instant::now();
        st.last_message_at = SystemTime::now();
    }
    match msg.msg {
        Some(shard_message::Msg::Report(report)) => on_report(hub, session, report),
        Some(shard_message::Msg::Ack(ack)) => on_ack(hub, session, ack),
        Some(shard_message::Msg::Pong(pong)) => {
            let now = unix_ms(SystemTime::now());
            if pong.ping_unix_ms > 0 && now >= pong.ping_unix_ms {
                let rtt = u64::try_from(now - pong.ping_unix_ms).unwrap_or(0);
                session.state().last_ping_rtt = Some(Duration::from_millis(rtt));
            }
        }
        Some(shard_message::Msg::Hello(_)) => {
            inc(&hub.counters.anomalies.hello_after_hello);
            tracing::warn!(shard = %session.shard, session = %session.id,
                "second Hello within one session ignored (reconnect to change the Hello)");
        }
        None => {
            tracing::warn!(shard = %session.shard, session = %session.id,
                "ignored {}", shard_msg_kind(None));
        }
    }
}

fn on_report(hub: &Inner, session: &Session, report: Report) {
    session.state().last_report = Some(ReportSummary {
        received_at: SystemTime::now(),
        targets: report.targets.len(),
        total_series: report.total_series,
        total_samples_per_second: report.total_samples_per_second,
        wal_backlog_bytes: report.wal_backlog_bytes,
        wal_backlog_samples: report.wal_backlog_samples,
    });
    let event = HubEvent::Report {
        shard: session.shard.clone(),
        session: session.id,
        report,
    };
    // Reports are periodic: when the consumer lags, dropping one is better
    // than stalling this shard's reader.
    if hub.events.try_send(event).is_err() {
        inc(&hub.counters.anomalies.reports_dropped);
        tracing::debug!(shard = %session.shard, "event queue full or closed; Report dropped");
    }
}

fn on_ack(hub: &Inner, session: &Session, ack: Ack) {
    let waiter = {
        let mut st = session.state();
        if ack.ok && ack.assignment_version > st.acked_version {
            st.acked_version = ack.assignment_version;
        }
        st.pending.remove(&ack.assignment_version)
    };
    let Some(waiter) = waiter else {
        inc(&hub.counters.acks.unexpected);
        tracing::warn!(shard = %session.shard, session = %session.id,
            version = ack.assignment_version, ok = ack.ok,
            "Ack of an assignment version nobody waits for (unknown or late); ignored");
        return;
    };
    let outcome = AckOutcome {
        version: ack.assignment_version,
        ok: ack.ok,
        error: ack.error,
        rejected_target_ids: ack.rejected_target_ids,
        round_trip: waiter.sent.elapsed(),
    };
    inc(if outcome.fully_applied() {
        &hub.counters.acks.ok
    } else {
        &hub.counters.acks.failed
    });
    // The sender may have given up (timeout) in the meantime; nothing to do.
    let _ = waiter.reply.send(outcome);
}

async fn finish(hub: &Inner, session: &Arc<Session>) {
    let reason = session.reason();
    hub.remove_if_current(session);
    // Dropping the waiters wakes every pending send_delta with `Detached`.
    session.state().pending.clear();
    hub.counters.detach(&reason);
    if matches!(
        reason,
        DetachReason::QueueFull | DetachReason::FailureTimeout(_)
    ) && let Some(kill) = &session.conn_killer
    {
        // A peer that does not read (or is gone) would hold its HTTP/2
        // stream and buffers forever: close its connection.
        kill.cancel();
    }
    tracing::info!(shard = %session.shard, session = %session.id, %reason, "shard detached");
    hub.emit(HubEvent::Detached {
        shard: session.shard.clone(),
        session: session.id,
        reason,
    })
    .await;
    session.finished.cancel();
}
