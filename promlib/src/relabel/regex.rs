//! Regexes with Go RE2 semantics, fully anchored as Prometheus anchors them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A relabel regex that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regex {pattern:?}: {reason}")]
pub struct RegexError {
    pub pattern: String,
    pub reason: String,
}

/// An anchored regex (`^(?:pattern)$`), keeping the original pattern for
/// printing and serialization.
#[derive(Clone)]
pub struct Regex {
    original: String,
    compiled: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` with Go RE2 semantics, anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        let anchored = format!("^(?:{pattern})$");
        let compiled = regex::Regex::new(&anchored).map_err(|e| RegexError {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Regex {
            original: pattern.to_string(),
            compiled,
        })
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The compiled, anchored regex.
    pub fn compiled(&self) -> &regex::Regex {
        &self.compiled
    }
}

impl Default for Regex {
    /// Prometheus' default relabel regex: `(.*)`.
    fn default() -> Self {
        Regex::new("(.*)").expect("the default regex compiles")
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.original == other.original
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.original)
    }
}

impl Serialize for Regex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.original)
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s).map_err(serde::de::Error::custom)
    }
}
