//! Applying relabel rules: Prometheus 2.42's `relabel.Process`.

use md5::{Digest, Md5};

use super::{Action, RelabelConfig, expand};
use crate::labels::{Labels, is_valid_label_name};

/// Applies `rules` in order. `None`: the set was dropped (keep, drop,
/// keepequal, dropequal). After any rule, no label has an empty value
/// (Prometheus treats an empty value as absent); with no rules the input is
/// returned as is.
pub fn process(labels: &Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    let mut current = labels.clone();
    for rule in rules {
        current = apply(current.without_empty(), rule)?;
    }
    Some(current)
}

/// Sets `name`; an empty value deletes it (labels.Builder.Set).
fn set(lset: &mut Labels, name: &str, value: &str) {
    if value.is_empty() {
        lset.remove(name);
    } else {
        lset.insert(name, value);
    }
}

fn apply(mut lset: Labels, rule: &RelabelConfig) -> Option<Labels> {
    let val = joined_value(&lset, rule);
    let regex = &rule.regex;
    let re = regex.compiled();
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
                return Some(lset);
            };
            let target = expand(&rule.target_label, regex, &caps);
            if !is_valid_label_name(&target) {
                // 2.42 deletes the target_label as written (not expanded).
                lset.remove(&rule.target_label);
                return Some(lset);
            }
            let res = expand(&rule.replacement, regex, &caps);
            if res.is_empty() {
                lset.remove(&rule.target_label);
                return Some(lset);
            }
            lset.insert(target, res);
        }
        Action::Lowercase => {
            let v = go_to_lower(&val);
            set(&mut lset, &rule.target_label, &v);
        }
        Action::Uppercase => {
            let v = go_to_upper(&val);
            set(&mut lset, &rule.target_label, &v);
        }
        Action::HashMod => {
            // A zero modulus never passes validation; Go would panic, we
            // leave the set unchanged.
            if rule.modulus != 0 {
                let v = hashmod(&val, rule.modulus);
                set(&mut lset, &rule.target_label, &v.to_string());
            }
        }
        Action::LabelMap => {
            let snapshot = lset.clone();
            for l in snapshot.iter() {
                if let Some(caps) = re.captures(&l.name) {
                    let name = expand(&rule.replacement, regex, &caps);
                    set(&mut lset, &name, &l.value);
                }
            }
        }
        Action::LabelDrop => lset.retain(|l| !re.is_match(&l.name)),
        Action::LabelKeep => lset.retain(|l| re.is_match(&l.name)),
    }
    Some(lset)
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
