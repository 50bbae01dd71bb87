//! promshard wire formats.
//!
//! - [`v1`]: the coordinator <-> shard protocol (gRPC, one bidirectional
//!   stream per shard).
//! - [`prometheus`]: Prometheus remote write 1.0 messages.

/// The promshard.v1 coordinator <-> shard protocol.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("promshard.v1");
}

/// Prometheus remote write 1.0 (`prometheus.WriteRequest` and friends).
pub mod prometheus {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("prometheus");
}

/// The NaN bit pattern Prometheus uses as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
