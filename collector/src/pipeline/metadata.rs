//! Metric family metadata (HELP/TYPE/UNIT): changes seen in a scrape are
//! collected while parsing and applied (and emitted) only when the scrape
//! succeeds, so a family is emitted when first seen or changed.
//!
//! Memory: targets of one job mostly report the same families with the
//! same text (a thousand node_exporters), so a family's metadata is held
//! once in the job's [`FamilyInterner`] and a target keeps a reference and
//! the iteration it last saw the family (a few words instead of the name,
//! help and unit strings).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;
use promshard_promlib::exposition::MetricType;

use crate::series::Metadata;

/// Families absent for this many scrapes are forgotten (as Prometheus'
/// scrape cache keeps metadata for 10 scrapes).
const KEEP_ITERATIONS: u32 = 10;

/// One family's metadata as a target reported it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Family {
    name: Box<str>,
    kind: MetricType,
    help: Box<str>,
    unit: Box<str>,
}

impl Family {
    fn to_metadata(&self) -> Metadata {
        Metadata {
            metric_family_name: self.name.to_string(),
            kind: self.kind.as_str().to_string(),
            help: self.help.to_string(),
            unit: self.unit.to_string(),
        }
    }
}

/// The families the targets of one job currently report, each held once.
#[derive(Debug, Default)]
pub struct FamilyInterner {
    set: Mutex<Interned>,
}

#[derive(Debug, Default)]
struct Interned {
    families: HashSet<Arc<Family>>,
    /// Size after the last sweep of families no target holds.
    swept_len: usize,
}

impl FamilyInterner {
    fn intern(&self, family: Family) -> Arc<Family> {
        let mut g = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = g.families.get(&family) {
            return Arc::clone(f);
        }
        // Families only this set holds were dropped by every target.
        if g.families.len() >= 2 * g.swept_len.max(1024) {
            g.families.retain(|f| Arc::strong_count(f) > 1);
            g.swept_len = g.families.len();
        }
        let f = Arc::new(family);
        g.families.insert(Arc::clone(&f));
        f
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.lock().map(|g| g.families.len()).unwrap_or(0)
    }
}

#[derive(Debug)]
enum Change {
    Kind(MetricType),
    Help(String),
    Unit(String),
}

fn name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// A family a target reported, and the iteration that last saw it.
struct Seen {
    family: Arc<Family>,
    last_iter: u32,
}

pub(crate) struct MetadataCache {
    interner: Arc<FamilyInterner>,
    /// By the hash of the family name.
    families: HashTable<Seen>,
    /// Changes seen in the current scrape, by family name.
    pending: Vec<(String, Change)>,
}

impl MetadataCache {
    pub(crate) fn new(interner: Arc<FamilyInterner>) -> Self {
        MetadataCache {
            interner,
            families: HashTable::new(),
            pending: Vec::new(),
        }
    }

    /// Starts a scrape.
    pub(crate) fn begin(&mut self) {
        self.pending.clear();
    }

    pub(crate) fn observe_type(&mut self, name: &str, kind: MetricType, iter: u32) {
        self.observe(name, iter, |f| f.kind == kind, || Change::Kind(kind));
    }

    pub(crate) fn observe_help(&mut self, name: &str, help: &str, iter: u32) {
        self.observe(
            name,
            iter,
            |f| *f.help == *help,
            || Change::Help(help.to_string()),
        );
    }

    pub(crate) fn observe_unit(&mut self, name: &str, unit: &str, iter: u32) {
        self.observe(
            name,
            iter,
            |f| *f.unit == *unit,
            || Change::Unit(unit.to_string()),
        );
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Seen> {
        let hash = name_hash(name);
        self.families.find_mut(hash, |s| *s.family.name == *name)
    }

    /// Marks family `name` seen when `same` holds for it, else records the
    /// change (allocating only then).
    fn observe(
        &mut self,
        name: &str,
        iter: u32,
        same: impl FnOnce(&Family) -> bool,
        change: impl FnOnce() -> Change,
    ) {
        match self.find_mut(name) {
            Some(s) if same(&s.family) => s.last_iter = iter,
            _ => self.pending.push((name.to_string(), change())),
        }
    }

    /// The scrape succeeded: apply its changes, push the changed families
    /// to `out` (each once), forget families unseen for long.
    pub(crate) fn commit(&mut self, iter: u32, out: &mut Vec<Metadata>) {
        let mut pending = std::mem::take(&mut self.pending);
        // Grouped by family; a family's changes stay in their order.
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for group in pending.chunk_by(|a, b| a.0 == b.0) {
            let name = group[0].0.as_str();
            let mut family = match self.find_mut(name) {
                Some(s) => Family {
                    name: s.family.name.clone(),
                    kind: s.family.kind,
                    help: s.family.help.clone(),
                    unit: s.family.unit.clone(),
                },
                None => Family {
                    name: name.into(),
                    kind: MetricType::Unknown,
                    help: "".into(),
                    unit: "".into(),
                },
            };
            for (_, change) in group {
                match change {
                    Change::Kind(k) => family.kind = *k,
                    Change::Help(h) => family.help = h.as_str().into(),
                    Change::Unit(u) => family.unit = u.as_str().into(),
                }
            }
            let family = self.interner.intern(family);
            out.push(family.to_metadata());
            let seen = Seen {
                family,
                last_iter: iter,
            };
            match self.find_mut(name) {
                Some(s) => *s = seen,
                None => {
                    self.families
                        .insert_unique(name_hash(name), seen, |s| name_hash(&s.family.name));
                }
            }
        }
        self.families
            .retain(|s| s.last_iter.saturating_add(KEEP_ITERATIONS) >= iter);
        // `pending` is dropped, not kept: changes are rare after the first
        // scrape, and a thousand targets each keeping room for all their
        // families' first sighting would hold megabytes for nothing.
        drop(pending);
    }

    pub(crate) fn clear_pending(&mut self) {
        self.pending = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(c: &mut MetadataCache, iter: u32, help: &str) -> Vec<Metadata> {
        c.begin();
        c.observe_help("m_total", help, iter);
        c.observe_type("m_total", MetricType::Counter, iter);
        let mut out = Vec::new();
        c.commit(iter, &mut out);
        out
    }

    #[test]
    fn targets_of_a_job_share_one_copy_of_a_family() {
        let interner = Arc::new(FamilyInterner::default());
        let mut a = MetadataCache::new(interner.clone());
        let mut b = MetadataCache::new(interner.clone());
        let first = scrape(&mut a, 1, "Requests.");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].metric_family_name, "m_total");
        assert_eq!(first[0].kind, "counter");
        assert_eq!(first[0].help, "Requests.");
        assert_eq!(scrape(&mut b, 1, "Requests."), first, "b emits it too");
        assert_eq!(interner.len(), 1, "held once");
        assert!(scrape(&mut a, 2, "Requests.").is_empty(), "unchanged");
        let changed = scrape(&mut b, 2, "All requests.");
        assert_eq!(changed[0].help, "All requests.");
        assert_eq!(changed[0].kind, "counter", "type kept");
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn a_failed_scrape_changes_nothing_and_absent_families_are_forgotten() {
        let mut c = MetadataCache::new(Arc::default());
        scrape(&mut c, 1, "h");
        c.begin();
        c.observe_help("m_total", "other", 2);
        c.clear_pending();
        assert!(
            scrape(&mut c, 3, "h").is_empty(),
            "the failed change was not applied"
        );
        let mut out = Vec::new();
        c.begin();
        c.commit(3 + KEEP_ITERATIONS + 1, &mut out);
        assert_eq!(c.families.len(), 0);
        assert_eq!(scrape(&mut c, 20, "h").len(), 1, "emitted again");
    }
}
