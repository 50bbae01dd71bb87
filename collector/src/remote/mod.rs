//! Prometheus remote write 1.0 sender: per `remote_write` entry, a
//! [`RemoteWriteQueue`] takes `(position, AppendBatch)` input, applies
//! `write_relabel_configs`, batches samples into sharded queues (order
//! kept per series), sends snappy-compressed protobuf `WriteRequest`s,
//! retries 5xx, 429 and network errors with backoff (honoring
//! `Retry-After`), drops other 4xx, and reports the delivered position.
//!
//! Differences from Prometheus 2.42: a 429 is always retried (promshard
//! never drops data on rate limiting; `queue_config.retry_on_http_429` is
//! not consulted), and `sigv4` is refused at start. Exemplars and native
//! histograms are not sent (the series contract carries neither).
//!
//! The input is an interface of its own (not the WAL): an adapter feeds
//! WAL records in and truncates the WAL up to [`RemoteWriteQueue::delivered`].

pub mod encode;
mod error;
mod pairs;
mod queue;
mod send;
mod shard;
mod stats;
mod tracker;

pub use error::RemoteError;
pub use queue::{DEFAULT_RESHARD_INTERVAL, QueueOptions, RemoteWriteQueue, Undelivered};
pub use send::{VERSION, VERSION_HEADER};
pub use stats::{DropReason, RemoteStats};
