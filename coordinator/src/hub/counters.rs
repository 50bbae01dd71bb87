//! Plain atomic counters of the hub, read as a [`HubStats`] snapshot (the
//! coordinator's /metrics exports them).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use promshard_proto::v1::{coordinator_message, shard_message};

use super::session::DetachReason;

macro_rules! counter_group {
    ($(#[$doc:meta])* $snap:ident / $atomics:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $snap { $(pub $field: u64),* }

        #[derive(Default)]
        pub(crate) struct $atomics { $(pub(crate) $field: AtomicU64),* }

        impl $atomics {
            fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Relaxed)),* }
            }
        }
    };
}

counter_group!(
    /// Messages received from shards, by kind (`empty`: no oneof set).
    MessagesIn / MessagesInAtomics { hello, report, ack, pong, empty }
);
counter_group!(
    /// Messages handed to the transport, by kind.
    MessagesOut / MessagesOutAtomics { jobs, assignment, ping, redirect }
);
counter_group!(
    /// Outcomes of `send_delta`: acknowledged ok, acknowledged with an error
    /// or rejected targets, no Ack in time; `unexpected`: an Ack no send
    /// waits for (unknown or late version).
    Acks / AcksAtomics { ok, failed, timeout, unexpected }
);
counter_group!(
    /// Ended sessions, by [`DetachReason::label`].
    Detaches / DetachesAtomics {
        closed, stream_error, failure_timeout, queue_full, replaced, protocol_error, requested, shutdown
    }
);
counter_group!(
    /// Attach calls refused before a session existed.
    Rejections / RejectionsAtomics { unauthenticated, invalid_hello, hello_timeout, shutting_down }
);
counter_group!(
    /// Messages that made no sense and were dropped or ended a session
    /// without harming the hub.
    Anomalies / AnomaliesAtomics { hello_after_hello, oversize, reports_dropped, events_dropped }
);

/// A snapshot of every hub counter (monotonic, except `attached`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HubStats {
    /// Sessions attached right now.
    pub attached: u64,
    /// Sessions ever attached.
    pub sessions: u64,
    pub messages_in: MessagesIn,
    pub messages_out: MessagesOut,
    pub acks: Acks,
    pub detaches: Detaches,
    pub rejections: Rejections,
    pub anomalies: Anomalies,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sessions: AtomicU64,
    pub(crate) messages_in: MessagesInAtomics,
    pub(crate) messages_out: MessagesOutAtomics,
    pub(crate) acks: AcksAtomics,
    pub(crate) detaches: DetachesAtomics,
    pub(crate) rejections: RejectionsAtomics,
    pub(crate) anomalies: AnomaliesAtomics,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, attached: u64) -> HubStats {
        HubStats {
            attached,
            sessions: self.sessions.load(Relaxed),
            messages_in: self.messages_in.snapshot(),
            messages_out: self.messages_out.snapshot(),
            acks: self.acks.snapshot(),
            detaches: self.detaches.snapshot(),
            rejections: self.rejections.snapshot(),
            anomalies: self.anomalies.snapshot(),
        }
    }

    pub(crate) fn message_in(&self, msg: Option<&shard_message::Msg>) {
        let m = &self.messages_in;
        inc(match msg {
            Some(shard_message::Msg::Hello(_)) => &m.hello,
            Some(shard_message::Msg::Report(_)) => &m.report,
            Some(shard_message::Msg::Ack(_)) => &m.ack,
            Some(shard_message::Msg::Pong(_)) => &m.pong,
            None => &m.empty,
        });
    }

    pub(crate) fn message_out(&self, msg: Option<&coordinator_message::Msg>) {
        let m = &self.messages_out;
        match msg {
            Some(coordinator_message::Msg::Jobs(_)) => inc(&m.jobs),
            Some(coordinator_message::Msg::Assignment(_)) => inc(&m.assignment),
            Some(coordinator_message::Msg::Ping(_)) => inc(&m.ping),
            Some(coordinator_message::Msg::Redirect(_)) => inc(&m.redirect),
            None => {}
        }
    }

    pub(crate) fn detach(&self, reason: &DetachReason) {
        let d = &self.detaches;
        inc(match reason {
            DetachReason::Closed => &d.closed,
            DetachReason::StreamError(_) => &d.stream_error,
            DetachReason::FailureTimeout(_) => &d.failure_timeout,
            DetachReason::QueueFull => &d.queue_full,
            DetachReason::Replaced => &d.replaced,
            DetachReason::ProtocolError(_) => &d.protocol_error,
            DetachReason::Requested => &d.requested,
            DetachReason::Shutdown => &d.shutdown,
        });
    }
}

/// The name of a shard message's kind, for logs and errors.
pub(crate) fn shard_msg_kind(msg: Option<&shard_message::Msg>) -> &'static str {
    match msg {
        Some(shard_message::Msg::Hello(_)) => "Hello",
        Some(shard_message::Msg::Report(_)) => "Report",
        Some(shard_message::Msg::Ack(_)) => "Ack",
        Some(shard_message::Msg::Pong(_)) => "Pong",
        None => "an empty ShardMessage (no field set)",
    }
}
