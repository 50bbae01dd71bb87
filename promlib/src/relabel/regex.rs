//! Regexes with Go RE2 semantics, fully anchored as Prometheus anchors them.
//!
//! Prometheus compiles relabel regexes with Go's `regexp` package. Rust's
//! `regex` crate is close but not equal, so [`Regex::new`] first parses the
//! pattern with Go's grammar (rejecting what Go rejects) and rewrites it into
//! an equivalent Rust pattern:
//!
//! | Go                         | Rust pattern emitted                     |
//! |----------------------------|------------------------------------------|
//! | `\d` `\w` `\s` (ASCII)     | `[0-9]` `[0-9A-Za-z_]` `[\t\n\f\r ]`     |
//! | `\D` `\W` `\S`             | the negated ASCII classes                |
//! | `\b` `\B` (ASCII)          | `(?-u:\b)` `(?-u:\B)`                    |
//! | `\Q...\E`                  | each character as an escaped literal     |
//! | octal `\123`, `\0`         | `\x{53}`, `\x{0}`                        |
//! | literal `{` (not a repeat) | `\x{7b}`                                 |
//! | `\<` `\>` (literals in Go) | `\x{3c}` `\x{3e}`                        |
//! | `[a&&b]`, `[a[b]` (Go: literals) | escaped literals, no set operations |
//! | `\p{^Greek}`               | `\P{Greek}`                              |
//!
//! Go errors that Rust would accept are reported: repeat counts above 1000,
//! nested repetition operators (`a**`), `(?<name>...)`, flags other than
//! `imsU`, a lone `\1` (backreference), `\C`, `\Z`, unknown POSIX classes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A relabel regex that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error parsing regexp: {reason}")]
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
    /// Go's name of each capture group by index (0: the whole match).
    group_names: Vec<Option<String>>,
    /// True only for the value built by [`Regex::default`]: Prometheus
    /// compares the default regex by identity (a `regex: (.*)` written in
    /// the config is not "the default" for `keepequal`/`dropequal`).
    implicit_default: bool,
}

/// Go's limit on `{n,m}` counts.
const MAX_REPEAT: u32 = 1000;

impl Regex {
    /// Compiles `pattern` with Go RE2 semantics, anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        let err = |reason: String| RegexError {
            pattern: pattern.to_string(),
            reason,
        };
        // Go parses the anchored text as one pattern, so a pattern can
        // interact with the anchors (`a)|(b`, an unterminated `\Q`).
        let (translated, group_names) = translate(&format!("^(?:{pattern})$")).map_err(err)?;
        let compiled = regex::RegexBuilder::new(&translated)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| err(format!("{e}")))?;
        Ok(Regex {
            original: pattern.to_string(),
            compiled,
            group_names,
            implicit_default: false,
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

    /// Go's name of each capture group by index (0: the whole match).
    pub fn group_names(&self) -> &[Option<String>] {
        &self.group_names
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.compiled.is_match(s)
    }

    /// Whether this is the implicit default (the rule did not set `regex`).
    pub fn is_implicit_default(&self) -> bool {
        self.implicit_default
    }
}

impl Default for Regex {
    /// Prometheus' default relabel regex: `(.*)`.
    fn default() -> Self {
        let compiled = regex::Regex::new("^(?:(.*))$").expect("a constant regex compiles");
        Regex {
            original: "(.*)".to_string(),
            compiled,
            group_names: vec![None, None],
            implicit_default: true,
        }
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

impl fmt::Display for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Serialize for Regex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.original)
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Prometheus: `regex:` with a null value is the empty regex.
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        Regex::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Rewrites a Go RE2 pattern into a Rust `regex` pattern with the same
/// meaning. Returns the Rust pattern and the Go name of every capture group
/// (index 0 = the whole match); `Err` carries Go's error text.
///
/// Named groups are emitted unnamed: Go allows names Rust rejects (`1`,
/// duplicates), and [`super::expand`] resolves names with the returned table.
pub(crate) fn translate(pattern: &str) -> Result<(String, Vec<Option<String>>), String> {
    let mut t = Translator {
        chars: pattern.chars().collect(),
        pos: 0,
        out: String::with_capacity(pattern.len() * 2),
        names: vec![None],
        frames: vec![Frame::default()],
        item_end: 0,
    };
    t.run()?;
    Ok((t.out, t.names))
}

/// One open group while parsing: tracks what a repetition operator would
/// apply to and the largest repeat product inside (Go's `repeatIsValid`).
#[derive(Default)]
struct Frame {
    /// The weight of the last complete item (what a repeat applies to);
    /// `None`: nothing to repeat (start of group or after `|`).
    last: Option<u64>,
    /// The largest weight among earlier items of the group.
    max: u64,
}

impl Frame {
    fn push_item(&mut self, weight: u64) {
        if let Some(w) = self.last.take() {
            self.max = self.max.max(w);
        }
        self.last = Some(weight);
    }
    fn weight(&self) -> u64 {
        self.max.max(self.last.unwrap_or(1)).max(1)
    }
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    names: Vec<Option<String>>,
    frames: Vec<Frame>,
    /// Output position just after the last complete item.
    item_end: usize,
}
const PERL_D: &str = "0-9";
const PERL_W: &str = "0-9A-Za-z_";
const PERL_S: &str = "\\t\\n\\x0C\\r ";

const POSIX_NAMES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Go's `unicode.Categories` keys (Go 1.19, Unicode 13).
const GO_CATEGORIES: [&str; 37] = [
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs", "Any",
];

impl Translator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn rest_from(&self, off: usize) -> String {
        self.chars[(self.pos + off).min(self.chars.len())..]
            .iter()
            .collect()
    }

    fn frame(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("the outer frame is never popped")
    }

    fn atom(&mut self) {
        self.frame().push_item(1);
        self.item_end = self.out.len();
    }

    fn run(&mut self) -> Result<(), String> {
        // Start of the previous token if it was a repetition operator.
        let mut last_repeat: Option<usize> = None;
        while let Some(c) = self.peek() {
            let mut repeat: Option<usize> = None;
            match c {
                '|' => {
                    self.pos += 1;
                    self.out.push('|');
                    let f = self.frame();
                    if let Some(w) = f.last.take() {
                        f.max = f.max.max(w);
                    }
                }
                '(' => self.group_open()?,
                ')' => {
                    if self.frames.len() == 1 {
                        return Err(format!("unexpected ): `{}`", self.whole()));
                    }
                    let inner = self.frames.pop().expect("checked above");
                    self.pos += 1;
                    self.out.push(')');
                    self.frame().push_item(inner.weight());
                    self.item_end = self.out.len();
                }
                '*' | '+' | '?' => {
                    let start = self.pos;
                    self.pos += 1;
                    self.repeat_op(start, last_repeat, None)?;
                    repeat = Some(start);
                }
                '{' => match self.parse_repeat() {
                    Some((min, max, len)) => {
                        let start = self.pos;
                        let text: String = self.chars[start..start + len].iter().collect();
                        self.pos += len;
                        let (min, max) = match (min, max) {
                            (Some(a), None) if a <= MAX_REPEAT => (a, None),
                            (Some(a), Some(Some(b)))
                                if a <= MAX_REPEAT && b <= MAX_REPEAT && a <= b =>
                            {
                                (a, Some(b))
                            }
                            _ => return Err(format!("invalid repeat count: `{text}`")),
                        };
                        self.repeat_op(start, last_repeat, Some((min, max)))?;
                        repeat = Some(start);
                    }
                    None => {
                        self.pos += 1;
                        push_literal(&mut self.out, '{');
                        self.atom();
                    }
                },
                '^' | '$' | '.' => {
                    self.pos += 1;
                    self.out.push(c);
                    self.atom();
                }
                '[' => {
                    self.class()?;
                    self.atom();
                }
                '\\' => self.top_escape()?,
                _ => {
                    self.pos += 1;
                    push_literal(&mut self.out, c);
                    self.atom();
                }
            }
            last_repeat = repeat;
        }
        if self.frames.len() > 1 {
            return Err(format!("missing closing ): `{}`", self.whole()));
        }
        Ok(())
    }

    fn whole(&self) -> String {
        self.chars.iter().collect()
    }

    /// A repetition operator from `start` to `self.pos` (a lazy `?` is
    /// consumed here); `counts` for `{min,max}` (max `None`: unbounded).
    fn repeat_op(
        &mut self,
        start: usize,
        last_repeat: Option<usize>,
        counts: Option<(u32, Option<u32>)>,
    ) -> Result<(), String> {
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        let text =
            |t: &Translator, from: usize| -> String { t.chars[from..t.pos].iter().collect() };
        if let Some(prev) = last_repeat {
            return Err(format!(
                "invalid nested repetition operator: `{}`",
                text(self, prev)
            ));
        }
        let Some(sub) = self.frame().last else {
            return Err(format!(
                "missing argument to repetition operator: `{}`",
                text(self, start)
            ));
        };
        let weight = match counts {
            None => sub,
            Some((_, Some(0))) => 1,
            Some((min, max)) => {
                let m = u64::from(max.unwrap_or(min));
                let w = if m == 0 { sub } else { sub.saturating_mul(m) };
                let checked = min >= 2 || max.is_some_and(|m| m >= 2);
                if checked && w > u64::from(MAX_REPEAT) {
                    return Err(format!("invalid repeat count: `{}`", text(self, start)));
                }
                w
            }
        };
        self.frame().last = Some(weight);
        // Right after the item: a flag group in between (`a(?i)*`) does
        // not count in Go, but would in Rust.
        let op = text(self, start);
        self.out.insert_str(self.item_end, &op);
        self.item_end += op.len();
        Ok(())
    }

    /// At `{`: `{n}`, `{n,}` or `{n,m}` (Go's parseRepeat). Returns
    /// (min, max, length): a count `None` did not fit (Go: ≥ 1e8); max
    /// `None` means `{n,}`; `{n}` has max = min.
    #[allow(clippy::type_complexity)]
    fn parse_repeat(&self) -> Option<(Option<u32>, Option<Option<u32>>, usize)> {
        let mut i = 1;
        let (min, n) = self.parse_int(i)?;
        i += n;
        let max = if self.peek_at(i) == Some(',') {
            i += 1;
            if self.peek_at(i) == Some('}') {
                None
            } else {
                let (m, n) = self.parse_int(i)?;
                i += n;
                Some(m)
            }
        } else {
            Some(min)
        };
        if self.peek_at(i) != Some('}') {
            return None;
        }
        Some((min, max, i + 1))
    }

    /// Digits at `off` without a leading zero (Go's parseInt); returns the
    /// value (None when ≥ 1e8) and the digit count.
    fn parse_int(&self, off: usize) -> Option<(Option<u32>, usize)> {
        let mut n = 0;
        while self.peek_at(off + n).is_some_and(|c| c.is_ascii_digit()) {
            n += 1;
        }
        if n == 0 {
            return None;
        }
        if n >= 2 && self.peek_at(off) == Some('0') {
            return None;
        }
        let text: String = self.chars[self.pos + off..self.pos + off + n]
            .iter()
            .collect();
        let v = text.parse::<u32>().ok().filter(|v| *v < 100_000_000);
        Some((v, n))
    }

    fn group_open(&mut self) -> Result<(), String> {
        let open = self.pos;
        self.pos += 1;
        if self.peek() != Some('?') {
            self.names.push(None);
            self.frames.push(Frame::default());
            self.out.push('(');
            return Ok(());
        }
        // (?P<name>re)
        if self.peek_at(1) == Some('P') && self.peek_at(2) == Some('<') {
            let start = self.pos + 3;
            let Some(end) = self.chars[start..].iter().position(|c| *c == '>') else {
                let text: String = self.chars[open..].iter().collect();
                return Err(format!("invalid named capture: `{text}`"));
            };
            let name: String = self.chars[start..start + end].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
                return Err(format!("invalid named capture: `(?P<{name}>`"));
            }
            self.out.push('(');
            self.names.push(Some(name));
            self.frames.push(Frame::default());
            self.pos = start + end + 1;
            return Ok(());
        }
        // Flags: (?flags) or (?flags:re), flags from imsU, at most one '-'
        // which must be followed by a flag. Empty flags are fine in Go.
        let mut i = 1;
        let mut seen_minus = false;
        let mut saw_flag = false;
        loop {
            let Some(c) = self.peek_at(i) else {
                return Err(self.perl_syntax_error(open, i));
            };
            match c {
                'i' | 'm' | 's' | 'U' => saw_flag = true,
                '-' if !seen_minus => {
                    seen_minus = true;
                    saw_flag = false;
                }
                ':' | ')' => {
                    if seen_minus && !saw_flag {
                        return Err(self.perl_syntax_error(open, i + 1));
                    }
                    let flags: String = self.chars[self.pos + 1..self.pos + i].iter().collect();
                    self.pos += i + 1;
                    if c == ':' {
                        self.out.push_str(&format!("(?{flags}:"));
                        self.frames.push(Frame::default());
                    } else if !flags.is_empty() {
                        self.out.push_str(&format!("(?{flags})"));
                    }
                    return Ok(());
                }
                _ => return Err(self.perl_syntax_error(open, i + 1)),
            }
            i += 1;
        }
    }

    fn perl_syntax_error(&self, open: usize, len: usize) -> String {
        let end = (self.pos + len).min(self.chars.len());
        let text: String = self.chars[open..end].iter().collect();
        format!("invalid or unsupported Perl syntax: `{text}`")
    }

    /// An escape outside a class.
    fn top_escape(&mut self) -> Result<(), String> {
        let Some(c) = self.peek_at(1) else {
            return Err("trailing backslash at end of expression: ``".to_string());
        };
        match c {
            'A' => self.emit_escape(2, "\\A"),
            'z' => self.emit_escape(2, "\\z"),
            'b' => self.emit_escape(2, "(?-u:\\b)"),
            'B' => self.emit_escape(2, "(?-u:\\B)"),
            'd' => self.emit_escape(2, "[0-9]"),
            'D' => self.emit_escape(2, "[^0-9]"),
            'w' => self.emit_escape(2, "[0-9A-Za-z_]"),
            'W' => self.emit_escape(2, "[^0-9A-Za-z_]"),
            's' => self.emit_escape(2, "[\\t\\n\\x0C\\r ]"),
            'S' => self.emit_escape(2, "[^\\t\\n\\x0C\\r ]"),
            'Q' => {
                // Everything up to `\E` (or the end) is literal, even `\\`.
                self.pos += 2;
                while let Some(ch) = self.peek() {
                    if ch == '\\' && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    push_literal(&mut self.out, ch);
                    self.atom();
                    self.pos += 1;
                }
                return Ok(());
            }
            'p' | 'P' => {
                let class = self.unicode_class()?;
                self.out.push_str(&class);
            }
            _ => {
                self.pos += 1;
                let ch = self.escape_char()?;
                push_literal(&mut self.out, ch);
            }
        }
        self.atom();
        Ok(())
    }

    fn emit_escape(&mut self, len: usize, rust: &str) {
        self.pos += len;
        self.out.push_str(rust);
    }

    /// At `\p` or `\P`: returns the Rust class text.
    fn unicode_class(&mut self) -> Result<String, String> {
        let negated = self.peek_at(1) == Some('P');
        let start = self.pos;
        let name: String;
        match self.peek_at(2) {
            Some('{') => {
                let Some(end) = self.chars[self.pos + 3..].iter().position(|c| *c == '}') else {
                    return Err(format!(
                        "invalid character class range: `{}`",
                        self.rest_from(0)
                    ));
                };
                name = self.chars[self.pos + 3..self.pos + 3 + end]
                    .iter()
                    .collect();
                self.pos += 3 + end + 1;
            }
            Some(c) => {
                name = c.to_string();
                self.pos += 3;
            }
            None => {
                return Err(format!(
                    "invalid character class range: `{}`",
                    self.rest_from(0)
                ));
            }
        }
        let (neg, bare) = match name.strip_prefix('^') {
            Some(b) => (!negated, b.to_string()),
            None => (negated, name.clone()),
        };
        let known = GO_CATEGORIES.contains(&bare.as_str()) || GO_SCRIPTS.contains(&bare.as_str());
        let rust = format!("\\{}{{{}}}", if neg { 'P' } else { 'p' }, bare);
        if !known || regex_syntax::Parser::new().parse(&rust).is_err() {
            let text: String = self.chars[start..self.pos].iter().collect();
            return Err(format!("invalid character class range: `{text}`"));
        }
        Ok(rust)
    }

    /// After the backslash of a single-character escape (Go's
    /// parseEscape): octal, `\x`, the C escapes, escaped punctuation.
    fn escape_char(&mut self) -> Result<char, String> {
        let esc_start = self.pos - 1;
        let invalid = |t: &Translator, len: usize| {
            let end = (esc_start + len).min(t.chars.len());
            let text: String = t.chars[esc_start..end].iter().collect();
            format!("invalid escape sequence: `{text}`")
        };
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression: ``".to_string());
        };
        self.pos += 1;
        let is_oct = |c: Option<char>| c.is_some_and(|c| ('0'..='7').contains(&c));
        match c {
            '1'..='7' if !is_oct(self.peek()) => Err(invalid(self, 2)),
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    if !is_oct(self.peek()) {
                        break;
                    }
                    v = v * 8 + (self.chars[self.pos] as u32 - '0' as u32);
                    self.pos += 1;
                }
                char::from_u32(v).ok_or_else(|| invalid(self, 2))
            }
            'x' => {
                if self.peek() == Some('{') {
                    let mut v: u32 = 0;
                    let mut n = 0;
                    let mut i = 1;
                    while let Some(h) = self.peek_at(i).and_then(|c| c.to_digit(16)) {
                        v = v.saturating_mul(16).saturating_add(h);
                        n += 1;
                        i += 1;
                    }
                    if n == 0 || self.peek_at(i) != Some('}') || v > 0x10FFFF {
                        return Err(invalid(self, i + 2));
                    }
                    self.pos += i + 1;
                    char::from_u32(v).ok_or_else(|| invalid(self, 2))
                } else {
                    let h1 = self.peek().and_then(|c| c.to_digit(16));
                    let h2 = self.peek_at(1).and_then(|c| c.to_digit(16));
                    match (h1, h2) {
                        (Some(a), Some(b)) => {
                            self.pos += 2;
                            char::from_u32(a * 16 + b).ok_or_else(|| invalid(self, 4))
                        }
                        _ => Err(invalid(self, 4)),
                    }
                }
            }
            'a' => Ok('\x07'),
            'f' => Ok('\x0C'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0B'),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            _ => Err(invalid(self, 2)),
        }
    }

    /// A bracketed class, Go's parseClass.
    fn class(&mut self) -> Result<(), String> {
        let class_start = self.pos;
        self.pos += 1;
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            self.pos += 1;
            out.push('^');
        }
        let missing = |t: &Translator| {
            let text: String = t.chars[class_start..].iter().collect();
            format!("missing closing ]: `{text}`")
        };
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(missing(self)),
                Some(']') if !first => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            first = false;
            // POSIX [:name:]
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') {
                let rest = &self.chars[self.pos + 2..];
                if let Some(end) = rest.windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..end].iter().collect();
                    let bare = name.strip_prefix('^').unwrap_or(&name);
                    if !POSIX_NAMES.contains(&bare) {
                        let text: String = self.chars[self.pos..self.pos + 2 + end + 2]
                            .iter()
                            .collect();
                        return Err(format!("invalid character class range: `{text}`"));
                    }
                    out.push_str(&format!("[:{name}:]"));
                    self.pos += 2 + end + 2;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                match self.peek_at(1) {
                    Some('p' | 'P') => {
                        let c = self.unicode_class()?;
                        out.push_str(&c);
                        continue;
                    }
                    Some(c @ ('d' | 'D' | 'w' | 'W' | 's' | 'S')) => {
                        let set = match c.to_ascii_lowercase() {
                            'd' => PERL_D,
                            'w' => PERL_W,
                            _ => PERL_S,
                        };
                        if c.is_ascii_uppercase() {
                            out.push_str(&format!("[^{set}]"));
                        } else {
                            out.push_str(set);
                        }
                        self.pos += 2;
                        continue;
                    }
                    _ => {}
                }
            }
            let range_start = self.pos;
            let lo = self.class_char().ok_or_else(|| missing(self))??;
            let mut hi = lo;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char().ok_or_else(|| missing(self))??;
                if hi < lo {
                    let text: String = self.chars[range_start..self.pos].iter().collect();
                    return Err(format!("invalid character class range: `{text}`"));
                }
            }
            push_class_char(&mut out, lo);
            if hi != lo {
                out.push('-');
                push_class_char(&mut out, hi);
            }
        }
        out.push(']');
        self.out.push_str(&out);
        Ok(())
    }

    /// One character in a class; `None` at the end of the pattern.
    fn class_char(&mut self) -> Option<Result<char, String>> {
        let c = self.peek()?;
        if c == '\\' {
            self.peek_at(1)?;
            self.pos += 1;
            return Some(self.escape_char());
        }
        self.pos += 1;
        Some(Ok(c))
    }
}

fn push_literal(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:x}}}", c as u32));
    }
}

fn push_class_char(out: &mut String, c: char) {
    push_literal(out, c)
}

/// Go's `unicode.Scripts` keys (Go 1.19, Unicode 13.0).
const GO_SCRIPTS: [&str; 156] = [
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Ugaritic",
    "Vai",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(p: &str) -> String {
        translate(p).unwrap().0
    }

    /// The translation table, case by case.
    #[test]
    fn translation_table() {
        let table: &[(&str, &str)] = &[
            (r"\d", "[0-9]"),
            (r"\D", "[^0-9]"),
            (r"\w", "[0-9A-Za-z_]"),
            (r"\W", "[^0-9A-Za-z_]"),
            (r"\s", r"[\t\n\x0C\r ]"),
            (r"\S", r"[^\t\n\x0C\r ]"),
            (r"\b", r"(?-u:\b)"),
            (r"\B", r"(?-u:\B)"),
            (r"\A\z", r"\A\z"),
            (r"\Qa.b\E", r"a\x{2e}b"),
            (r"\Qa\\E", r"a\x{5c}"),
            (r"\101\0", r"A\x{0}"),
            (r"\x41\x{42}", "AB"),
            (r"\<\>", r"\x{3c}\x{3e}"),
            (r"a{", r"a\x{7b}"),
            (r"a{,2}", r"a\x{7b}\x{2c}2\x{7d}"),
            (r"a{2,3}?", r"a{2,3}?"),
            (r"[a&&b]", r"[a\x{26}\x{26}b]"),
            (r"[[a]", r"[\x{5b}a]"),
            (r"[\d-z]", r"[0-9\x{2d}z]"),
            (r"[^\D]", r"[^[^0-9]]"),
            (r"[[:alpha:][:^digit:]]", r"[[:alpha:][:^digit:]]"),
            (r"\p{^Greek}\PL\pN", r"\P{Greek}\P{L}\p{N}"),
            (r"(?P<1>a)(?P<n>b)", "(a)(b)"),
            (r"(?i)a(?)b(?s-m:c)", "(?i)ab(?s-m:c)"),
            (r"a(?i)(?s)+b", "a+(?i)(?s)b"),
            (r"a\Q\E*", "a*"),
            ("é", "é"),
            (" ", r"\x{20}"),
        ];
        for (go, rust) in table {
            assert_eq!(tr(go), *rust, "translating {go:?}");
        }
    }

    #[test]
    fn group_names_by_index() {
        let (_, names) = translate(r"(?P<n>a)(b)(?P<n>c)(?P<1>d)").unwrap();
        assert_eq!(
            names,
            vec![
                None,
                Some("n".to_string()),
                None,
                Some("n".to_string()),
                Some("1".to_string())
            ]
        );
    }

    #[test]
    fn go_rejections() {
        for p in [
            "a{1001}",
            "a**",
            "(?<n>a)",
            "(?x)a",
            r"\1",
            r"\C",
            r"\Z",
            "[[:foo:]]",
            "(?i-)a",
            r"\p{greek}",
            r"\p{Cn}",
            "(a{1000}){2}",
            "[z-a]",
        ] {
            assert!(Regex::new(p).is_err(), "{p:?} must be rejected");
        }
    }

    #[test]
    fn anchored_and_ascii_classes() {
        let r = Regex::new(r"\w+").unwrap();
        assert!(r.is_match("ab_1"));
        assert!(!r.is_match("é"));
        assert!(!r.is_match("ab "));
        let r = Regex::new("a)|(b").unwrap();
        assert!(r.is_match("ab"), "Go reads this as ^(?:a)|(b)$");
        assert!(!Regex::new("b").unwrap().is_match("ab"));
    }

    #[test]
    fn default_is_implicit_and_equal_to_explicit() {
        let d = Regex::default();
        let e = Regex::new("(.*)").unwrap();
        assert!(d.is_implicit_default());
        assert!(!e.is_implicit_default());
        assert_eq!(d, e);
        assert_eq!(d.group_names(), e.group_names());
    }
}
