//! Label sets as Prometheus has them: validated names, sorted by name, unique
//! names, canonical bytes and a stable xxh3 hash.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";
/// The address of a target.
pub const ADDRESS: &str = "__address__";
/// The scheme of a target (`http` or `https`).
pub const SCHEME: &str = "__scheme__";
/// The path a target is scraped on.
pub const METRICS_PATH: &str = "__metrics_path__";
/// A target's scrape interval.
pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
/// A target's scrape timeout.
pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
/// Prefix of labels that become URL parameters.
pub const PARAM_PREFIX: &str = "__param_";
/// Prefix of labels only available during relabeling.
pub const META_PREFIX: &str = "__meta_";
/// Prefix of temporary labels for relabeling.
pub const TMP_PREFIX: &str = "__tmp_";
/// Prefix of every reserved label; such labels are dropped after relabeling.
pub const RESERVED_PREFIX: &str = "__";
/// The job label.
pub const JOB: &str = "job";
/// The instance label.
pub const INSTANCE: &str = "instance";

/// Separator between names and values in canonical bytes (as Prometheus'
/// `labels.Hash`: 0xff never occurs in UTF-8).
pub const SEP: u8 = 0xff;

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// One label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A set of labels sorted by name with unique names.
///
/// Empty values are allowed in the set (Prometheus keeps them during
/// discovery); [`Labels::without_empty`] drops them where Prometheus does.
/// Serializes as a JSON/YAML map, like Prometheus' `model.LabelSet`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty set.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a set from pairs in any order; for repeated names the last wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        // Stable sort keeps input order among equal names; keep the last.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Builds a set from labels already sorted by name with unique names.
    /// Returns `None` when they are not.
    pub fn from_sorted(labels: Vec<Label>) -> Option<Self> {
        if labels.windows(2).all(|w| w[0].name < w[1].name) {
            Some(Labels(labels))
        } else {
            None
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Whether a label `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Sets `name` to `value` (an empty value is kept; use [`Labels::remove`]
    /// to delete).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        match self.0.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) => self.0[i].value = value.into(),
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => Some(self.0.remove(i).value),
            Err(_) => None,
        }
    }

    /// Keeps only the labels for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&Label) -> bool) {
        self.0.retain(f)
    }

    /// The set without labels whose value is empty.
    pub fn without_empty(mut self) -> Self {
        self.0.retain(|l| !l.value.is_empty());
        self
    }

    /// Canonical bytes: `name 0xff value 0xff` for each label in order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.0
                .iter()
                .map(|l| l.name.len() + l.value.len() + 2)
                .sum(),
        );
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        for l in &self.0 {
            out.extend_from_slice(l.name.as_bytes());
            out.push(SEP);
            out.extend_from_slice(l.value.as_bytes());
            out.push(SEP);
        }
    }

    /// The set whose [`Labels::canonical_bytes`] are `bytes` (for a compact
    /// store of label sets). `None` when `bytes` are not canonical bytes of
    /// a set: a name or value that is not UTF-8, a missing separator, names
    /// not sorted or not unique.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Option<Labels> {
        let mut fields = bytes.split(|&b| b == SEP);
        // Canonical bytes end with a separator: the last field is empty.
        let mut out = Vec::with_capacity(bytes.iter().filter(|&&b| b == SEP).count() / 2);
        loop {
            let name = fields.next()?;
            let Some(value) = fields.next() else {
                // Only the empty tail after the final separator is left.
                if !name.is_empty() {
                    return None;
                }
                break;
            };
            out.push(Label {
                name: std::str::from_utf8(name).ok()?.to_owned(),
                value: std::str::from_utf8(value).ok()?.to_owned(),
            });
        }
        Labels::from_sorted(out)
    }

    /// Stable 64-bit hash: xxh3 over [`Labels::canonical_bytes`]. Never
    /// changes between runs, hosts or versions.
    pub fn stable_hash(&self) -> u64 {
        let mut h = Xxh3::new();
        for l in &self.0 {
            h.update(l.name.as_bytes());
            h.update(&[SEP]);
            h.update(l.value.as_bytes());
            h.update(&[SEP]);
        }
        h.digest()
    }

    /// Labels whose name does not start with `__`.
    pub fn public(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_PREFIX))
                .cloned()
                .collect(),
        )
    }
}

/// A target's stable id: xxh3 over the job name, a separator, and the
/// canonical bytes of its final labels.
pub fn target_id(job_name: &str, labels: &Labels) -> u64 {
    let mut h = Xxh3::new();
    h.update(job_name.as_bytes());
    h.update(&[SEP]);
    for l in labels.iter() {
        h.update(l.name.as_bytes());
        h.update(&[SEP]);
        h.update(l.value.as_bytes());
        h.update(&[SEP]);
    }
    h.digest()
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Labels {
    /// `{a="1", b="2"}` with Go-style escaping, as Prometheus prints labels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in &self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to string values")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<String>>()? {
                    if !is_valid_label_name(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "\"{k}\" is not a valid label name"
                        )));
                    }
                    if pairs.iter().any(|(n, _)| *n == k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate label name \"{k}\""
                        )));
                    }
                    pairs.push((k, v.unwrap_or_default()));
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_like_prometheus() {
        assert!(is_valid_label_name("a_1"));
        assert!(is_valid_label_name("_x"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name(""));
        assert!(!is_valid_label_name("é"));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(is_valid_metric_name(":x"));
        assert!(!is_valid_metric_name("0x"));
    }

    #[test]
    fn from_pairs_sorts_and_keeps_last_duplicate() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("b", "3")]);
        assert_eq!(l.as_slice(), &[Label::new("a", "2"), Label::new("b", "3")]);
    }

    #[test]
    fn hash_is_stable_and_order_independent() {
        let a = Labels::from_pairs([("job", "x"), ("instance", "h:1")]);
        let b = Labels::from_pairs([("instance", "h:1"), ("job", "x")]);
        assert_eq!(a.stable_hash(), b.stable_hash());
        // Pinned value: the hash must never change between versions.
        assert_eq!(
            a.stable_hash(),
            xxhash_rust::xxh3::xxh3_64(&a.canonical_bytes())
        );
        assert_ne!(target_id("j1", &a), target_id("j2", &a));
        // Name/value boundaries matter.
        let c = Labels::from_pairs([("a", "bc")]);
        let d = Labels::from_pairs([("ab", "c")]);
        assert_ne!(c.stable_hash(), d.stable_hash());
    }

    #[test]
    fn canonical_bytes_round_trip() {
        for l in [
            Labels::new(),
            Labels::from_pairs([("__name__", "up"), ("a", ""), ("job", "x y\u{e9}")]),
            Labels::from_pairs([("z", "1")]),
        ] {
            assert_eq!(Labels::from_canonical_bytes(&l.canonical_bytes()), Some(l));
        }
        // Missing final separator, odd field count, unsorted, repeated,
        // not UTF-8.
        assert_eq!(Labels::from_canonical_bytes(b"a\xff1"), None);
        assert_eq!(Labels::from_canonical_bytes(b"a\xff1\xffb\xff"), None);
        assert_eq!(Labels::from_canonical_bytes(b"b\xff1\xffa\xff2\xff"), None);
        assert_eq!(Labels::from_canonical_bytes(b"a\xff1\xffa\xff2\xff"), None);
        assert_eq!(Labels::from_canonical_bytes(b"a\xff\xfe\xff"), None);
    }

    #[test]
    fn insert_remove_get() {
        let mut l = Labels::new();
        l.insert("z", "1");
        l.insert("a", "2");
        l.insert("z", "3");
        assert_eq!(l.get("z"), Some("3"));
        assert_eq!(l.remove("a").as_deref(), Some("2"));
        assert_eq!(l.len(), 1);
        assert_eq!(l.to_string(), "{z=\"3\"}");
    }

    #[test]
    fn serde_as_map() {
        let l: Labels = serde_json::from_str(r#"{"b":"2","a":"1"}"#).unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"a":"1","b":"2"}"#);
        assert!(serde_json::from_str::<Labels>(r#"{"1b":"2"}"#).is_err());
    }
}
