//! The hub's typed errors.

use std::time::Duration;

use crate::model::ShardId;

use super::session::DetachReason;

/// What can go wrong when the coordinator talks to a shard through the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No session of this shard is attached right now.
    #[error("shard {0} is not attached to the hub")]
    NotAttached(ShardId),
    /// The shard's outbound queue was full: it does not read its stream. The
    /// session was detached.
    #[error("shard {shard}: outbound queue full ({capacity} messages); the session was detached")]
    QueueFull { shard: ShardId, capacity: usize },
    /// No Ack of the assignment version arrived within the ack timeout. The
    /// caller should cancel whatever depended on it (a move stays where it was).
    #[error("shard {shard}: no Ack of assignment version {version} within {timeout:?}")]
    Timeout {
        shard: ShardId,
        version: u64,
        timeout: Duration,
    },
    /// The session ended while a send waited for its Ack.
    #[error("shard {shard} detached ({reason}) before acknowledging assignment version {version}")]
    Detached {
        shard: ShardId,
        version: u64,
        reason: DetachReason,
    },
    /// A send_delta of the same version is already waiting for its Ack.
    #[error("shard {shard}: assignment version {version} is already waiting for an Ack")]
    VersionInFlight { shard: ShardId, version: u64 },
    /// The message would exceed the configured maximum message size.
    #[error("shard {shard}: {kind} message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        shard: ShardId,
        kind: &'static str,
        size: usize,
        limit: usize,
    },
    /// A hub option is unusable.
    #[error("hub option {option}: {problem}")]
    InvalidOption {
        option: &'static str,
        problem: String,
    },
    /// The gRPC server failed (bind, TLS setup, transport).
    #[error("gRPC server on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
}
