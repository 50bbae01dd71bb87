//! Scrape buffers shared by all target loops.
//!
//! A loop needs a body buffer and an append batch only while it scrapes and
//! appends, and the loops' slots are spread over the interval, so only a
//! few scrapes run at any moment. Keeping one buffer pair per loop would
//! hold every target's largest body for good (about 100 MB for 1,000
//! targets of 100 KB); a small shared pool keeps as many as actually run
//! at once.

use std::sync::Mutex;

use bytes::BytesMut;

use crate::series::AppendBatch;

/// Buffers kept for reuse at most; more are freed when returned.
const MAX_POOLED: usize = 32;
/// A body buffer grown past this is freed when returned rather than kept
/// (one huge target must not pin its size in the pool).
const MAX_POOLED_BODY: usize = 8 << 20;

/// One scrape's working buffers.
#[derive(Default)]
pub(crate) struct Scratch {
    pub body: BytesMut,
    pub batch: AppendBatch,
}

/// A bounded free list of [`Scratch`]es.
#[derive(Default)]
pub(crate) struct ScratchPool {
    free: Mutex<Vec<Scratch>>,
}

impl ScratchPool {
    /// A scratch with empty buffers (capacity kept from earlier use).
    pub(crate) fn take(&self) -> Scratch {
        self.lock().pop().unwrap_or_default()
    }

    /// Returns `s` for reuse. The caller must have dropped every `Bytes`
    /// split off its body, or the kept allocation cannot be reclaimed.
    pub(crate) fn put(&self, mut s: Scratch) {
        if s.body.capacity() > MAX_POOLED_BODY {
            return;
        }
        s.body.clear();
        s.batch.series.clear();
        s.batch.samples.clear();
        s.batch.metadata.clear();
        let mut free = self.lock();
        if free.len() < MAX_POOLED {
            free.push(s);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Scratch>> {
        // The list is valid after any panic (push/pop only).
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_buffers_are_reused_empty_and_the_pool_is_bounded() {
        let pool = ScratchPool::default();
        let mut s = pool.take();
        s.body.extend_from_slice(&[1; 1000]);
        let cap = s.body.capacity();
        s.batch.samples.push(crate::series::Sample {
            series: crate::series::SeriesRef(1),
            timestamp_ms: 1,
            value: 1.0,
        });
        pool.put(s);
        let again = pool.take();
        assert!(again.body.is_empty() && again.batch.is_empty());
        assert_eq!(again.body.capacity(), cap, "allocation kept");

        let many: Vec<Scratch> = (0..MAX_POOLED + 10).map(|_| pool.take()).collect();
        for s in many {
            pool.put(s);
        }
        assert_eq!(pool.pooled(), MAX_POOLED);
    }

    #[test]
    fn huge_bodies_are_not_kept() {
        let pool = ScratchPool::default();
        let mut s = pool.take();
        s.body.reserve(MAX_POOLED_BODY + 1);
        pool.put(s);
        assert_eq!(pool.pooled(), 0);
    }
}
