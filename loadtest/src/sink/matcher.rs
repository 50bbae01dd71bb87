//! The `match` parameter of `GET /series`: equality matchers only,
//! `name`, `{a="b"}` or `name{a="b",c="d"}`; empty matches everything.

use std::collections::BTreeMap;

/// Label equality matchers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    equal: Vec<(String, String)>,
}

/// A selector that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("series selector {selector:?}: {what}")]
pub struct MatcherError {
    selector: String,
    what: &'static str,
}

impl Matcher {
    /// Parses a selector.
    pub fn parse(selector: &str) -> Result<Matcher, MatcherError> {
        let err = |what| MatcherError {
            selector: selector.to_owned(),
            what,
        };
        let s = selector.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (s[..i].trim(), Some(&s[i..])),
            None => (s, None),
        };
        let mut equal = Vec::new();
        if !name.is_empty() {
            equal.push(("__name__".to_owned(), name.to_owned()));
        }
        if let Some(rest) = rest {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| err("braces do not close"))?;
            for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = part
                    .split_once('=')
                    .ok_or_else(|| err("a matcher has no '='"))?;
                let v = v
                    .trim()
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| err("a value is not double-quoted"))?;
                equal.push((k.trim().to_owned(), v.to_owned()));
            }
        }
        Ok(Matcher { equal })
    }

    /// True when every matcher holds (a missing label equals "").
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.equal
            .iter()
            .all(|(k, v)| labels.get(k).map_or("", String::as_str) == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_labels() {
        let m = Matcher::parse(r#"up{job="a", instance="x:1"}"#).unwrap();
        let labels: BTreeMap<String, String> =
            [("__name__", "up"), ("job", "a"), ("instance", "x:1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert!(m.matches(&labels));
        assert!(!Matcher::parse(r#"{job="b"}"#).unwrap().matches(&labels));
        assert!(Matcher::parse("").unwrap().matches(&labels));
        assert!(Matcher::parse("up{job=a}").is_err());
    }
}
