//! OpenMetrics 1.0 text, as Prometheus 2.42's openmetricslex/openmetricsparse
//! accept it: single spaces only, `# HELP`/`# TYPE`/`# UNIT`/`# EOF` the only
//! comments, commas required between labels (no trailing comma), float
//! second timestamps, exemplars on `_total`/`_bucket` samples, `# EOF`
//! required with nothing after it (one final newline allowed). No checks
//! across lines (family grouping, counter values, histogram buckets): those
//! are for [`super::lint`].

use std::borrow::Cow;

use super::float::{go_f64_to_i64, parse_go_float};
use super::parser::{
    Parser, RawError, Step, as_str, err, found, is_label_start, is_name_start, label_end, line_end,
    name_end,
};
use super::series::unescape_label_value;
use super::{Entry, Exemplar, MetricType, Series};

/// End of a `[^ \n]+` run starting at `i`.
#[inline]
fn token_end(b: &[u8], i: usize) -> usize {
    match memchr::memchr2(b' ', b'\n', &b[i.min(b.len())..]) {
        Some(o) => i + o,
        None => b.len(),
    }
}

/// A float-seconds timestamp token at `start` (of a sample or an
/// exemplar), as milliseconds; returns it and the index after it. `or`
/// names what else could have stood there, `invalid` is the message for a
/// non-finite value.
fn om_timestamp(
    b: &[u8],
    start: usize,
    or: &str,
    invalid: &'static str,
) -> Result<(i64, usize), RawError> {
    let end = token_end(b, start);
    if end == start {
        return err(
            end,
            format!("expected timestamp or {or}, got {}", found(b, end)),
        );
    }
    let ts = match parse_go_float(&b[start..end]) {
        Ok(t) => t,
        Err(m) => return err(start, m),
    };
    if !ts.is_finite() {
        return err(start, invalid);
    }
    Ok((go_f64_to_i64(ts * 1000.0), end))
}

fn no_eof<T>(b: &[u8]) -> Result<T, RawError> {
    err(b.len().saturating_sub(1), "data does not end with # EOF")
}

impl<'a> Parser<'a> {
    pub(crate) fn next_openmetrics(&mut self) -> Step<'a> {
        let b = self.b;
        let i = self.pos;
        if self.after_eof {
            if i < b.len() {
                self.done = true;
                self.entry_start = i;
                return err(i, "unexpected data after # EOF");
            }
            return Ok(None);
        }
        if i >= b.len() {
            self.done = true;
            return no_eof(b);
        }
        self.entry_start = i;
        match b[i] {
            b'#' => self.om_comment(i),
            c if is_name_start(c) => self.om_sample(i),
            _ => err(i, format!("{} is not a valid start of a line", found(b, i))),
        }
    }

    fn om_comment(&mut self, i: usize) -> Step<'a> {
        let b = self.b;
        let rest = &b[i..];
        let kind = if rest.starts_with(b"# HELP ") {
            "HELP"
        } else if rest.starts_with(b"# TYPE ") {
            "TYPE"
        } else if rest.starts_with(b"# UNIT ") {
            "UNIT"
        } else if rest.starts_with(b"# EOF") {
            let mut j = i + 5;
            if j < b.len() && b[j] == b'\n' {
                j += 1;
            }
            self.pos = j;
            self.after_eof = true;
            return Ok(Some(Entry::Eof));
        } else {
            return err(
                i,
                "invalid comment: OpenMetrics allows only \"# HELP \", \"# TYPE \", \"# UNIT \" and \"# EOF\"",
            );
        };
        let j = i + 7;
        if j >= b.len() || !is_name_start(b[j]) {
            return err(
                j,
                format!("expected metric name after {kind}, got {}", found(b, j)),
            );
        }
        let k = name_end(b, j);
        let name = as_str(&b[j..k]);
        let e = line_end(b, k);
        if k >= b.len() || b[k] != b' ' || e >= b.len() {
            return err(
                k,
                format!("expected a space and text in {kind}, got {}", found(b, k)),
            );
        }
        let text: &'a [u8] = &b[k + 1..e];
        self.pos = e + 1;
        match kind {
            "HELP" => {
                let Ok(text) = std::str::from_utf8(text) else {
                    return err(k, "help text is not a valid utf8 string");
                };
                let help = if text.contains('\\') {
                    Cow::Owned(unescape_label_value(text))
                } else {
                    Cow::Borrowed(text)
                };
                Ok(Some(Entry::Help { name, help }))
            }
            "TYPE" => {
                let kind = match text {
                    b"counter" => MetricType::Counter,
                    b"gauge" => MetricType::Gauge,
                    b"histogram" => MetricType::Histogram,
                    b"gaugehistogram" => MetricType::GaugeHistogram,
                    b"summary" => MetricType::Summary,
                    b"info" => MetricType::Info,
                    b"stateset" => MetricType::Stateset,
                    b"unknown" => MetricType::Unknown,
                    _ => {
                        return err(
                            k + 1,
                            format!("invalid metric type \"{}\"", text.escape_ascii()),
                        );
                    }
                };
                Ok(Some(Entry::Type { name, kind }))
            }
            _ => {
                let n = name.as_bytes();
                let is_suffix = n.len() > text.len()
                    && n.ends_with(text)
                    && n[n.len() - text.len() - 1] == b'_';
                if !text.is_empty() && !is_suffix {
                    return err(k + 1, format!("unit not a suffix of metric {name:?}"));
                }
                Ok(Some(Entry::Unit {
                    name,
                    unit: as_str(text),
                }))
            }
        }
    }

    #[inline]
    fn om_sample(&mut self, start: usize) -> Step<'a> {
        let b = self.b;
        let mut i = name_end(b, start);
        let name_len = i - start;
        if i < b.len() && b[i] == b'{' {
            self.names.clear();
            i = self.om_labels(i + 1, true)?;
            if !self.names.is_empty() {
                self.check_unique_names()?;
            }
        }
        let raw = &b[start..i];
        let (value, mut i) = self.om_value(i, "metric")?;
        let mut timestamp_ms = None;
        let mut exemplar = None;
        if i >= b.len() {
            return no_eof(b);
        }
        if b[i] == b' ' && !b[i..].starts_with(b" # {") {
            let (ts, end) = om_timestamp(b, i + 1, "# symbol", "invalid timestamp")?;
            timestamp_ms = Some(ts);
            i = end;
            if i < b.len() && b[i] != b'\n' && !b[i..].starts_with(b" # {") {
                return err(
                    i,
                    format!("expected next entry after timestamp, got {}", found(b, i)),
                );
            }
            if i >= b.len() {
                return err(i, "expected next entry after timestamp, got end of input");
            }
        }
        if b[i] == b' ' {
            // " # {": an exemplar.
            let (ex, j) = self.om_exemplar(start, name_len, i)?;
            exemplar = Some(ex);
            i = j;
        }
        self.pos = i + 1;
        Ok(Some(Entry::Series(Series {
            raw,
            name_len,
            value,
            timestamp_ms,
            exemplar,
        })))
    }

    /// ` value` at `i`; returns the value and the index after it.
    #[inline]
    fn om_value(&self, i: usize, after: &str) -> Result<(f64, usize), RawError> {
        let b = self.b;
        if i >= b.len() || b[i] != b' ' {
            return err(
                i,
                format!("expected value after {after}, got {}", found(b, i)),
            );
        }
        let vs = i + 1;
        let ve = token_end(b, vs);
        if ve == vs {
            return err(
                vs,
                format!("expected value after {after}, got {}", found(b, vs)),
            );
        }
        match parse_go_float(&b[vs..ve]) {
            Ok(v) => Ok((v, ve)),
            Err(m) => err(vs, m),
        }
    }

    /// The exemplar at `i` (` # {...} value [ts]`), through the end of the
    /// line; returns it and the index of the newline.
    fn om_exemplar(
        &mut self,
        start: usize,
        name_len: usize,
        i: usize,
    ) -> Result<(Exemplar<'a>, usize), RawError> {
        let b = self.b;
        let name = &b[start..start + name_len];
        if !(name.ends_with(b"_total") || name.ends_with(b"_bucket")) {
            return err(
                i + 1,
                format!("metric name {} does not support exemplars", as_str(name)),
            );
        }
        let ls = i + 3;
        let le = self.om_labels(ls + 1, false)?;
        let (value, mut j) = self.om_value(le, "exemplar labels")?;
        let mut timestamp_ms = None;
        if j >= b.len() {
            return no_eof(b);
        }
        if b[j] == b' ' {
            let (ts, end) = om_timestamp(b, j + 1, "comment", "invalid exemplar timestamp")?;
            timestamp_ms = Some(ts);
            j = end;
            if j >= b.len() || b[j] != b'\n' {
                return err(
                    j,
                    format!(
                        "expected next entry after exemplar timestamp, got {}",
                        found(b, j)
                    ),
                );
            }
        }
        Ok((
            Exemplar {
                raw_labels: &b[ls..le],
                value,
                timestamp_ms,
            },
            j,
        ))
    }

    /// Labels after `{`; returns the index after `}`. Records names for the
    /// uniqueness check when `record`.
    fn om_labels(&mut self, mut i: usize, record: bool) -> Result<usize, RawError> {
        let b = self.b;
        if i < b.len() && b[i] == b'}' {
            return Ok(i + 1);
        }
        let mut first = true;
        loop {
            if i >= b.len() || !is_label_start(b[i]) {
                let what = if first {
                    "expected label name or '}'"
                } else {
                    "expected label name after ','"
                };
                return err(i, format!("{what}, got {}", found(b, i)));
            }
            first = false;
            let ns = i;
            i = label_end(b, i);
            if record {
                self.names.push((ns as u32, i as u32));
            }
            if i >= b.len() || b[i] != b'=' {
                return err(
                    i,
                    format!("expected equal after label name, got {}", found(b, i)),
                );
            }
            i += 1;
            if i >= b.len() || b[i] != b'"' {
                return err(
                    i,
                    format!("expected quoted label value, got {}", found(b, i)),
                );
            }
            let vs = i + 1;
            let mut k = vs;
            loop {
                match memchr::memchr3(b'"', b'\\', b'\n', &b[k.min(b.len())..]) {
                    None => return err(vs - 1, "unterminated label value"),
                    Some(o) => {
                        k += o;
                        match b[k] {
                            b'"' => break,
                            b'\n' => {
                                return err(vs - 1, "unterminated label value (newline)");
                            }
                            _ => {
                                if k + 1 >= b.len() || b[k + 1] == b'\n' {
                                    return err(
                                        k,
                                        "unterminated label value (backslash at end of line)",
                                    );
                                }
                                k += 2;
                            }
                        }
                    }
                }
            }
            if std::str::from_utf8(&b[vs..k]).is_err() {
                return err(vs, "invalid UTF-8 label value");
            }
            i = k + 1;
            match b.get(i) {
                Some(b'}') => return Ok(i + 1),
                Some(b',') => i += 1,
                Some(&c) if is_label_start(c) => {
                    return err(i, "expected ',' between labels");
                }
                _ => {
                    return err(
                        i,
                        format!(
                            "expected ',' or '}}' after label value, got {}",
                            found(b, i)
                        ),
                    );
                }
            }
        }
    }
}
