//! The DNS wire format, as much as DNS discovery needs: encoding one query
//! (with an EDNS0 OPT record, as Prometheus' miekg/dns client sends) and
//! decoding a response's header and answer section (A, AAAA, SRV, MX,
//! CNAME; other types are kept as their type code). Every length, offset
//! and compression pointer of a response is checked: a malformed answer is
//! an error, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `RCODE` values Prometheus distinguishes.
pub const RCODE_SUCCESS: u8 = 0;
pub const RCODE_NAME_ERROR: u8 = 3;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The UDP payload size announced with EDNS0 (miekg/dns' `DefaultMsgSize`).
pub const EDNS_UDP_SIZE: u16 = 4096;
/// Bound on compression pointers followed while reading one name.
const MAX_POINTERS: usize = 64;

/// A response that cannot be decoded, or a name that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated at byte {0}")]
    Short(usize),
    #[error("bad compression pointer at byte {0}")]
    BadPointer(usize),
    #[error("name longer than 255 bytes at byte {0}")]
    LongName(usize),
    #[error("bad label type at byte {0}")]
    BadLabel(usize),
    #[error("rdata of type {rtype} has length {len}, want {want}")]
    RdataLength { rtype: u16, len: usize, want: usize },
    #[error("invalid domain name {0:?}")]
    InvalidName(String),
}

/// One answer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// The target as presented by Go's miekg/dns: rooted, with a trailing dot.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Mx {
        preference: u16,
        exchange: String,
    },
    Cname(String),
    /// A type discovery does not use.
    Other(u16),
}

/// One resource record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub answers: Vec<Record>,
}

/// Encodes a recursive query for `name` (made fully qualified) of type
/// `qtype`, with an EDNS0 OPT record when `edns`.
pub fn encode_query(id: u16, name: &str, qtype: u16, edns: bool) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&u16::from(edns).to_be_bytes()); // ARCOUNT
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        out.push(0); // root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // ext rcode, version, flags
        out.extend_from_slice(&0u16.to_be_bytes()); // rdlength
    }
    Ok(out)
}

/// Appends `name` in wire format (uncompressed).
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let invalid = || WireError::InvalidName(name.to_string());
    if trimmed.len() > 253 {
        return Err(invalid());
    }
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid());
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Short(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Short(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads a possibly compressed name at the current position.
    fn name(&mut self) -> Result<String, WireError> {
        let (name, next) = read_name(self.buf, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the name at `start`; returns it in presentation format (rooted,
/// special characters escaped as miekg/dns does) and the offset after it.
fn read_name(buf: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut out = String::new();
    let mut pos = start;
    let mut after: Option<usize> = None;
    let mut pointers = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *buf.get(pos).ok_or(WireError::Short(pos))?;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    pos += 1;
                    break;
                }
                let n = usize::from(len);
                let label = buf
                    .get(pos + 1..pos + 1 + n)
                    .ok_or(WireError::Short(pos + 1))?;
                wire_len += n + 1;
                if wire_len > 255 {
                    return Err(WireError::LongName(start));
                }
                escape_label(label, &mut out);
                out.push('.');
                pos += 1 + n;
            }
            0xC0 => {
                let lo = *buf.get(pos + 1).ok_or(WireError::Short(pos + 1))?;
                let target = (usize::from(len & 0x3F) << 8) | usize::from(lo);
                pointers += 1;
                if pointers > MAX_POINTERS || target >= buf.len() {
                    return Err(WireError::BadPointer(pos));
                }
                after.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(WireError::BadLabel(pos)),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    Ok((out, after.unwrap_or(pos)))
}

/// A label as miekg/dns presents it: `.`, `\`, `"`, `'`, `(`, `)`, `;`,
/// `@` and space backslash-escaped; unprintable bytes as `\DDD`.
fn escape_label(label: &[u8], out: &mut String) {
    for &b in label {
        match b {
            b'.' | b'\\' | b'"' | b'\'' | b'(' | b')' | b';' | b'@' | b' ' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x21..=0x7E => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
}

/// Decodes a response: header, questions (skipped) and answers.
pub fn parse_message(buf: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let _nscount = r.u16()?;
    let _arcount = r.u16()?;
    for _ in 0..qdcount {
        r.name()?;
        r.take(4)?;
    }
    let mut answers = Vec::with_capacity(usize::from(ancount).min(512));
    for _ in 0..ancount {
        let name = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?;
        let rdlen = usize::from(r.u16()?);
        let rdstart = r.pos;
        r.take(rdlen)?;
        let rdata = &buf[rdstart..rdstart + rdlen];
        let want = |want: usize| {
            if rdlen == want {
                Ok(())
            } else {
                Err(WireError::RdataLength {
                    rtype,
                    len: rdlen,
                    want,
                })
            }
        };
        let data = match rtype {
            TYPE_A => {
                want(4)?;
                RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
            }
            TYPE_AAAA => {
                want(16)?;
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                RData::Aaaa(Ipv6Addr::from(b))
            }
            TYPE_SRV => {
                let mut rr = Reader { buf, pos: rdstart };
                let priority = rr.u16()?;
                let weight = rr.u16()?;
                let port = rr.u16()?;
                let target = rr.name()?;
                if rr.pos != rdstart + rdlen {
                    return Err(WireError::RdataLength {
                        rtype,
                        len: rdlen,
                        want: rr.pos - rdstart,
                    });
                }
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                }
            }
            TYPE_MX => {
                let mut rr = Reader { buf, pos: rdstart };
                let preference = rr.u16()?;
                let exchange = rr.name()?;
                if rr.pos != rdstart + rdlen {
                    return Err(WireError::RdataLength {
                        rtype,
                        len: rdlen,
                        want: rr.pos - rdstart,
                    });
                }
                RData::Mx {
                    preference,
                    exchange,
                }
            }
            TYPE_CNAME => {
                let (target, _) = read_name(buf, rdstart)?;
                RData::Cname(target)
            }
            other => RData::Other(other),
        };
        answers.push(Record { name, ttl, data });
    }
    Ok(Message {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & 0x0200 != 0,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_has_question_and_opt() {
        let q = encode_query(0x1234, "a.example", 33, true).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[10..12], &[0, 1]); // ARCOUNT
        assert_eq!(&q[12..23], b"\x01a\x07example\x00");
        assert!(encode_query(1, "a..b", 1, false).is_err());
        assert!(encode_query(1, &"x".repeat(64), 1, false).is_err());
    }

    #[test]
    fn parses_compressed_srv_and_rejects_loops() {
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01s\x07example\x00\x00\x21\x00\x01");
        // answer: name = pointer to 12, SRV, IN, ttl 60
        m.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
        let rd = [0u8, 1, 0, 2, 0x1F, 0x90, 1, b't', 0xC0, 14];
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        m.extend_from_slice(&rd);
        let msg = parse_message(&m).unwrap();
        assert_eq!(msg.id, 7);
        assert_eq!(msg.answers[0].name, "s.example.");
        assert_eq!(
            msg.answers[0].data,
            RData::Srv {
                priority: 1,
                weight: 2,
                port: 8080,
                target: "t.example.".into()
            }
        );
        // A pointer to itself.
        let mut bad = m.clone();
        let at = bad.len() - 2;
        bad[at] = 0xC0;
        bad[at + 1] = at as u8;
        assert!(parse_message(&bad).is_err());
        for cut in 0..m.len() {
            assert!(parse_message(&m[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Whatever a server sends, decoding returns, never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_message(&bytes);
        }

        /// A valid response with bytes flipped still decodes or errors.
        #[test]
        fn mutated_responses_never_panic(flips in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 1..8)) {
            let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
            m.extend_from_slice(b"\x01s\x07example\x00\x00\x21\x00\x01");
            m.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 10]);
            m.extend_from_slice(&[0u8, 1, 0, 2, 0x1F, 0x90, 1, b't', 0xC0, 14]);
            m.extend_from_slice(&[0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 5, 0xC0, 14]);
            for (at, b) in flips {
                let i = at % m.len();
                m[i] = b;
            }
            let _ = parse_message(&m);
        }
    }
}
