//! The scrape engine of one shard.
//!
//! Data path: scrape loops -> sample pipeline (parse, target labels,
//! metric relabeling, limits, staleness, synthetic series) -> [`series`]
//! batches -> WAL -> remote-write queues.

pub mod api;
pub mod discovery_feed;
pub mod pipeline;
mod refmap;
pub mod remote;
pub mod run;
pub mod scrape;
pub mod series;
pub mod ship;
mod varint;
pub mod wal;
