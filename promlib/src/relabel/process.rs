//! Applying relabel rules: Prometheus 2.42's `relabel.Process`.

use md5::{Digest, Md5};

use super::{Action, RelabelConfig, expand};
use crate::labels::{Label, Labels, is_valid_label_name};

/// Applies `rules` in order. `None`: the set was dropped (keep, drop,
/// keepequal, dropequal). After any rule, no label has an empty value
/// (Prometheus treats an empty value as absent); with no rules the input is
/// returned as is.
pub fn process(labels: &Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    process_observed(labels, rules, |_| {})
}

/// [`process`], showing `observe` the builder after each rule that kept
/// the set (used to reproduce how Prometheus 2.42 reuses memory).
pub(crate) fn process_observed(
    labels: &Labels,
    rules: &[RelabelConfig],
    mut observe: impl FnMut(&Builder),
) -> Option<Labels> {
    let mut current = labels.clone();
    for rule in rules {
        let builder = apply(current, rule)?;
        observe(&builder);
        current = builder.into_labels();
    }
    Some(current)
}

/// Prometheus' `labels.Builder`: a base set, names deleted, labels added.
/// An empty value counts as absent: `set` with "" deletes, and base labels
/// with empty values are deleted up front.
#[derive(Debug)]
pub(crate) struct Builder {
    base: Labels,
    del: Vec<String>,
    add: Labels,
}

impl Builder {
    pub(crate) fn new(base: Labels) -> Self {
        let del = base
            .iter()
            .filter(|l| l.value.is_empty())
            .map(|l| l.name.clone())
            .collect();
        Builder {
            base,
            del,
            add: Labels::new(),
        }
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
        } else {
            self.add.insert(name, value);
        }
    }

    pub(crate) fn del(&mut self, name: &str) {
        self.add.remove(name);
        self.del.push(name.to_string());
    }

    /// The set the builder started from.
    pub(crate) fn base(&self) -> &Labels {
        &self.base
    }

    /// Whether anything was set or deleted (Go then builds a new set).
    pub(crate) fn modified(&self) -> bool {
        !self.del.is_empty() || !self.add.is_empty()
    }

    /// Base labels neither deleted nor overwritten, in order.
    pub(crate) fn kept(&self) -> Vec<Label> {
        self.base
            .iter()
            .filter(|l| self.keeps(&l.name))
            .cloned()
            .collect()
    }

    /// Whether base label `name` survives (neither deleted nor overwritten).
    fn keeps(&self, name: &str) -> bool {
        !self.del.iter().any(|d| d == name) && !self.add.contains(name)
    }

    /// How many labels were added (or overwritten).
    pub(crate) fn added(&self) -> usize {
        self.add.len()
    }

    /// The resulting set.
    pub(crate) fn labels(&self) -> Labels {
        if !self.modified() {
            return self.base.clone();
        }
        let mut out = Labels::from_sorted(self.kept()).unwrap_or_default();
        for l in self.add.iter() {
            out.insert(l.name.clone(), l.value.clone());
        }
        out
    }

    /// [`Builder::labels`], consuming the builder: an unmodified base is
    /// returned without a copy, and kept labels are moved, not cloned (the
    /// relabel loop runs this once per rule for every new series).
    pub(crate) fn into_labels(mut self) -> Labels {
        if !self.modified() {
            return self.base;
        }
        let mut kept = std::mem::take(&mut self.base).into_vec();
        kept.retain(|l| self.keeps(&l.name));
        let mut out = Labels::from_sorted(kept).unwrap_or_default();
        for l in std::mem::take(&mut self.add).into_vec() {
            out.insert(l.name, l.value);
        }
        out
    }
}

/// One rule, as 2.42's `relabel()`: values are read from the set before
/// the rule, changes go to a builder. `None`: dropped.
fn apply(lset: Labels, rule: &RelabelConfig) -> Option<Builder> {
    let val = joined_value(&lset, rule);
    let regex = &rule.regex;
    let re = regex.compiled();
    let mut lb = Builder::new(lset);
    let lset = &lb.base;
    match rule.action {
        Action::Drop => {
            if re.is_match(&val) {
                return None;
            }
        }
        Action::Keep => {
            if !re.is_match(&val) {
                return None;
            }
        }
        Action::DropEqual => {
            if lset.get(&rule.target_label).unwrap_or_default() == val {
                return None;
            }
        }
        Action::KeepEqual => {
            if lset.get(&rule.target_label).unwrap_or_default() != val {
                return None;
            }
        }
        Action::Replace => {
            let Some(caps) = re.captures(&val) else {
                return Some(lb);
            };
            let target = expand(&rule.target_label, regex, &caps);
            if !is_valid_label_name(&target) {
                // 2.42 deletes the target_label as written (not expanded).
                lb.del(&rule.target_label);
                return Some(lb);
            }
            let res = expand(&rule.replacement, regex, &caps);
            if res.is_empty() {
                lb.del(&rule.target_label);
                return Some(lb);
            }
            lb.set(&target, &res);
        }
        Action::Lowercase => lb.set(&rule.target_label, &go_to_lower(&val)),
        Action::Uppercase => lb.set(&rule.target_label, &go_to_upper(&val)),
        Action::HashMod => {
            // A zero modulus never passes validation; Go would panic, we
            // leave the set unchanged.
            if rule.modulus != 0 {
                let v = hashmod(&val, rule.modulus);
                lb.set(&rule.target_label, &v.to_string());
            }
        }
        Action::LabelMap => {
            let matches: Vec<(String, String)> = lset
                .iter()
                .filter_map(|l| {
                    let caps = re.captures(&l.name)?;
                    Some((expand(&rule.replacement, regex, &caps), l.value.clone()))
                })
                .collect();
            for (name, value) in matches {
                lb.set(&name, &value);
            }
        }
        Action::LabelDrop | Action::LabelKeep => {
            let keep = rule.action == Action::LabelKeep;
            let names: Vec<String> = lset
                .iter()
                .filter(|l| re.is_match(&l.name) != keep)
                .map(|l| l.name.clone())
                .collect();
            for name in names {
                lb.del(&name);
            }
        }
    }
    Some(lb)
}

/// The source label values joined with the separator (absent = empty).
fn joined_value(lset: &Labels, rule: &RelabelConfig) -> String {
    let mut val = String::new();
    for (i, name) in rule.source_labels.iter().enumerate() {
        if i > 0 {
            val.push_str(&rule.separator);
        }
        val.push_str(lset.get(name).unwrap_or_default());
    }
    val
}

/// Prometheus' hashmod: md5 of `val`, its last 8 bytes as a big-endian
/// u64, modulo `modulus` (must not be 0).
pub fn hashmod(val: &str, modulus: u64) -> u64 {
    let sum = Md5::digest(val.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&sum[8..16]);
    u64::from_be_bytes(low) % modulus
}

/// Go's `strings.ToLower`: the simple (one-to-one) lowercase mapping of
/// each character, no context rules (Σ is always σ).
pub fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut it = c.to_lowercase();
            match (it.next(), it.next()) {
                (Some(l), None) => l,
                // Only U+0130 İ has a longer full mapping; its simple one is i.
                _ if c == '\u{130}' => 'i',
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: the simple uppercase mapping of each character
/// (ß stays ß; ᾳ becomes ᾼ).
pub fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut it = c.to_uppercase();
            match (it.next(), it.next()) {
                (Some(u), None) => u,
                _ => simple_upper_of_special(c),
            }
        })
        .collect()
}

/// The simple uppercase of characters whose full uppercase has several
/// characters: the Greek letters with ypogegrammeni map to their
/// titlecase form; the others have no simple mapping.
fn simple_upper_of_special(c: char) -> char {
    let u = c as u32;
    let mapped = match u {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => u + 8,
        0x1FB3 => 0x1FBC,
        0x1FC3 => 0x1FCC,
        0x1FF3 => 0x1FFC,
        _ => u,
    };
    char::from_u32(mapped).unwrap_or(c)
}
