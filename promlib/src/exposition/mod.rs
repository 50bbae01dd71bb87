//! Exposition parsing: text format 0.0.4 and OpenMetrics 1.0, exactly as
//! Prometheus 2.42's `textparse` (promparse and openmetricsparse) parses.
//!
//! The parser is zero-copy over the scraped body: every [`Entry`] borrows
//! from it, and parsing a sample allocates nothing. [`Series::raw`] gives the
//! series bytes as written so a scrape loop can cache series it has seen and
//! skip label work entirely.
//!
//! ```
//! use promshard_promlib::exposition::{Entry, Format, Parser};
//! let body = b"# TYPE up gauge\nup{job=\"a\"} 1 1700000000000\n";
//! let mut samples = 0;
//! for entry in Parser::new(body, Format::Text) {
//!     if let Entry::Series(s) = entry.unwrap() {
//!         assert_eq!(s.raw(), b"up{job=\"a\"}");
//!         assert_eq!(s.value, 1.0);
//!         assert_eq!(s.timestamp_ms, Some(1_700_000_000_000));
//!         samples += 1;
//!     }
//! }
//! assert_eq!(samples, 1);
//! ```
//!
//! Where Prometheus 2.42 is lenient, so is this parser (text format: missing
//! commas between labels, a trailing comma, whitespace around tokens;
//! OpenMetrics: no family-level checks). [`lint`] reports what Prometheus
//! would let through but `promtool check metrics` would complain about;
//! [`validate_openmetrics`] is the strict OpenMetrics 1.0 check: it rejects
//! every body that breaks a MUST rule of the specification.

mod float;
mod lint;
mod om_family;
mod openmetrics;
mod parser;
mod series;
mod text;

pub use float::parse_go_float;
pub use lint::{Problem, Severity, lint, validate_openmetrics};
pub use parser::Parser;
pub use series::{Exemplar, LabelIter, Series};

use std::borrow::Cow;

/// Which exposition format a body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format Prometheus 2.42 parses a body with, given the response's
    /// Content-Type: OpenMetrics for media type `application/openmetrics-text`
    /// (case-insensitive, parameters ignored), text for anything else,
    /// including an empty or malformed header. (Prometheus would use its
    /// protobuf parser for `application/vnd.google.protobuf`; promshard never
    /// asks for protobuf, so that is parsed as text too.)
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A metric family type from a `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// OpenMetrics only.
    GaugeHistogram,
    Summary,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    Stateset,
    /// `untyped` (text) or `unknown` (OpenMetrics).
    Unknown,
}

impl MetricType {
    /// The word Prometheus uses for this type (`unknown` for untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// One parsed line (or, for a text-format label value with a raw newline,
/// several).
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`; the text is unescaped (text format: `\\`, `\n`;
    /// OpenMetrics: also `\"`).
    Help { name: &'a str, help: Cow<'a, str> },
    /// `# TYPE name type`.
    Type { name: &'a str, kind: MetricType },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit { name: &'a str, unit: &'a str },
    /// Any other comment line, with its `#` (text format only; OpenMetrics
    /// 2.42 rejects other comments).
    Comment(&'a [u8]),
    /// A sample.
    Series(Series<'a>),
    /// `# EOF` (OpenMetrics only).
    Eof,
}

/// A parse error with the 1-based line it was found on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    /// What kind of problem it is, for callers that treat some differently.
    pub kind: ParseErrorKind,
}

/// The kind of a [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The line is not valid exposition syntax.
    Syntax,
    /// The line is well formed but repeats a label name (or sets
    /// `__name__` as a label): Prometheus' parser reads it and its appender
    /// refuses it.
    RepeatedLabelName,
}
