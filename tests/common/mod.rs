//! Harness of the end-to-end collector tests (`tests/collector_*.rs`).
//!
//! - [`fixture`]: scrape targets on loopback whose per-path body (and
//!   behaviour: hang, never close, status) can be changed between scrapes.
//! - [`capture`]: a remote write 1.0 receiver that keeps every sample
//!   (series with sorted labels -> `(timestamp, value bits)`), checks the
//!   sender rules with loadtest's decoder, and can answer 500 for a while.
//! - [`agent`]: a running `prometheus --enable-feature=agent` or
//!   `promshard collector`, killed on drop.
//! - [`compare`]: the differential comparison of two captures.
//! - [`prom`]: promlib's Prometheus harness (free ports, HTTP, binary).
//! - [`cluster`]: `promshard coordinator` and coordinated shards as real
//!   processes, the loadtest fleet and sink (`tests/coordinator_*.rs`).
//! - [`fake_shard`]: raw gRPC clients that misbehave toward a coordinator.
//!
//! Files: `collector_diff.rs` (differential scenarios),
//! `collector_bad_input.rs`, `collector_crash.rs` (SIGKILL + restart),
//! `collector_retry.rs` (500 / 400 / 429). All of them take ~3 min on 2
//! cores (debug build): `cargo test --test 'collector_*'`.
//! `PROMSHARD_DIFFTEST_OURS=prometheus` puts Prometheus agent in place of
//! promshard (a self-check of the harness: the differential and bad-input
//! tests pass; crash and 429 tests are promshard guarantees Prometheus
//! 2.42 does not give).
#![allow(dead_code)]

pub mod agent;
pub mod capture;
pub mod cluster;
pub mod compare;
pub mod fake_shard;
pub mod fixture;
pub mod pair;

#[path = "../../promlib/tests/common/mod.rs"]
pub mod prom;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use promshard_proto::STALE_NAN_BITS;

/// One tokio runtime per test binary, shared by fixture servers and
/// receivers (tests themselves are plain `#[test]` functions).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Milliseconds since the Unix epoch.
pub use promshard_collector::scrape::schedule::now_ms;

/// Polls `cond` every 100 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `text` to `path` atomically (temp file + rename), so a file_sd
/// watcher never reads half a file.
pub fn write_atomic(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename temp file");
}
