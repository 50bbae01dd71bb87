//! The WAL's record codec: a compact binary encoding of series definitions,
//! samples and metadata, and the CRC32 frame around each record.
//!
//! Frame: `len: u32 LE` (payload bytes) | `crc: u32 LE` (CRC-32/IEEE of the
//! type byte and the payload) | `type: u8` | payload.
//!
//! Payloads (all integers are LEB128 varints, signed ones zigzag):
//! - Series: count, then per definition: ref, label count, then per label
//!   name and value as length-prefixed UTF-8. Labels are sorted by name.
//! - Samples: count, then per sample: ref (absolute for the first, then
//!   zigzag delta to the previous ref), timestamp (absolute zigzag for the
//!   first, then zigzag delta), value as its exact 8 f64 bits (LE), so NaN
//!   payloads such as the staleness marker round-trip bit for bit.
//! - Metadata: count, then per entry family name, type, help and unit.

use promshard_promlib::labels::{Label, Labels};

use crate::series::{Metadata, Sample, SeriesDef, SeriesRef};

/// Bytes of a frame header: length, CRC and type.
pub const FRAME_HEADER_LEN: usize = 9;
/// Largest payload accepted when reading; a longer length is corruption.
pub const MAX_PAYLOAD_LEN: u32 = 1 << 30;

/// The kind of a record, as stored in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Series = 1,
    Samples = 2,
    Metadata = 3,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Series),
            2 => Some(RecordType::Samples),
            3 => Some(RecordType::Metadata),
            _ => None,
        }
    }
}

/// One decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum WalRecord {
    /// Series definitions. Every series a segment's samples use is defined
    /// earlier in the same segment.
    Series(Vec<SeriesDef>),
    /// Samples referring to series defined before them.
    Samples(Vec<Sample>),
    /// Metric metadata.
    Metadata(Vec<Metadata>),
}

impl WalRecord {
    pub fn record_type(&self) -> RecordType {
        match self {
            WalRecord::Series(_) => RecordType::Series,
            WalRecord::Samples(_) => RecordType::Samples,
            WalRecord::Metadata(_) => RecordType::Metadata,
        }
    }
}

/// Why bytes do not decode as a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated {what}")]
    Truncated { what: &'static str },
    #[error("invalid {what}")]
    Invalid { what: &'static str },
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("record payload of {0} bytes exceeds the limit")]
    TooLong(u64),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("{0} trailing bytes after the record payload")]
    Trailing(usize),
}

pub use crate::varint::put_uvarint;

pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a payload.
struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn uvarint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(CodecError::Truncated { what })?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(CodecError::Invalid { what });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::Invalid { what })
    }

    fn varint(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CodecError::Truncated { what })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u64_le(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        let n = self.uvarint(what)?;
        let n = usize::try_from(n).map_err(|_| CodecError::Invalid { what })?;
        let b = self.bytes(n, what)?;
        std::str::from_utf8(b).map_err(|_| CodecError::Invalid { what })
    }

    fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        self.str(what).map(str::to_owned)
    }

    /// A count of items each at least `min_item_len` bytes long, checked
    /// against what is left so a corrupt count cannot allocate wildly.
    fn count(&mut self, min_item_len: usize, what: &'static str) -> Result<usize, CodecError> {
        let n = self.uvarint(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_len as u64) > left {
            return Err(CodecError::Truncated { what });
        }
        Ok(n as usize)
    }

    fn finish(&self) -> Result<(), CodecError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

/// Appends a Series payload: the count, then each definition.
pub fn encode_series_payload(defs: &[SeriesDef], out: &mut Vec<u8>) {
    put_uvarint(out, defs.len() as u64);
    for def in defs {
        put_uvarint(out, def.series.0);
        put_uvarint(out, def.labels.len() as u64);
        for l in def.labels.iter() {
            put_str(out, &l.name);
            put_str(out, &l.value);
        }
    }
}

pub fn encode_samples_payload(samples: &[Sample], out: &mut Vec<u8>) {
    put_uvarint(out, samples.len() as u64);
    let mut prev_ref: u64 = 0;
    let mut prev_ts: i64 = 0;
    for (i, s) in samples.iter().enumerate() {
        if i == 0 {
            put_uvarint(out, s.series.0);
            put_varint(out, s.timestamp_ms);
        } else {
            put_varint(out, s.series.0.wrapping_sub(prev_ref) as i64);
            put_varint(out, s.timestamp_ms.wrapping_sub(prev_ts));
        }
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        prev_ref = s.series.0;
        prev_ts = s.timestamp_ms;
    }
}

pub fn encode_metadata_payload(metadata: &[Metadata], out: &mut Vec<u8>) {
    put_uvarint(out, metadata.len() as u64);
    for m in metadata {
        put_str(out, &m.metric_family_name);
        put_str(out, &m.kind);
        put_str(out, &m.help);
        put_str(out, &m.unit);
    }
}

/// Appends a framed record whose payload `payload` writes.
pub fn frame(out: &mut Vec<u8>, typ: RecordType, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out[start + 8] = typ as u8;
    payload(out);
    let len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the framed encoding of `record`.
pub fn encode_record(record: &WalRecord, out: &mut Vec<u8>) {
    frame(out, record.record_type(), |o| match record {
        WalRecord::Series(defs) => encode_series_payload(defs, o),
        WalRecord::Samples(s) => encode_samples_payload(s, o),
        WalRecord::Metadata(m) => encode_metadata_payload(m, o),
    });
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug)]
pub struct FrameHeader {
    pub len: u32,
    pub crc: u32,
    pub typ: u8,
}

pub fn parse_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, CodecError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_PAYLOAD_LEN {
        return Err(CodecError::TooLong(u64::from(len)));
    }
    Ok(FrameHeader {
        len,
        crc,
        typ: h[8],
    })
}

/// Checks the CRC of a frame's type byte and payload.
pub fn check_crc(h: &FrameHeader, payload: &[u8]) -> Result<(), CodecError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[h.typ]);
    hasher.update(payload);
    let computed = hasher.finalize();
    if computed != h.crc {
        return Err(CodecError::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(())
}

/// Decodes one framed record at the start of `buf`; returns it and the
/// bytes it took.
pub fn decode_frame(buf: &[u8]) -> Result<(WalRecord, usize), CodecError> {
    let h: &[u8; FRAME_HEADER_LEN] = buf
        .get(..FRAME_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(CodecError::Truncated {
            what: "frame header",
        })?;
    let h = parse_frame_header(h)?;
    let end = FRAME_HEADER_LEN + h.len as usize;
    let payload = buf
        .get(FRAME_HEADER_LEN..end)
        .ok_or(CodecError::Truncated {
            what: "frame payload",
        })?;
    check_crc(&h, payload)?;
    Ok((decode_payload(h.typ, payload)?, end))
}

/// Decodes a record payload of type `typ`.
pub fn decode_payload(typ: u8, payload: &[u8]) -> Result<WalRecord, CodecError> {
    let mut d = Dec {
        buf: payload,
        pos: 0,
    };
    let rec = match RecordType::from_u8(typ).ok_or(CodecError::UnknownType(typ))? {
        RecordType::Series => {
            let n = d.count(2, "series count")?;
            let mut defs = Vec::with_capacity(n);
            for _ in 0..n {
                let r = d.uvarint("series ref")?;
                let nl = d.count(2, "label count")?;
                let mut labels = Vec::with_capacity(nl);
                for _ in 0..nl {
                    let name = d.string("label name")?;
                    let value = d.string("label value")?;
                    labels.push(Label { name, value });
                }
                let labels = Labels::from_sorted(labels).ok_or(CodecError::Invalid {
                    what: "label order (names must be sorted and unique)",
                })?;
                defs.push(SeriesDef {
                    series: SeriesRef(r),
                    labels,
                });
            }
            WalRecord::Series(defs)
        }
        RecordType::Samples => {
            let n = d.count(10, "sample count")?;
            let mut out = Vec::with_capacity(n);
            let mut r: u64 = 0;
            let mut ts: i64 = 0;
            for i in 0..n {
                if i == 0 {
                    r = d.uvarint("sample ref")?;
                    ts = d.varint("sample timestamp")?;
                } else {
                    r = r.wrapping_add(d.varint("sample ref delta")? as u64);
                    ts = ts.wrapping_add(d.varint("sample timestamp delta")?);
                }
                let bits = d.u64_le("sample value")?;
                out.push(Sample {
                    series: SeriesRef(r),
                    timestamp_ms: ts,
                    value: f64::from_bits(bits),
                });
            }
            WalRecord::Samples(out)
        }
        RecordType::Metadata => {
            let n = d.count(4, "metadata count")?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(Metadata {
                    metric_family_name: d.string("metadata family name")?,
                    kind: d.string("metadata type")?,
                    help: d.string("metadata help")?,
                    unit: d.string("metadata unit")?,
                });
            }
            WalRecord::Metadata(out)
        }
    };
    d.finish()?;
    Ok(rec)
}

/// Calls `f` with each definition of a Series payload: its ref and its
/// labels as (name, value) pairs borrowed from the payload, so nothing is
/// allocated per label. Checks what [`decode_payload`] checks; on an error
/// `f` may already have seen the definitions before the bad one.
pub fn visit_series_payload<'a>(
    payload: &'a [u8],
    mut f: impl FnMut(SeriesRef, &[(&'a str, &'a str)]),
) -> Result<(), CodecError> {
    let mut d = Dec {
        buf: payload,
        pos: 0,
    };
    let mut labels: Vec<(&'a str, &'a str)> = Vec::new();
    let n = d.count(2, "series count")?;
    for _ in 0..n {
        let r = d.uvarint("series ref")?;
        let nl = d.count(2, "label count")?;
        labels.clear();
        for _ in 0..nl {
            let name = d.str("label name")?;
            let value = d.str("label value")?;
            if labels.last().is_some_and(|(prev, _)| *prev >= name) {
                return Err(CodecError::Invalid {
                    what: "label order (names must be sorted and unique)",
                });
            }
            labels.push((name, value));
        }
        f(SeriesRef(r), &labels);
    }
    d.finish()
}

/// The number of samples in a Samples payload (its leading count), without
/// decoding them.
pub fn samples_count(payload: &[u8]) -> Option<u64> {
    Dec {
        buf: payload,
        pos: 0,
    }
    .uvarint("sample count")
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_extremes_round_trip() {
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut d = Dec { buf: &b, pos: 0 };
            assert_eq!(d.varint("x").unwrap(), v);
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), 10);
        let mut d = Dec { buf: &b, pos: 0 };
        assert_eq!(d.uvarint("x").unwrap(), u64::MAX);
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let mut b = Vec::new();
        encode_record(
            &WalRecord::Samples(vec![Sample {
                series: SeriesRef(7),
                timestamp_ms: 1000,
                value: 1.5,
            }]),
            &mut b,
        );
        assert!(decode_frame(&b).is_ok());
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(decode_frame(&b), Err(CodecError::Crc { .. })));
    }
}
