//! Prometheus text format 0.0.4, as Prometheus 2.42's promlex/promparse
//! accept it: spaces and tabs between any tokens, optional commas between
//! labels (one trailing comma allowed), raw newlines inside label values,
//! `# HELP`/`# TYPE` with the text after one separator byte, any other `#`
//! line a comment, blank lines skipped, a NUL byte at the start of a line
//! ends the body, integer millisecond timestamps.

use std::borrow::Cow;

use super::float::{parse_go_float, parse_go_int};
use super::parser::{
    Parser, RawError, Step, as_str, err, found, is_label_start, is_name_start, label_end, line_end,
    name_end,
};
use super::series::unescape_help_text;
use super::{Entry, MetricType, Series};

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// The byte at `i`, with the newline Prometheus appends to every body.
#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    if i < b.len() { b[i] } else { b'\n' }
}

impl<'a> Parser<'a> {
    pub(crate) fn next_text(&mut self) -> Step<'a> {
        let b = self.b;
        loop {
            let i = skip_ws(b, self.pos);
            if i >= b.len() {
                return Ok(None);
            }
            self.entry_start = i;
            return match b[i] {
                0 => Ok(None),
                b'\n' => {
                    self.pos = i + 1;
                    continue;
                }
                b'#' => self.text_comment(i),
                c if is_name_start(c) => self.text_sample(i),
                _ => err(i, format!("{} is not a valid start of a line", found(b, i))),
            };
        }
    }

    fn text_comment(&mut self, i: usize) -> Step<'a> {
        let b = self.b;
        let e = line_end(b, i);
        let j = i + 1;
        if j < e && (b[j] == b' ' || b[j] == b'\t') {
            let j = skip_ws(b, j);
            let rest = &b[j..e];
            if rest.len() > 4 && (rest[4] == b' ' || rest[4] == b'\t') {
                if rest.starts_with(b"HELP") {
                    return self.text_meta(true, j + 4, e);
                }
                if rest.starts_with(b"TYPE") {
                    return self.text_meta(false, j + 4, e);
                }
            }
        }
        self.pos = e + 1;
        Ok(Some(Entry::Comment(&b[i..e])))
    }

    fn text_meta(&mut self, help: bool, j: usize, e: usize) -> Step<'a> {
        let b = self.b;
        let what = if help { "HELP" } else { "TYPE" };
        let j = skip_ws(b, j);
        if j >= e || !is_name_start(b[j]) {
            return err(
                j,
                format!("expected metric name after {what}, got {}", found(b, j)),
            );
        }
        let k = name_end(b, j);
        let name = as_str(&b[j..k]);
        let rest = &b[k..e];
        if rest.first() == Some(&0) {
            return err(k, "linebreak expected after metadata, got a NUL byte");
        }
        // The lexer takes the rest of the line minus its first byte; a rest
        // of only blanks is an empty text.
        let text: &'a [u8] = if rest.iter().all(|c| matches!(c, b' ' | b'\t' | 0)) {
            &[]
        } else {
            &rest[1..]
        };
        self.pos = e + 1;
        if help {
            let Ok(text) = std::str::from_utf8(text) else {
                return err(k, "help text is not a valid utf8 string");
            };
            let help = if text.contains('\\') {
                Cow::Owned(unescape_help_text(text))
            } else {
                Cow::Borrowed(text)
            };
            return Ok(Some(Entry::Help { name, help }));
        }
        let kind = match text {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            _ => {
                return err(
                    k,
                    format!("invalid metric type \"{}\"", text.escape_ascii()),
                );
            }
        };
        Ok(Some(Entry::Type { name, kind }))
    }

    #[inline]
    fn text_sample(&mut self, start: usize) -> Step<'a> {
        let b = self.b;
        let name_len = name_end(b, start) - start;
        let mut i = skip_ws(b, start + name_len);
        let mut raw_end = start + name_len;
        if at(b, i) == b'{' {
            self.names.clear();
            i = self.text_labels(i + 1)?;
            raw_end = i;
            if !self.names.is_empty() {
                self.check_unique_names()?;
            }
            i = skip_ws(b, i);
        }
        let vstart = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'{' | 0) {
            i += 1;
        }
        if i == vstart {
            return err(
                i,
                format!("expected value after metric, got {}", found(b, i)),
            );
        }
        let value = match parse_go_float(&b[vstart..i]) {
            Ok(v) => v,
            Err(m) => return err(vstart, m),
        };
        i = skip_ws(b, i);
        let mut timestamp_ms = None;
        match at(b, i) {
            b'\n' => {}
            c if c.is_ascii_digit() => {
                let ts_start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                timestamp_ms = match parse_go_int(&b[ts_start..i]) {
                    Ok(t) => Some(t),
                    Err(m) => return err(ts_start, m),
                };
                i = skip_ws(b, i);
                if at(b, i) != b'\n' {
                    return err(
                        i,
                        format!("expected next entry after timestamp, got {}", found(b, i)),
                    );
                }
            }
            _ => {
                return err(
                    i,
                    format!("expected timestamp or new record, got {}", found(b, i)),
                );
            }
        }
        self.pos = i + 1;
        Ok(Some(Entry::Series(Series {
            raw: &b[start..raw_end],
            name_len,
            value,
            timestamp_ms,
            exemplar: None,
        })))
    }

    /// Parses labels after `{`; returns the index after `}`.
    fn text_labels(&mut self, mut i: usize) -> Result<usize, RawError> {
        let b = self.b;
        loop {
            i = skip_ws(b, i);
            let c = at(b, i);
            if c == b'}' {
                return Ok(i + 1);
            }
            if !is_label_start(c) {
                return err(i, format!("expected label name, got {}", found(b, i)));
            }
            let ns = i;
            i = label_end(b, i);
            self.names.push((ns as u32, i as u32));
            i = skip_ws(b, i);
            if at(b, i) != b'=' {
                return err(
                    i,
                    format!("expected equal after label name, got {}", found(b, i)),
                );
            }
            i = skip_ws(b, i + 1);
            if at(b, i) != b'"' {
                return err(
                    i,
                    format!("expected quoted label value, got {}", found(b, i)),
                );
            }
            let vs = i + 1;
            let mut k = vs;
            loop {
                match memchr::memchr2(b'"', b'\\', &b[k.min(b.len())..]) {
                    None => return err(vs - 1, "unterminated label value"),
                    Some(o) => {
                        k += o;
                        if b[k] == b'"' {
                            break;
                        }
                        // `\` escapes any byte but a newline.
                        if k + 1 >= b.len() || b[k + 1] == b'\n' {
                            return err(k, "unterminated label value (backslash at end of line)");
                        }
                        k += 2;
                    }
                }
            }
            if std::str::from_utf8(&b[vs..k]).is_err() {
                return err(vs, "invalid UTF-8 label value");
            }
            i = skip_ws(b, k + 1);
            if at(b, i) == b',' {
                i += 1;
            }
        }
    }
}
