//! The parser shell shared by both formats: position, error recovery and
//! lazily computed line numbers (the hot path never counts lines).

use super::{Entry, Format, ParseError, ParseErrorKind};

/// An error found at byte `pos`, not yet given its line.
pub(crate) struct RawError {
    pub(crate) pos: usize,
    pub(crate) message: String,
    pub(crate) kind: ParseErrorKind,
}

pub(crate) type Step<'a> = Result<Option<Entry<'a>>, RawError>;

pub(crate) fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, RawError> {
    Err(RawError {
        pos,
        message: message.into(),
        kind: ParseErrorKind::Syntax,
    })
}

/// A repeated label name at byte `pos` (see [`ParseErrorKind::RepeatedLabelName`]).
fn repeated<T>(pos: usize, message: impl Into<String>) -> Result<T, RawError> {
    Err(RawError {
        pos,
        message: message.into(),
        kind: ParseErrorKind::RepeatedLabelName,
    })
}

/// Iterates over the entries of an exposition body.
///
/// Prometheus stops a scrape at the first error; this iterator instead
/// resumes at the next line so that [`super::lint`] can report every problem.
/// A scrape loop must stop at the first `Err`.
pub struct Parser<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
    format: Format,
    pub(crate) done: bool,
    /// OpenMetrics: `# EOF` was returned; only the end may follow.
    pub(crate) after_eof: bool,
    /// Start of the last entry returned (or of the error); set by the
    /// format code.
    pub(crate) entry_start: usize,
    /// Line-number cache: `line_at_pos` is the 1-based line of `line_pos`.
    line_pos: usize,
    line_at_pos: usize,
    /// Scratch for duplicate label name detection: (start, end) of names.
    pub(crate) names: Vec<(u32, u32)>,
    /// Scratch for large label sets.
    pub(crate) sorted: Vec<&'a [u8]>,
}

impl<'a> Parser<'a> {
    /// A parser over `body` in `format`.
    pub fn new(body: &'a [u8], format: Format) -> Self {
        Parser {
            b: body,
            pos: 0,
            format,
            done: false,
            after_eof: false,
            entry_start: 0,
            line_pos: 0,
            line_at_pos: 1,
            names: Vec::new(),
            sorted: Vec::new(),
        }
    }

    /// The format being parsed.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The 1-based line on which the last returned entry (or error) starts.
    /// Amortized O(1) when called after each entry.
    pub fn line(&mut self) -> usize {
        self.line_of(self.entry_start)
    }

    fn line_of(&mut self, pos: usize) -> usize {
        let pos = pos.min(self.b.len());
        if pos < self.line_pos {
            self.line_pos = 0;
            self.line_at_pos = 1;
        }
        self.line_at_pos += memchr::memchr_iter(b'\n', &self.b[self.line_pos..pos]).count();
        self.line_pos = pos;
        self.line_at_pos
    }

    /// Resumes after an error at `pos`: at the start of the next line.
    fn skip_line_after(&mut self, pos: usize) {
        let from = pos.min(self.b.len());
        self.pos = match memchr::memchr(b'\n', &self.b[from..]) {
            Some(i) => from + i + 1,
            None => self.b.len(),
        };
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = match self.format {
            Format::Text => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match step {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.entry_start = e.pos;
                let line = self.line_of(e.pos);
                self.skip_line_after(e.pos);
                Some(Err(ParseError {
                    line,
                    message: e.message,
                    kind: e.kind,
                }))
            }
        }
    }
}

impl<'a> Parser<'a> {
    /// Fails when a label name recorded in `names` repeats, or is
    /// `__name__` (which the metric name already sets), as Prometheus'
    /// appender does ("label name ... is not unique").
    pub(crate) fn check_unique_names(&mut self) -> Result<(), RawError> {
        let b = self.b;
        let n = self.names.len();
        let name = |(s, e): (u32, u32)| &b[s as usize..e as usize];
        for &r in &self.names {
            if name(r) == crate::labels::METRIC_NAME.as_bytes() {
                return repeated(r.0 as usize, "label name \"__name__\" is not unique");
            }
        }
        if n <= 16 {
            for i in 1..n {
                for j in 0..i {
                    if name(self.names[i]) == name(self.names[j]) {
                        return repeated(self.names[i].0 as usize, not_unique(name(self.names[i])));
                    }
                }
            }
            return Ok(());
        }
        self.sorted.clear();
        self.sorted.extend(self.names.iter().map(|&r| name(r)));
        self.sorted.sort_unstable();
        for w in self.sorted.windows(2) {
            if w[0] == w[1] {
                let dup = w[0];
                let at = self
                    .names
                    .iter()
                    .rev()
                    .find(|&&r| name(r) == dup)
                    .map_or(self.pos, |r| r.0 as usize);
                return repeated(at, not_unique(dup));
            }
        }
        Ok(())
    }
}

fn not_unique(name: &[u8]) -> String {
    format!(
        "label name {:?} is not unique",
        String::from_utf8_lossy(name)
    )
}

const NAME_START: u8 = 1;
const NAME_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

/// Character classes: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
/// `[a-zA-Z_][a-zA-Z0-9_]*`.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        if alpha || b == b':' {
            t[c] |= NAME_START | NAME_CHAR;
        }
        if b.is_ascii_digit() {
            t[c] |= NAME_CHAR | LABEL_CHAR;
        }
        if alpha {
            t[c] |= LABEL_START | LABEL_CHAR;
        }
        c += 1;
    }
    t
};

#[inline]
pub(crate) fn is_name_start(c: u8) -> bool {
    CLASS[c as usize] & NAME_START != 0
}

/// End of the run of metric name characters starting at `i`.
#[inline]
pub(crate) fn name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CLASS[b[i] as usize] & NAME_CHAR != 0 {
        i += 1;
    }
    i
}

#[inline]
pub(crate) fn is_label_start(c: u8) -> bool {
    CLASS[c as usize] & LABEL_START != 0
}

/// End of the run of label name characters starting at `i`.
#[inline]
pub(crate) fn label_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && CLASS[b[i] as usize] & LABEL_CHAR != 0 {
        i += 1;
    }
    i
}

/// What is at `i`, for error messages.
pub(crate) fn found(b: &[u8], i: usize) -> String {
    match b.get(i) {
        None => "end of input".to_string(),
        Some(b'\n') => "end of line".to_string(),
        Some(_) => {
            let end = (i + 16).min(b.len());
            let end = memchr::memchr(b'\n', &b[i..end]).map_or(end, |e| i + e);
            format!("\"{}\"", b[i..end].escape_ascii())
        }
    }
}

/// `b[i..]` without `\n`: its end.
#[inline]
pub(crate) fn line_end(b: &[u8], i: usize) -> usize {
    match memchr::memchr(b'\n', &b[i.min(b.len())..]) {
        Some(e) => i + e,
        None => b.len(),
    }
}

/// Validated UTF-8 as `&str` (the caller has checked, or the bytes are
/// ASCII name characters).
#[inline]
pub(crate) fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}
