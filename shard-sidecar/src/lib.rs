//! The shard agent: it attaches to the coordinator over promshard.v1, says
//! what its backend scrapes, applies job definitions and assignment deltas
//! to the backend, acknowledges them and reports per-target load.
