//! The fast path of plain `http://` scrapes without a proxy: HTTP/1.1 of
//! our own ([`wire`]), connections kept alive in a small pool of our own.
//!
//! reqwest keeps hyper's adaptive read buffer of every idle keep-alive
//! connection at the size the last body grew it to (often 128 KiB and
//! more); with one connection per target that is most of a collector's
//! memory. Here an idle connection is its socket.
//!
//! Pool rules: a connection is taken out for one request and put back only
//! after its body was read to the end and the response allows keep-alive,
//! so a scrape cut by its timeout (the future dropped) drops its connection
//! with it. At most [`MAX_IDLE_PER_AUTHORITY`] idle connections per
//! `host:port`; idle ones expire after [`IDLE_TIMEOUT`] (Prometheus'
//! `IdleConnTimeout`), swept every [`SWEEP_EVERY`]. A request that fails on
//! a reused connection is retried on another one, at last on a fresh one
//! (the server may have closed it while it was idle).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper::StatusCode;
use hyper::header::{CONTENT_ENCODING, HeaderValue, LOCATION};
use tokio::net::TcpStream;

use super::client::reaches_limit;
use super::error::{ScrapeError, error_chain};
use super::headers::{ACCEPT_ENCODING_HEADER, ACCEPT_HEADER, TIMEOUT_HEADER, content_type};

mod post;
mod wire;
pub use post::{PlainPoster, PostResponse};
use wire::{Conn, Framing, Head, WireError, put_header};

/// Idle connections kept per `host:port` (a target is scraped by one loop
/// at a time; a few more cover targets sharing an address).
pub(super) const MAX_IDLE_PER_AUTHORITY: usize = 4;

/// Idle connections older than this are closed (Prometheus' 5 minutes).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How often the whole pool is swept for expired and closed connections.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Compressed bytes read past the body size limit before giving up: gzip
/// of incompressible data is slightly larger than the data.
fn compressed_limit(limit: u64) -> u64 {
    limit.saturating_add(limit / 8).saturating_add(64 << 10)
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct PoolState {
    /// Keyed by `host:port`; the most recently returned connection last.
    idle: HashMap<String, Vec<Idle>>,
    last_sweep: Instant,
}

/// The keep-alive pool of plain HTTP/1.1 connections of one scrape client.
pub(super) struct PlainPool {
    state: Mutex<PoolState>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for PlainPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainPool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// A URL the fast path can scrape: `http://`, no userinfo (reqwest turns
/// that into basic auth; such URLs keep using reqwest).
#[derive(Debug)]
pub(super) struct PlainTarget {
    /// `host:port`, the pool key.
    authority: String,
    addr: HostAddr,
    port: u16,
    /// The Host header's value.
    host_header: String,
    /// Origin form: path and query.
    path: String,
}

#[derive(Debug)]
enum HostAddr {
    Ip(IpAddr),
    Name(String),
}

impl PlainTarget {
    /// `None` when the fast path does not apply (the caller then uses
    /// reqwest, which also reports unparsable URLs).
    pub(super) fn parse(url: &str) -> Option<PlainTarget> {
        let u = url::Url::parse(url).ok()?;
        if u.scheme() != "http" || !u.username().is_empty() || u.password().is_some() {
            return None;
        }
        let port = u.port_or_known_default()?;
        let addr = match u.host()? {
            url::Host::Domain(d) => HostAddr::Name(d.to_string()),
            url::Host::Ipv4(ip) => HostAddr::Ip(ip.into()),
            url::Host::Ipv6(ip) => HostAddr::Ip(ip.into()),
        };
        let host = u.host_str()?;
        let authority = format!("{host}:{port}");
        // As reqwest (and Go): the port only when the URL names a
        // non-default one.
        let host_header = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        // A parsed URL has no spaces or controls here (they are
        // percent-encoded); checked anyway, as they would break the head.
        let path = u[url::Position::BeforePath..url::Position::AfterQuery].to_string();
        if path
            .bytes()
            .chain(host_header.bytes())
            .any(|b| b <= b' ' || b == 0x7f)
        {
            return None;
        }
        Some(PlainTarget {
            authority,
            addr,
            port,
            host_header,
            path,
        })
    }
}

/// The request headers of one scrape, as the reqwest path sends them.
pub(super) struct ScrapeHeaders<'a> {
    pub user_agent: &'a HeaderValue,
    pub timeout_seconds: HeaderValue,
    pub authorization: Option<HeaderValue>,
}

/// What the fast path made of a scrape.
pub(super) enum PlainOutcome {
    /// The body is in the buffer; the Content-Type.
    Done(String),
    /// A redirect to follow: the caller redoes the scrape through reqwest.
    Redirect,
}

/// The settings of one scrape that shape the response handling.
pub(super) struct ScrapeRules<'a> {
    /// The URL as errors show it (password redacted).
    pub shown: &'a str,
    /// 0 = none.
    pub body_size_limit: u64,
    pub follow_redirects: bool,
}

impl PlainPool {
    pub(super) fn new() -> PlainPool {
        PlainPool::with_idle_timeout(IDLE_TIMEOUT)
    }

    fn with_idle_timeout(idle_timeout: Duration) -> PlainPool {
        PlainPool {
            state: Mutex::new(PoolState {
                idle: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            idle_timeout,
        }
    }

    /// Idle connections held now (all authorities).
    pub(super) fn idle_count(&self) -> usize {
        self.lock().idle.values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panic while holding the lock leaves only idle connections
        // behind; they are still valid to use or drop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently returned idle connection to `authority` that is
    /// neither closed nor expired.
    fn take(&self, authority: &str) -> Option<Conn> {
        let now = Instant::now();
        let mut dropped = Vec::new();
        let mut state = self.lock();
        self.maybe_sweep(&mut state, now, &mut dropped);
        let list = state.idle.get_mut(authority)?;
        let mut found = None;
        while let Some(idle) = list.pop() {
            if now.duration_since(idle.since) > self.idle_timeout {
                dropped.push(idle);
                continue;
            }
            found = Some(idle.conn);
            break;
        }
        if list.is_empty() {
            state.idle.remove(authority);
        }
        drop(state);
        drop(dropped);
        found
    }

    /// Returns a connection whose last response was read completely.
    fn put(&self, authority: &str, conn: Conn) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        let mut state = self.lock();
        self.maybe_sweep(&mut state, now, &mut dropped);
        let list = match state.idle.get_mut(authority) {
            Some(list) => list,
            None => state.idle.entry(authority.to_string()).or_default(),
        };
        if list.len() >= MAX_IDLE_PER_AUTHORITY {
            dropped.push(list.remove(0));
        }
        list.push(Idle { conn, since: now });
        drop(state);
        drop(dropped);
    }

    /// Removes expired and closed connections of every authority, at most
    /// once per [`SWEEP_EVERY`], so targets that went away leave nothing.
    fn maybe_sweep(&self, state: &mut PoolState, now: Instant, dropped: &mut Vec<Idle>) {
        if now.duration_since(state.last_sweep) < SWEEP_EVERY {
            return;
        }
        state.last_sweep = now;
        self.sweep_into(state, now, dropped);
    }

    fn sweep_into(&self, state: &mut PoolState, now: Instant, dropped: &mut Vec<Idle>) {
        let timeout = self.idle_timeout;
        state.idle.retain(|_, list| {
            let (keep, gone): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                .into_iter()
                .partition(|i| now.duration_since(i.since) <= timeout);
            dropped.extend(gone);
            *list = keep;
            !list.is_empty()
        });
    }

    /// Sends the scrape request for `target` and reads the body into `buf`
    /// (left empty on errors).
    pub(super) async fn fetch(
        &self,
        target: &PlainTarget,
        headers: &ScrapeHeaders<'_>,
        rules: &ScrapeRules<'_>,
        buf: &mut BytesMut,
    ) -> Result<PlainOutcome, ScrapeError> {
        let result: Result<PlainOutcome, ScrapeError> = async {
            let request = scrape_request(target, headers);
            let (mut conn, head) = exchange(
                || self.take(&target.authority),
                target,
                (&request, &[]),
                buf,
                rules.shown,
            )
            .await?;
            if head.status != StatusCode::OK {
                // The connection is dropped with the unread body.
                if rules.follow_redirects
                    && head.status.is_redirection()
                    && head.headers.contains_key(LOCATION)
                {
                    return Ok(PlainOutcome::Redirect);
                }
                return Err(ScrapeError::status(rules.shown, head.status));
            }
            let content_type = content_type(&head.headers);
            // As reqwest: only a first Content-Encoding of exactly `gzip`.
            let gzip = head
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes() == b"gzip");
            let reusable = if gzip {
                read_gzip(&mut conn, head.framing, rules, buf).await?
            } else {
                conn.read_body(head.framing, buf, rules.body_size_limit)
                    .await
                    .map_err(|e| body_error(rules, e))?
            };
            if reusable && head.keep_alive {
                self.put(&target.authority, conn);
            }
            Ok(PlainOutcome::Done(content_type))
        }
        .await;
        if !matches!(result, Ok(PlainOutcome::Done(_))) {
            buf.clear();
        }
        result
    }
}

/// Sends `request` (head and body) and reads the response head (the
/// body's first bytes left in `buf`), on an idle connection from `take` if
/// there is one; a failure on a reused connection moves on to the next, at
/// last to a fresh one.
async fn exchange(
    mut take: impl FnMut() -> Option<Conn>,
    target: &PlainTarget,
    (head, body): (&[u8], &[u8]),
    buf: &mut BytesMut,
    shown: &str,
) -> Result<(Conn, Head), ScrapeError> {
    while let Some(mut conn) = take() {
        match round_trip(&mut conn, head, body, buf).await {
            Ok(resp) => return Ok((conn, resp)),
            Err(e) => tracing::debug!(
                url = shown,
                error = %e,
                "request on a reused connection failed; retrying on another connection"
            ),
        }
    }
    let mut conn = connect(target, shown).await?;
    let resp = round_trip(&mut conn, head, body, buf)
        .await
        .map_err(|e| request_error(shown, &e))?;
    Ok((conn, resp))
}

/// Sends a request and reads its response head into `buf` (cleared first).
async fn round_trip(
    conn: &mut Conn,
    head: &[u8],
    body: &[u8],
    buf: &mut BytesMut,
) -> Result<Head, WireError> {
    buf.clear();
    conn.send(head, body).await?;
    conn.read_head(buf).await
}

fn request_error(shown: &str, e: &dyn std::error::Error) -> ScrapeError {
    ScrapeError::Request {
        url: shown.to_string(),
        reason: error_chain(e),
    }
}

/// A body read failure: the size limit, or the request's error.
fn body_error(rules: &ScrapeRules<'_>, e: WireError) -> ScrapeError {
    match e {
        WireError::Limit => limit_error(rules),
        e => request_error(rules.shown, &e),
    }
}

/// The scrape request's head, as the reqwest path sends it.
fn scrape_request(target: &PlainTarget, h: &ScrapeHeaders<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    put_header(&mut out, "host", target.host_header.as_bytes());
    put_header(&mut out, "user-agent", h.user_agent.as_bytes());
    put_header(&mut out, "accept", ACCEPT_HEADER.as_bytes());
    put_header(
        &mut out,
        "accept-encoding",
        ACCEPT_ENCODING_HEADER.as_bytes(),
    );
    put_header(&mut out, TIMEOUT_HEADER, h.timeout_seconds.as_bytes());
    if let Some(auth) = &h.authorization {
        put_header(&mut out, "authorization", auth.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A new connection to `target`.
async fn connect(target: &PlainTarget, shown: &str) -> Result<Conn, ScrapeError> {
    let tcp = match &target.addr {
        HostAddr::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, target.port)).await,
        HostAddr::Name(name) => TcpStream::connect((name.as_str(), target.port)).await,
    }
    .map_err(|e| ScrapeError::Request {
        url: shown.to_string(),
        reason: format!("tcp connect error: {}", error_chain(&e)),
    })?;
    Ok(Conn::new(tcp))
}

fn limit_error(rules: &ScrapeRules<'_>) -> ScrapeError {
    ScrapeError::BodySizeLimit {
        url: rules.shown.to_string(),
        limit: rules.body_size_limit,
    }
}

/// Decompressed output into the scrape buffer, failing once the body size
/// limit is reached (the same rule as plain bodies).
struct LimitedSink<'a> {
    buf: &'a mut BytesMut,
    limit: u64,
    exceeded: bool,
}

impl std::io::Write for LimitedSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if reaches_limit(self.limit, self.buf.len() as u64 + data.len() as u64) {
            self.exceeded = true;
            return Err(std::io::Error::other("body size limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A gzip body (one member, as reqwest decodes it; bytes after it are read
/// and ignored) decompressed into `buf`, which holds its first bytes.
/// True when the connection may be reused.
async fn read_gzip(
    conn: &mut Conn,
    framing: Framing,
    rules: &ScrapeRules<'_>,
    buf: &mut BytesMut,
) -> Result<bool, ScrapeError> {
    let limit = rules.body_size_limit;
    // The compressed body apart; `buf` keeps its allocation for the output.
    let mut compressed = BytesMut::from(&buf[..]);
    buf.clear();
    let reusable = conn
        .read_body(framing, &mut compressed, compressed_limit(limit))
        .await
        .map_err(|e| body_error(rules, e))?;
    if compressed.is_empty() {
        // An empty body is an empty body, encoded or not.
        return Ok(reusable);
    }
    let sink = LimitedSink {
        buf,
        limit,
        exceeded: false,
    };
    let mut decoder = flate2::write::GzDecoder::new(sink);
    let decode_error = |decoder: &flate2::write::GzDecoder<LimitedSink<'_>>, e: std::io::Error| {
        if decoder.get_ref().exceeded {
            limit_error(rules)
        } else {
            ScrapeError::Request {
                url: rules.shown.to_string(),
                reason: format!("error decoding response body: gzip: {e}"),
            }
        }
    };
    let mut rest = &compressed[..];
    while !rest.is_empty() {
        match decoder.write(rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) => return Err(decode_error(&decoder, e)),
        }
    }
    decoder
        .try_finish()
        .map_err(|e| decode_error(&decoder, e))?;
    Ok(reusable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> PlainTarget {
        PlainTarget::parse(url).unwrap()
    }

    #[test]
    fn parse_applies_to_plain_http_only() {
        assert!(PlainTarget::parse("https://h:9/metrics").is_none());
        assert!(PlainTarget::parse("http://u:p@h:9/metrics").is_none());
        assert!(PlainTarget::parse("http://u@h:9/metrics").is_none());
        assert!(PlainTarget::parse("not a url").is_none());
        let t = target("http://127.0.0.1:9100/metrics?a=1&b=2#frag");
        assert_eq!(t.authority, "127.0.0.1:9100");
        assert_eq!(t.host_header, "127.0.0.1:9100");
        assert!(PlainTarget::parse("http://h:9/a b").is_some_and(|t| t.path == "/a%20b"));
        assert_eq!(t.path, "/metrics?a=1&b=2");
        assert!(matches!(t.addr, HostAddr::Ip(_)));
    }

    #[test]
    fn host_header_omits_the_default_port() {
        let t = target("http://Example.COM:80/m");
        assert_eq!(t.authority, "example.com:80");
        assert_eq!(t.host_header, "example.com");
        assert!(matches!(t.addr, HostAddr::Name(ref n) if n == "example.com"));
        let t = target("http://[::1]:9090");
        assert_eq!(t.authority, "[::1]:9090");
        assert_eq!(t.host_header, "[::1]:9090");
        assert_eq!(t.path, "/");
        assert!(matches!(t.addr, HostAddr::Ip(IpAddr::V6(_))));
    }

    #[test]
    fn the_scrape_request_carries_the_headers_title_cased() {
        let ua = HeaderValue::from_static("Prometheus/2.42.0");
        let mut h = headers(&ua);
        h.authorization = Some(HeaderValue::from_static("Bearer x"));
        let req = scrape_request(&target("http://h:9/m?a=1"), &h);
        let req = String::from_utf8(req).unwrap();
        assert!(
            req.starts_with("GET /m?a=1 HTTP/1.1\r\nHost: h:9\r\n"),
            "{req}"
        );
        for line in [
            "User-Agent: Prometheus/2.42.0\r\n",
            "Accept-Encoding: gzip\r\n",
            "X-Prometheus-Scrape-Timeout-Seconds: 1\r\n",
            "Authorization: Bearer x\r\n",
        ] {
            assert!(req.contains(line), "{line:?} in {req}");
        }
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn compressed_limit_leaves_room_for_gzip_overhead() {
        assert!(compressed_limit(100) > 100);
        assert!(compressed_limit(10 << 20) > (10 << 20) + (1 << 20));
        assert_eq!(compressed_limit(u64::MAX), u64::MAX);
    }

    /// A loopback server that answers every request on a connection with
    /// "a 1\n", keep-alive; returns its address.
    async fn keep_alive_server() -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..20 {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut b = [0u8; 1024];
                    for _ in 0..20 {
                        while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => data.extend_from_slice(&b[..n]),
                            }
                        }
                        data.clear();
                        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na 1\n";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn headers(ua: &HeaderValue) -> ScrapeHeaders<'_> {
        ScrapeHeaders {
            user_agent: ua,
            timeout_seconds: HeaderValue::from_static("1"),
            authorization: None,
        }
    }

    #[tokio::test]
    async fn pool_keeps_at_most_the_cap_and_expires_idle_connections() {
        let addr = keep_alive_server().await;
        let pool = PlainPool::with_idle_timeout(Duration::from_millis(200));
        let t = target(&format!("http://{addr}/metrics"));
        let ua = HeaderValue::from_static("t");
        let rules = ScrapeRules {
            shown: "x",
            body_size_limit: 0,
            follow_redirects: true,
        };
        // Concurrent scrapes open several connections; all come back but
        // only the cap stays idle.
        let mut bufs: Vec<BytesMut> = (0..6).map(|_| BytesMut::new()).collect();
        let h = headers(&ua);
        let futs = bufs
            .iter_mut()
            .map(|b| pool.fetch(&t, &h, &rules, b))
            .collect::<Vec<_>>();
        for r in futures_util::future::join_all(futs).await {
            assert!(matches!(r.unwrap(), PlainOutcome::Done(_)));
        }
        assert_eq!(pool.idle_count(), MAX_IDLE_PER_AUTHORITY);
        // Past the idle timeout a sweep removes them all.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut dropped = Vec::new();
        {
            let mut state = pool.lock();
            pool.sweep_into(&mut state, Instant::now(), &mut dropped);
        }
        assert_eq!(dropped.len(), MAX_IDLE_PER_AUTHORITY);
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.lock().idle.is_empty(), "no empty per-authority lists");
        // And an expired connection is never handed out.
        let mut buf = BytesMut::new();
        pool.fetch(&t, &h, &rules, &mut buf).await.unwrap();
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(pool.take(&t.authority).is_none());
    }
}
