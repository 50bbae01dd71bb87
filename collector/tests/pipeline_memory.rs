//! Heap held by one target's pipeline per series, measured with a counting
//! global allocator (this test binary only): a target of 1000
//! node_exporter-like series after a few scrapes, the batches dropped.
//!
//! Run with `--nocapture` to see the figures.

mod pipeline_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use pipeline_common::{node_body, node_settings};
use std::time::Duration;

use promshard_collector::pipeline::{RefAllocator, TargetPipeline};
use promshard_collector::series::AppendBatch;
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> (i64, i64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    )
}

const SERIES: usize = 1000;

/// Only one test in this binary, so nothing else allocates concurrently.
/// Before the compact table and arena cache: 792.8 bytes and 17.1
/// allocations per series; after: 348.9 and 1.1; with the raw cache keyed
/// by 128-bit hashes, labels as pair ids and 32-bit iterations: 130.8 and
/// 0.14.
#[test]
fn pipeline_heap_per_series_is_small() {
    let bodies: Vec<Vec<u8>> = (0..4).map(|scrape| node_body(SERIES, scrape)).collect();
    let refs = Arc::new(RefAllocator::new(1));
    let target = Labels::from_pairs([("job", "node"), ("instance", "10.0.0.1:9100")]);
    let (bytes0, blocks0) = live();
    let mut p = TargetPipeline::new(node_settings(), target, refs);
    for (i, body) in bodies.iter().enumerate() {
        let mut out = AppendBatch::default();
        let r = p.on_scrape(
            body,
            Format::Text,
            1000 * (i as i64 + 1),
            Duration::from_millis(5),
            &mut out,
        );
        assert_eq!(r.error, None);
        assert_eq!(out.samples.len(), SERIES + 5);
    }
    let (bytes1, blocks1) = live();
    let per_series = (bytes1 - bytes0) as f64 / SERIES as f64;
    let blocks_per_series = (blocks1 - blocks0) as f64 / SERIES as f64;
    println!(
        "pipeline heap after 4 scrapes of {SERIES} series: {} bytes, \
         {per_series:.1} bytes/series, {blocks_per_series:.2} allocations/series",
        bytes1 - bytes0
    );
    assert_eq!(p.known_series().len(), SERIES + 5);
    assert!(
        per_series < 200.0,
        "pipeline holds {per_series:.1} bytes per series"
    );
    drop(p);
}
