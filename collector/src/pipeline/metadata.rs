//! Metric family metadata (HELP/TYPE/UNIT): changes seen in a scrape are
//! collected while parsing and applied (and emitted) only when the scrape
//! succeeds, so a family is emitted when first seen or changed.

use std::collections::HashMap;

use promshard_promlib::exposition::MetricType;

use crate::series::Metadata;

/// Families absent for this many scrapes are forgotten (as Prometheus'
/// scrape cache keeps metadata for 10 scrapes).
const KEEP_ITERATIONS: u32 = 10;

#[derive(Debug)]
struct Family {
    kind: MetricType,
    help: String,
    unit: String,
    last_iter: u32,
}

#[derive(Debug)]
enum Change {
    Kind(MetricType),
    Help(String),
    Unit(String),
}

#[derive(Default)]
pub(crate) struct MetadataCache {
    families: HashMap<String, Family>,
    /// Changes seen in the current scrape, by family name.
    pending: Vec<(String, Change)>,
}

impl MetadataCache {
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
            |f| f.help == help,
            || Change::Help(help.to_string()),
        );
    }

    pub(crate) fn observe_unit(&mut self, name: &str, unit: &str, iter: u32) {
        self.observe(
            name,
            iter,
            |f| f.unit == unit,
            || Change::Unit(unit.to_string()),
        );
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
        match self.families.get_mut(name) {
            Some(f) if same(f) => f.last_iter = iter,
            _ => self.pending.push((name.to_string(), change())),
        }
    }

    /// The scrape succeeded: apply its changes, push the changed families
    /// to `out` (each once), forget families unseen for long.
    pub(crate) fn commit(&mut self, iter: u32, out: &mut Vec<Metadata>) {
        let mut changed: Vec<String> = Vec::new();
        for (name, change) in self.pending.drain(..) {
            let f = self.families.entry(name.clone()).or_insert(Family {
                kind: MetricType::Unknown,
                help: String::new(),
                unit: String::new(),
                last_iter: iter,
            });
            f.last_iter = iter;
            match change {
                Change::Kind(k) => f.kind = k,
                Change::Help(h) => f.help = h,
                Change::Unit(u) => f.unit = u,
            }
            if !changed.contains(&name) {
                changed.push(name);
            }
        }
        for name in changed {
            if let Some(f) = self.families.get(&name) {
                out.push(Metadata {
                    metric_family_name: name,
                    kind: f.kind.as_str().to_string(),
                    help: f.help.clone(),
                    unit: f.unit.clone(),
                });
            }
        }
        self.families
            .retain(|_, f| f.last_iter.saturating_add(KEEP_ITERATIONS) >= iter);
    }

    pub(crate) fn clear_pending(&mut self) {
        self.pending.clear();
    }
}
