//! The series a target currently has, by final label set: their refs,
//! whether the WAL has been given their definition since they last went
//! stale, the last timestamp written (to skip duplicates and out-of-order
//! samples) and the scrape that last reported them (for staleness).

use std::collections::HashMap;
use std::sync::Arc;

use promshard_promlib::labels::Labels;

use super::RefAllocator;
use crate::series::{SeriesDef, SeriesRef};

#[derive(Debug)]
pub(crate) struct SeriesEntry {
    pub(crate) series: SeriesRef,
    /// Final labels: target labels, metric relabeling and external labels
    /// applied.
    pub(crate) labels: Arc<Labels>,
    /// A definition was emitted and the series has not gone stale since.
    pub(crate) defined: bool,
    /// Timestamp of the last sample (or stale marker) written.
    pub(crate) last_ts: i64,
    /// Iteration of the last scrape that wrote a sample without an explicit
    /// timestamp (the series takes part in staleness).
    pub(crate) tracked: Option<u64>,
    /// Iteration of the last scrape that mentioned it.
    pub(crate) last_seen: u64,
    /// Iteration of the last successful scrape that had it (0: none).
    pub(crate) committed_iter: u64,
}

impl SeriesEntry {
    pub(crate) fn def(&self) -> SeriesDef {
        SeriesDef {
            series: self.series,
            labels: Labels::clone(&self.labels),
        }
    }
}

/// A slab of entries with a label index.
#[derive(Default)]
pub(crate) struct SeriesTable {
    slots: Vec<Option<SeriesEntry>>,
    free: Vec<u32>,
    by_labels: HashMap<Arc<Labels>, u32>,
}

impl SeriesTable {
    /// The slot of `labels`, created (with a fresh ref) when absent.
    pub(crate) fn get_or_insert(
        &mut self,
        labels: Labels,
        iter: u64,
        refs: &RefAllocator,
    ) -> (u32, SeriesRef) {
        if let Some(&slot) = self.by_labels.get(&labels)
            && let Some(Some(e)) = self.slots.get(slot as usize)
        {
            return (slot, e.series);
        }
        let labels = Arc::new(labels);
        let series = refs.next();
        let entry = SeriesEntry {
            series,
            labels: Arc::clone(&labels),
            defined: false,
            last_ts: i64::MIN,
            tracked: None,
            last_seen: iter,
            committed_iter: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_labels.insert(labels, slot);
        (slot, series)
    }

    /// The entry in `slot` if it still holds `series`.
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32, series: SeriesRef) -> Option<&mut SeriesEntry> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(e)) if e.series == series => Some(e),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, slot: u32) -> Option<&mut SeriesEntry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SeriesEntry> {
        self.slots.iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut SeriesEntry> {
        self.slots.iter_mut().flatten()
    }

    /// Drops entries for which `dead` is true.
    pub(crate) fn prune(&mut self, mut dead: impl FnMut(&SeriesEntry) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(e) = slot
                && dead(e)
            {
                self.by_labels.remove(&e.labels);
                *slot = None;
                self.free.push(i as u32);
            }
        }
    }
}
