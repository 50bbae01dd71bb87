//! Why a scrape failed inside the pipeline (the message goes into
//! [`super::ScrapeReport::error`]).

use promshard_promlib::exposition::ParseError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeFailure {
    /// The body does not parse; the first error fails the scrape.
    #[error("parse error: {0}")]
    Parse(#[from] ParseError),
    /// More samples (after metric relabeling) than `sample_limit`.
    #[error("sample limit exceeded")]
    SampleLimit,
    /// A series has more labels than `label_limit` (message as Prometheus).
    #[error(
        "label_limit exceeded (metric: {metric:.50}, number of labels: {count}, limit: {limit})"
    )]
    LabelLimit {
        metric: String,
        count: usize,
        limit: u64,
    },
    #[error(
        "label_name_length_limit exceeded (metric: {metric:.50}, label name: {name:.50}, length: {length}, limit: {limit})"
    )]
    LabelNameLength {
        metric: String,
        name: String,
        length: usize,
        limit: u64,
    },
    #[error(
        "label_value_length_limit exceeded (metric: {metric:.50}, label name: {name:.50}, value: {value:?}, length: {length}, limit: {limit})"
    )]
    LabelValueLength {
        metric: String,
        name: String,
        /// At most 50 characters of the value.
        value: String,
        length: usize,
        limit: u64,
    },
    /// Metric relabeling made an invalid metric or label name (as
    /// Prometheus' `Labels.IsValid` check).
    #[error("invalid metric name or label names: {0}")]
    InvalidLabels(String),
    /// Metric relabeling removed `__name__`.
    #[error("missing metric name (__name__ label)")]
    MissingMetricName,
}
