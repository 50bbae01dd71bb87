//! Remote write 1.0 request checks: headers, snappy block format, protobuf,
//! and the sender rules on labels.

use axum::http::HeaderMap;
use promshard_proto::prometheus::WriteRequest;
use prost::Message;

/// Largest decompressed body accepted.
pub const MAX_DECOMPRESSED: usize = 256 << 20;

/// Why a write request was rejected with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Content-Encoding is not `snappy`.
    ContentEncoding,
    /// Content-Type is not `application/x-protobuf`.
    ContentType,
    /// X-Prometheus-Remote-Write-Version is missing.
    VersionHeader,
    /// The body is not snappy block format (or decompresses too large).
    Snappy,
    /// The decompressed body is not a `WriteRequest`.
    Protobuf,
    /// A series has no `__name__`.
    MissingMetricName,
    /// A series' labels are not sorted by name.
    UnsortedLabels,
    /// A series repeats a label name.
    RepeatedLabelName,
    /// A series has an empty label name or value.
    EmptyLabel,
}

impl RejectReason {
    /// The reason's name in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ContentEncoding => "content_encoding",
            RejectReason::ContentType => "content_type",
            RejectReason::VersionHeader => "version_header",
            RejectReason::Snappy => "snappy",
            RejectReason::Protobuf => "protobuf",
            RejectReason::MissingMetricName => "missing_metric_name",
            RejectReason::UnsortedLabels => "unsorted_labels",
            RejectReason::RepeatedLabelName => "repeated_label_name",
            RejectReason::EmptyLabel => "empty_label",
        }
    }
}

/// A request that failed a check, with a message for the 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("remote write rejected ({}): {detail}", reason.as_str())]
pub struct Rejected {
    /// The counted reason.
    pub reason: RejectReason,
    /// What exactly was wrong.
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Checks the headers a remote write 1.0 sender must send.
pub fn check_headers(headers: &HeaderMap) -> Result<(), Rejected> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match get("content-encoding") {
        Some(v) if v.eq_ignore_ascii_case("snappy") => {}
        other => {
            return Err(reject(
                RejectReason::ContentEncoding,
                format!("Content-Encoding is {other:?}, want \"snappy\""),
            ));
        }
    }
    match get("content-type") {
        Some(v)
            if v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-protobuf")) => {}
        other => {
            return Err(reject(
                RejectReason::ContentType,
                format!("Content-Type is {other:?}, want \"application/x-protobuf\""),
            ));
        }
    }
    match get("x-prometheus-remote-write-version") {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(reject(
            RejectReason::VersionHeader,
            "X-Prometheus-Remote-Write-Version is missing",
        )),
    }
}

/// Decompresses (snappy block format) and decodes a body.
pub fn decode_body(body: &[u8]) -> Result<WriteRequest, Rejected> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| reject(RejectReason::Snappy, format!("snappy header: {e}")))?;
    if len > MAX_DECOMPRESSED {
        return Err(reject(
            RejectReason::Snappy,
            format!("decompressed size {len} exceeds {MAX_DECOMPRESSED}"),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| reject(RejectReason::Snappy, format!("snappy block: {e}")))?;
    WriteRequest::decode(raw.as_slice())
        .map_err(|e| reject(RejectReason::Protobuf, format!("WriteRequest: {e}")))
}

/// Checks the label rules of every series in a request.
pub fn check_labels(req: &WriteRequest) -> Result<(), Rejected> {
    for (i, ts) in req.timeseries.iter().enumerate() {
        let mut has_name = false;
        let mut prev: Option<&str> = None;
        for l in &ts.labels {
            if l.name.is_empty() || l.value.is_empty() {
                return Err(reject(
                    RejectReason::EmptyLabel,
                    format!("series {i}: label {:?}={:?} is empty", l.name, l.value),
                ));
            }
            if let Some(p) = prev {
                if p == l.name {
                    return Err(reject(
                        RejectReason::RepeatedLabelName,
                        format!("series {i}: label {:?} repeated", l.name),
                    ));
                }
                if p > l.name.as_str() {
                    return Err(reject(
                        RejectReason::UnsortedLabels,
                        format!("series {i}: label {:?} after {p:?}", l.name),
                    ));
                }
            }
            has_name |= l.name == "__name__";
            prev = Some(&l.name);
        }
        if !has_name {
            return Err(reject(
                RejectReason::MissingMetricName,
                format!("series {i} has no __name__"),
            ));
        }
    }
    Ok(())
}

/// Encodes a request the way a remote write sender does (for tests and
/// tools): protobuf, then snappy block format.
pub fn encode_request(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    // Compressing a byte slice that fits in memory cannot fail except for
    // inputs above snappy's 4 GiB limit; fall back to an empty body then,
    // which the sink rejects.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}
