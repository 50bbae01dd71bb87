//! Service discovery: target groups from `static_configs` and
//! `file_sd_configs`.

use crate::labels::Labels;

/// A group of targets from one source, as Prometheus' `targetgroup.Group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where the group came from (e.g. `0` for the first static config, or
    /// `path/file.yml:2` for the third group of a file).
    pub source: String,
    /// One label set per target (at least `__address__`).
    pub targets: Vec<Labels>,
    /// Labels common to all targets of the group.
    pub labels: Labels,
}

impl TargetGroup {
    /// Each target's labels merged with the group labels (target labels win),
    /// in the group's order.
    pub fn merged_targets(&self) -> impl Iterator<Item = Labels> + '_ {
        self.targets.iter().map(|t| {
            let mut l = t.clone();
            for g in self.labels.iter() {
                if !l.contains(&g.name) {
                    l.insert(g.name.clone(), g.value.clone());
                }
            }
            l
        })
    }
}
