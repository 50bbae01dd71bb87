//! Prometheus semantics shared by every promshard binary: labels, the
//! prometheus.yml model, relabeling, discovery, target labels, exposition
//! parsing and the one-target scrape.

pub mod api;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod exposition;
pub mod labels;
pub mod relabel;
pub mod scrape;
pub mod secret;
pub mod targets;
