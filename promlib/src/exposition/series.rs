//! A parsed sample and its exemplar, borrowing from the body.

use std::borrow::Cow;

use crate::labels::{self, Labels};

/// One sample as written. Label work is lazy: [`Series::raw`] is enough to
/// look up a series already seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) name_len: usize,
    /// The sample value (NaN is Prometheus' canonical NaN).
    pub value: f64,
    /// Text format: the integer milliseconds as written; OpenMetrics: the
    /// float seconds times 1000, truncated as Go's `int64()` does.
    pub timestamp_ms: Option<i64>,
    /// OpenMetrics only.
    pub exemplar: Option<Exemplar<'a>>,
}

impl<'a> Series<'a> {
    /// The metric name and label block exactly as written (no whitespace
    /// after the closing brace), e.g. `http_requests_total{code="200"}`.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The metric name.
    pub fn metric_name(&self) -> &'a str {
        // The parser only accepts ASCII name characters.
        std::str::from_utf8(&self.raw[..self.name_len]).unwrap_or("")
    }

    /// The labels in written order (without `__name__`), values unescaped
    /// only when they hold a backslash.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            block: &self.raw[self.name_len..],
            pos: 0,
            unescape: true,
        }
    }

    /// The label set Prometheus builds: `__name__` plus the labels, sorted.
    pub fn to_labels(&self) -> Labels {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(8);
        pairs.push((
            labels::METRIC_NAME.to_string(),
            self.metric_name().to_string(),
        ));
        pairs.extend(self.labels().map(|(n, v)| (n.to_string(), v.into_owned())));
        Labels::from_pairs(pairs)
    }
}

/// An OpenMetrics exemplar: `# {labels} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar<'a> {
    /// The label block with its braces, as written.
    pub(crate) raw_labels: &'a [u8],
    pub value: f64,
    /// Float seconds times 1000, truncated like Go.
    pub timestamp_ms: Option<i64>,
}

impl<'a> Exemplar<'a> {
    /// The label block with its braces, as written.
    pub fn raw_labels(&self) -> &'a [u8] {
        self.raw_labels
    }

    /// The exemplar's labels. As in Prometheus 2.42, values are *not*
    /// unescaped.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            block: self.raw_labels,
            pos: 0,
            unescape: false,
        }
    }

    /// The exemplar's labels as a sorted set (values as written).
    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.labels().map(|(n, v)| (n.to_string(), v.into_owned())))
    }
}

/// Iterates over a label block the parser has already validated.
#[derive(Clone, Debug)]
pub struct LabelIter<'a> {
    block: &'a [u8],
    pos: usize,
    unescape: bool,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.block;
        let mut i = self.pos;
        // Skip `{`, whitespace and commas before a name.
        while i < b.len() && matches!(b[i], b'{' | b',' | b' ' | b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'}' {
            self.pos = b.len();
            return None;
        }
        let name_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let name = &b[name_start..i];
        while i < b.len() && b[i] != b'"' {
            i += 1;
        }
        i += 1;
        let value_start = i;
        let mut escaped = false;
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' {
                escaped = true;
                i += 1;
            }
            i += 1;
        }
        let value = &b[value_start..i.min(b.len())];
        self.pos = i + 1;
        let name = std::str::from_utf8(name).unwrap_or("");
        let value_str = std::str::from_utf8(value).unwrap_or("");
        let value = if escaped && self.unescape {
            Cow::Owned(unescape_label_value(value_str))
        } else {
            Cow::Borrowed(value_str)
        };
        Some((name, value))
    }
}

/// Prometheus' `lvalReplacer`: `\"`, `\\` and `\n`, left to right; any
/// other backslash pair stays as written.
pub(crate) fn unescape_label_value(s: &str) -> String {
    unescape(s, true)
}

/// Prometheus' `helpReplacer` (text format): `\\` and `\n` only.
pub(crate) fn unescape_help_text(s: &str) -> String {
    unescape(s, false)
}

fn unescape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut look = chars.clone();
        match look.next() {
            Some('\\') => {
                out.push('\\');
                chars = look;
            }
            Some('n') => {
                out.push('\n');
                chars = look;
            }
            Some('"') if quotes => {
                out.push('"');
                chars = look;
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_like_go_replacer() {
        assert_eq!(
            unescape_label_value(r#"a\"b\\c\nd\te\"#),
            "a\"b\\c\nd\\te\\"
        );
        assert_eq!(unescape_label_value(r"\\n"), "\\n");
        assert_eq!(unescape_help_text(r#"\"x\\\n"#), "\\\"x\\\n");
    }
}
