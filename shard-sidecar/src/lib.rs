//! The shard agent: it attaches to the coordinator over promshard.v1, says
//! what its backend scrapes, applies job definitions and assignment deltas
//! to the backend, acknowledges them and reports per-target load.
//!
//! - [`backend`]: what the agent needs from whatever scrapes ([`Backend`]).
//! - [`native`]: [`NativeBackend`], the in-process collector.
//! - [`agent`]: [`Agent`], the gRPC client loop (connect with backoff,
//!   Hello, apply, Ack, Report, Pong, Redirect, reconnect).
//! - [`external`]: [`ExternalBackend`], a Prometheus or vmagent next to
//!   the sidecar (config rewrite once per job change, http_sd, scrape proxy).
//! - [`jobs`]: job definitions from the coordinator -> scrape configs.
//! - [`target`]: protocol targets <-> promlib targets (id checked).

pub mod agent;
pub mod backend;
pub mod external;
pub mod jobs;
pub mod native;
pub mod target;

pub use agent::{Agent, AgentError, AgentOptions, AgentStatus, TlsOptions};
pub use backend::{Backend, BackendError, DeltaOutcome, JobsOutcome, Rejected};
pub use external::{ExternalBackend, ExternalError, ExternalKind, ExternalOptions};
pub use native::NativeBackend;
