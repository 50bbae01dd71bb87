//! Load-test parts the promshard collector is measured with.
//!
//! - [`fleet`]: thousands of fake scrape targets with node_exporter-like
//!   bodies, size skew, churn, and slow or broken targets.
//! - [`sink`]: a remote write 1.0 receiver that checks every series for
//!   gaps, duplicates, out-of-order samples and staleness markers.
//! - [`bench`]: `bench-collector`, promshard collector against vmagent and
//!   the Prometheus agent on one fleet.
//! - [`compare`]: promshard's planner against hashmod, vmagent cluster mode
//!   and the OpenTelemetry allocator's strategies on one target set.
//! - [`scenario`]: `scenario NAME`, a whole system on loopback judged by
//!   the sink.
//! - [`cli`]: `promshard loadtest fleet|sink|bench-collector|compare|scenario`.

pub mod bench;
pub mod cli;
pub mod compare;
pub mod exposition;
pub mod fleet;
pub mod scenario;
pub mod sink;
pub mod zipf;

pub use exposition::{SeriesInfo, SeriesKind};
pub use fleet::{Behaviour, Fleet, FleetConfig, FleetError, TargetInfo};
pub use sink::{Fault, Sink, SinkConfig, SinkError, Summary};
