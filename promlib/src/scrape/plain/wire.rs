//! HTTP/1.1 on the wire for the fast path: a request head written as one
//! buffer, a response head parsed with `httparse`, and a body read by its
//! framing (Content-Length, chunked, or until the server closes) straight
//! into the caller's buffer.
//!
//! hyper's client connection keeps a read buffer, a request channel and
//! its dispatch state per connection (about 24 KiB each, so 24 MB for a
//! collector of 1,000 targets) and reads a body in pieces of its buffer's
//! size, copying each piece once more. Here an idle connection is its
//! socket, and a body arrives in reads as large as the body.

use bytes::{Buf as _, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{StatusCode, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A response head longer than this fails the request.
const MAX_HEAD_BYTES: usize = 256 << 10;

/// Header lines parsed at most (hyper's default is 100).
const MAX_HEADERS: usize = 100;

/// A chunk-size line or trailer line longer than this fails the body.
const MAX_LINE_BYTES: usize = 4096;

/// Trailer bytes read at most after the last chunk.
const MAX_TRAILER_BYTES: usize = 64 << 10;

/// Spare room given to a read when the body's size is not known.
const READ_SIZE: usize = 16 << 10;

/// Buffer reserved up front for a declared body at most (a larger one
/// grows as it arrives; a lying Content-Length cannot reserve gigabytes).
const MAX_PREALLOCATION: usize = crate::scrape::client::MAX_PREALLOCATION as usize;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("connection closed before the response was complete")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid response head: {0}")]
    Head(String),
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    #[error("body size limit exceeded")]
    Limit,
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// An open connection.
pub(crate) struct Conn {
    stream: TcpStream,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        // Nagle only delays the one-packet request.
        let _ = stream.set_nodelay(true);
        Conn { stream }
    }

    /// Writes a whole request (head, then body if any).
    pub(crate) async fn send(&mut self, head: &[u8], body: &[u8]) -> Result<(), WireError> {
        let mut parts = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
        let mut parts = &mut parts[..];
        while parts.iter().any(|p| !p.is_empty()) {
            let n = self.stream.write_vectored(parts).await?;
            if n == 0 {
                return Err(WireError::Closed);
            }
            std::io::IoSlice::advance_slices(&mut parts, n);
        }
        Ok(())
    }

    /// Reads more into `buf` (at least `room` bytes of spare capacity);
    /// the bytes read, 0 at the end of the stream.
    async fn fill(&mut self, buf: &mut BytesMut, room: usize) -> Result<usize, WireError> {
        if buf.capacity() - buf.len() < room {
            buf.reserve(room);
        }
        Ok(self.stream.read_buf(buf).await?)
    }

    /// Reads the response head into `buf` (which must be empty) and leaves
    /// there what followed it: the start of the body. Interim (1xx)
    /// responses are skipped. `Closed` when the connection ends before the
    /// first byte (an idle connection the server closed).
    pub(crate) async fn read_head(&mut self, buf: &mut BytesMut) -> Result<Head, WireError> {
        loop {
            let (head, len) = loop {
                if let Some(parsed) = parse_head(buf)? {
                    break parsed;
                }
                if buf.len() >= MAX_HEAD_BYTES {
                    return Err(WireError::Head(format!(
                        "longer than {MAX_HEAD_BYTES} bytes"
                    )));
                }
                if self.fill(buf, 4096).await? == 0 {
                    return Err(WireError::Closed);
                }
            };
            buf.advance(len);
            // 101 switches protocols: not for us; other 1xx precede the
            // real response.
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok(head);
        }
    }

    /// Reads the body framed by `framing` into `buf`, which holds its first
    /// bytes already (from [`read_head`](Self::read_head)); fails with
    /// `Limit` once it reaches `limit` bytes (0: none). True when the
    /// connection may carry another request afterwards (the body ended
    /// where the framing said and nothing followed it).
    pub(crate) async fn read_body(
        &mut self,
        framing: Framing,
        buf: &mut BytesMut,
        limit: u64,
    ) -> Result<bool, WireError> {
        let over = |n: usize| limit > 0 && n as u64 >= limit;
        match framing {
            Framing::Length(len) => {
                if over(usize::try_from(len).unwrap_or(usize::MAX)) {
                    return Err(WireError::Limit);
                }
                let len = usize::try_from(len).map_err(|_| WireError::Limit)?;
                if buf.len() < len {
                    buf.reserve((len - buf.len()).min(MAX_PREALLOCATION));
                }
                while buf.len() < len {
                    let room = (len - buf.len()).min(MAX_PREALLOCATION);
                    if self.fill(buf, room).await? == 0 {
                        return Err(WireError::Closed);
                    }
                }
                let extra = buf.len() > len;
                buf.truncate(len);
                Ok(!extra)
            }
            Framing::Close => loop {
                if over(buf.len()) {
                    return Err(WireError::Limit);
                }
                if self.fill(buf, READ_SIZE).await? == 0 {
                    return Ok(false);
                }
            },
            Framing::Chunked => {
                let mut dechunk = Dechunker::default();
                loop {
                    if dechunk.step(buf)? {
                        let extra = buf.len() > dechunk.out;
                        buf.truncate(dechunk.out);
                        return Ok(!extra);
                    }
                    if over(dechunk.out) {
                        return Err(WireError::Limit);
                    }
                    if self.fill(buf, READ_SIZE).await? == 0 {
                        return Err(WireError::Closed);
                    }
                }
            }
        }
    }
}

/// The head at the start of `buf` and its length, `None` when incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| WireError::Head(format!("invalid status code {code}")))?;
    let version = if resp.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| WireError::Head(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| WireError::Head(format!("invalid value of header {}", h.name)))?;
        headers.append(name, value);
    }
    let framing = framing(status, &headers)?;
    let keep_alive = version == Version::HTTP_11 && !has_token(&headers, "connection", "close");
    Ok(Some((
        Head {
            status,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// Whether a comma-separated header `name` lists `token`.
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The body framing of a response (RFC 9112 section 6.3).
fn framing(status: StatusCode, headers: &HeaderMap) -> Result<Framing, WireError> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    let codings: Vec<&str> = headers
        .get_all("transfer-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        // Chunked last: chunked; any other last coding: until close.
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all("content-length") {
        for part in v.to_str().unwrap_or("").split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| WireError::Head(format!("invalid Content-Length {part:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Head("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Where the chunked decoder is within the raw bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data: bytes left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// Decodes a chunked body in place: `buf[..out]` is decoded data,
/// `buf[raw..]` raw bytes not decoded yet (`out <= raw`).
#[derive(Debug, Default)]
struct Dechunker {
    state: ChunkState,
    out: usize,
    raw: usize,
    trailer_bytes: usize,
}

impl Dechunker {
    /// Decodes what `buf` holds. True at the end of the body, with `buf`
    /// holding the data and then any bytes that followed the body; false
    /// when more bytes are needed (then `buf` holds the data decoded so
    /// far and the raw bytes not decoded yet, and the caller reads more
    /// onto its end).
    fn step(&mut self, buf: &mut BytesMut) -> Result<bool, WireError> {
        loop {
            let rest = &buf[self.raw..];
            match self.state {
                ChunkState::Size => {
                    let Some(end) = line_end(rest) else {
                        if rest.len() > MAX_LINE_BYTES {
                            return Err(WireError::Chunked("chunk-size line too long"));
                        }
                        break;
                    };
                    let line = &rest[..end.content];
                    let size = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size)
                        .ok()
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && s.len() <= 16)
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or(WireError::Chunked("invalid chunk size"))?;
                    self.raw += end.next;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    buf.copy_within(self.raw..self.raw + n, self.out);
                    self.out += n;
                    self.raw += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(end) = line_end(rest) else {
                        if rest.len() >= 2 {
                            return Err(WireError::Chunked("no CRLF after chunk data"));
                        }
                        break;
                    };
                    if end.content != 0 {
                        return Err(WireError::Chunked("no CRLF after chunk data"));
                    }
                    self.raw += end.next;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(end) = line_end(rest) else {
                        if rest.len() > MAX_LINE_BYTES {
                            return Err(WireError::Chunked("trailer line too long"));
                        }
                        break;
                    };
                    self.raw += end.next;
                    self.trailer_bytes += end.next;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(WireError::Chunked("trailers too long"));
                    }
                    if end.content == 0 {
                        // Done: keep the data and whatever followed.
                        let after = buf.len() - self.raw;
                        buf.copy_within(self.raw.., self.out);
                        buf.truncate(self.out + after);
                        self.raw = self.out;
                        return Ok(true);
                    }
                }
            }
        }
        // Need more: move the undecoded rest next to the data.
        if self.raw > self.out {
            let after = buf.len() - self.raw;
            buf.copy_within(self.raw.., self.out);
            buf.truncate(self.out + after);
            self.raw = self.out;
        }
        Ok(false)
    }
}

struct LineEnd {
    /// Length of the line without its terminator.
    content: usize,
    /// Offset just past the terminator.
    next: usize,
}

/// The end of the first line of `bytes` (terminated by LF, with or
/// without CR before it).
fn line_end(bytes: &[u8]) -> Option<LineEnd> {
    let lf = bytes.iter().position(|&b| b == b'\n')?;
    let content = if lf > 0 && bytes[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some(LineEnd {
        content,
        next: lf + 1,
    })
}

/// Appends `name` as HTTP/1 header names are conventionally written
/// (`content-type` -> `Content-Type`): some exporters compare names
/// case-sensitively, as Go writes them.
pub(crate) fn put_title_case(out: &mut Vec<u8>, name: &str) {
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// Appends `Name: value\r\n`.
pub(crate) fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    put_title_case(out, name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn heads_give_status_headers_framing_and_keep_alive() {
        let h =
            head("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nbody");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers["content-type"], "text/plain");
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        let h = head("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 204 No Content\r\nConnection: keep-alive, Close\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(0));
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        ] {
            assert!(parse_head(raw.as_bytes()).is_err(), "{raw:?}");
        }
    }

    fn dechunk_in_pieces(raw: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), WireError> {
        let mut d = Dechunker::default();
        let mut buf = BytesMut::new();
        for part in raw.chunks(piece) {
            buf.extend_from_slice(part);
            if d.step(&mut buf)? {
                let rest = buf.split_off(d.out);
                return Ok((buf.to_vec(), rest.to_vec()));
            }
        }
        Err(WireError::Closed)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for piece in 1..raw.len() {
            let (body, rest) = dechunk_in_pieces(raw, piece).unwrap();
            assert_eq!(body, b"hello, world", "piece {piece}");
            assert_eq!(rest, b"NEXT"[..rest.len()].to_vec(), "piece {piece}");
        }
        let (body, rest) = dechunk_in_pieces(b"A\nabcdefghij\n0\n\n", 3).unwrap();
        assert_eq!(body, b"abcdefghij");
        assert!(rest.is_empty());
    }

    #[test]
    fn bad_chunked_bodies_are_errors() {
        for raw in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
        ] {
            assert!(
                matches!(dechunk_in_pieces(raw, 64), Err(WireError::Chunked(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn header_names_are_title_cased() {
        let mut out = Vec::new();
        put_header(&mut out, "x-prometheus-remote-write-version", b"0.1.0");
        put_header(&mut out, "host", b"h:1");
        assert_eq!(
            out,
            b"X-Prometheus-Remote-Write-Version: 0.1.0\r\nHost: h:1\r\n"
        );
    }

    /// A server that writes `reply` in pieces of `piece` bytes, then waits
    /// for the client to close.
    async fn serve(reply: Vec<u8>, piece: usize) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            for part in reply.chunks(piece) {
                if s.write_all(part).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let mut sink = [0u8; 64];
            let _ = s.read(&mut sink).await;
        });
        addr
    }

    async fn fetch(
        reply: &str,
        piece: usize,
        limit: u64,
    ) -> Result<(Head, Vec<u8>, bool), WireError> {
        let addr = serve(reply.as_bytes().to_vec(), piece).await;
        let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
        conn.send(b"GET / HTTP/1.1\r\n\r\n", b"").await?;
        let mut buf = BytesMut::new();
        let head = conn.read_head(&mut buf).await?;
        let reusable = conn.read_body(head.framing, &mut buf, limit).await?;
        Ok((head, buf.to_vec(), reusable))
    }

    #[tokio::test]
    async fn bodies_are_read_by_their_framing() {
        let (h, body, reusable) = fetch(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            4,
            0,
        )
        .await
        .unwrap();
        assert_eq!(
            (h.status, body.as_slice(), reusable),
            (StatusCode::OK, &b"hello world"[..], true)
        );
        let (_, body, reusable) = fetch(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            5,
            0,
        )
        .await
        .unwrap();
        assert_eq!((body.as_slice(), reusable), (&b"abc"[..], true));
        let (_, _, reusable) = fetch("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA", 64, 0)
            .await
            .unwrap();
        assert!(!reusable, "bytes after the body");
        let r = fetch("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nshort", 64, 0).await;
        assert!(matches!(r, Err(WireError::Closed)), "{r:?}");
        let r = fetch("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", 64, 20).await;
        assert!(matches!(r, Err(WireError::Limit)), "{r:?}");
        let r = fetch(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
            64,
            10,
        )
        .await;
        assert!(matches!(r, Err(WireError::Limit)), "{r:?}");
    }
}
