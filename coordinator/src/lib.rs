//! The promshard coordinator: it discovers every target of a prometheus.yml,
//! learns how heavy each one is, places targets on shards (the planner) and
//! carries the placement out over the promshard.v1 protocol.
//!
//! - [`model`]: the shared vocabulary (target ids, shard ids, loads,
//!   capacities).
//! - [`registry`]: discovered targets by stable id, and their load model
//!   (live reports, job medians, explore scrapes, defaults).
//! - [`planner`]: the pure, deterministic placement function.
//! - [`hub`]: the gRPC service shards attach to (sessions, assignment
//!   deltas, acknowledgements, reports, deadlines).
//! - [`admin`]: the admin HTTP API.
//! - [`provider`]: where shards come from (local child processes, or
//!   whoever attaches).

pub mod admin;
pub mod control;
pub mod hub;
pub mod model;
pub mod planner;
pub mod provider;
pub mod registry;
pub mod scale;
pub mod server;
mod util;
