//! The fast path of plain `http://` scrapes without a proxy: hyper's
//! HTTP/1.1 client connection with the smallest read buffer hyper allows
//! (8 KiB), kept alive in a small pool of our own.
//!
//! reqwest keeps hyper's adaptive read buffer of every idle keep-alive
//! connection at the size the last body grew it to (often 128 KiB and
//! more); with one connection per target that is most of a collector's
//! memory. Here an idle connection holds a few KiB.
//!
//! Pool rules: a connection is taken out for one request and put back only
//! after its body was read to the end and the response allows keep-alive,
//! so a scrape cut by its timeout (the future dropped) drops its connection
//! with it. At most [`MAX_IDLE_PER_AUTHORITY`] idle connections per
//! `host:port`; idle ones expire after [`IDLE_TIMEOUT`] (Prometheus'
//! `IdleConnTimeout`), swept every [`SWEEP_EVERY`]. A request that fails on
//! a reused connection before any response arrived is retried once on a
//! fresh one (the server may have closed it while it was idle).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, HOST, HeaderName,
    HeaderValue, LOCATION, USER_AGENT,
};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::{reaches_limit, reserve_for_body};
use super::error::{ScrapeError, error_chain};
use super::headers::{ACCEPT_ENCODING_HEADER, ACCEPT_HEADER, content_type};

mod post;
pub use post::{PlainPoster, PostResponse};

/// [`TIMEOUT_HEADER`](super::headers::TIMEOUT_HEADER), parsed once (sent title-cased on the wire).
static TIMEOUT_HEADER_NAME: HeaderName =
    HeaderName::from_static("x-prometheus-scrape-timeout-seconds");

/// hyper's smallest allowed read buffer: what an idle connection keeps.
const MAX_BUF_SIZE: usize = 8192;

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

type Driver<B> = http1::Connection<TokioIo<TcpStream>, B>;

/// A request body type a [`Conn`] can carry (empty for scrapes, whole
/// bytes for remote-write posts).
trait ReqBody:
    hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static
{
}
impl<B> ReqBody for B where
    B: hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static
{
}

/// A connection: its request handle and its driver, which the scrape
/// polls in its own task while it waits for the response and reads the
/// body (no second task, so no hand-over of every body chunk between
/// tasks and threads). An idle connection is polled by nobody; a server
/// that closed it is noticed at its next use.
struct Conn<B: ReqBody = Empty<Bytes>> {
    sender: http1::SendRequest<B>,
    driver: Driver<B>,
    /// The driver returned (the connection is closed): never pooled, never
    /// polled again.
    ended: bool,
}

impl<B: ReqBody> Conn<B> {
    /// Sends `req` and waits for the response head, driving the
    /// connection meanwhile. The outer error: the connection ended first
    /// (an idle one the server closed); the inner one: hyper's.
    async fn exchange(
        &mut self,
        req: Request<B>,
    ) -> Result<Result<Response<Incoming>, hyper::Error>, DriverEnded> {
        let Conn {
            sender,
            driver,
            ended,
        } = self;
        let exchange = async {
            // Waits for the driver to want the next request; an error
            // means it closed meanwhile (nothing was sent).
            sender.ready().await?;
            sender.send_request(req).await
        };
        drive(driver, ended, exchange).await
    }
}

struct Idle<B: ReqBody = Empty<Bytes>> {
    conn: Conn<B>,
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
    host_header: HeaderValue,
    /// Origin form: path and query.
    path: Uri,
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
            Some(p) => HeaderValue::try_from(format!("{host}:{p}")).ok()?,
            None => HeaderValue::try_from(host).ok()?,
        };
        let path = Uri::try_from(&u[url::Position::BeforePath..url::Position::AfterQuery]).ok()?;
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

    /// Sends the scrape request for `target` and reads the body into `buf`.
    pub(super) async fn fetch(
        &self,
        target: &PlainTarget,
        headers: &ScrapeHeaders<'_>,
        rules: &ScrapeRules<'_>,
        buf: &mut BytesMut,
    ) -> Result<PlainOutcome, ScrapeError> {
        let (mut conn, resp) = self.send(target, headers, rules.shown).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            // The connection is dropped with the unread body.
            if rules.follow_redirects
                && status.is_redirection()
                && resp.headers().contains_key(LOCATION)
            {
                return Ok(PlainOutcome::Redirect);
            }
            return Err(ScrapeError::status(rules.shown, status));
        }
        let content_type = content_type(resp.headers());
        let keep_alive = allows_keep_alive(&resp);
        // As reqwest: only a first Content-Encoding of exactly `gzip`.
        let gzip = resp
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"gzip");
        let mut body = resp.into_body();
        let read = async {
            if gzip {
                read_gzip(&mut body, rules, buf).await
            } else {
                read_plain(&mut body, rules, buf).await
            }
        };
        match drive(&mut conn.driver, &mut conn.ended, read).await {
            Ok(r) => r?,
            Err(e) => return Err(request_error(rules.shown, &e)),
        }
        if keep_alive && !conn.ended {
            self.put(&target.authority, conn);
        }
        Ok(PlainOutcome::Done(content_type))
    }

    /// The response head, on an idle connection if there is one; a failure
    /// there before any response is retried once on a fresh connection.
    async fn send(
        &self,
        target: &PlainTarget,
        headers: &ScrapeHeaders<'_>,
        shown: &str,
    ) -> Result<(Conn, Response<Incoming>), ScrapeError> {
        while let Some(mut conn) = self.take(&target.authority) {
            match conn.exchange(build_request(target, headers)).await {
                Ok(Ok(resp)) => return Ok((conn, resp)),
                Ok(Err(e)) => {
                    tracing::debug!(
                        url = shown,
                        error = %error_chain(&e),
                        "scrape on a reused connection failed before a response; retrying on a new connection"
                    );
                    break;
                }
                // The server closed the idle connection.
                Err(_) => continue,
            }
        }
        let mut conn = connect(target, shown).await?;
        let resp = match conn.exchange(build_request(target, headers)).await {
            Ok(r) => r.map_err(|e| request_error(shown, &e))?,
            Err(e) => return Err(request_error(shown, &e)),
        };
        Ok((conn, resp))
    }
}

fn request_error(shown: &str, e: &dyn std::error::Error) -> ScrapeError {
    ScrapeError::Request {
        url: shown.to_string(),
        reason: error_chain(e),
    }
}

fn build_request(target: &PlainTarget, h: &ScrapeHeaders<'_>) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = target.path.clone();
    let map = req.headers_mut();
    map.insert(HOST, target.host_header.clone());
    map.insert(USER_AGENT, h.user_agent.clone());
    map.insert(ACCEPT, HeaderValue::from_static(ACCEPT_HEADER));
    map.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPT_ENCODING_HEADER),
    );
    map.insert(TIMEOUT_HEADER_NAME.clone(), h.timeout_seconds.clone());
    if let Some(auth) = &h.authorization {
        map.insert(AUTHORIZATION, auth.clone());
    }
    req
}

/// Why a connection's driver stopped while a request was under way.
#[derive(Debug, thiserror::Error)]
enum DriverEnded {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Failed(#[from] hyper::Error),
}

/// Runs `work` while polling `driver` in the same task; an error when the
/// connection ends before `work` does.
async fn drive<F: Future, B: ReqBody>(
    driver: &mut Driver<B>,
    driver_ended: &mut bool,
    work: F,
) -> Result<F::Output, DriverEnded> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        // The driver first: what it reads is what the work waits for.
        let ended = if *driver_ended {
            None
        } else {
            match std::pin::Pin::new(&mut *driver).poll(cx) {
                std::task::Poll::Ready(r) => {
                    *driver_ended = true;
                    Some(r)
                }
                std::task::Poll::Pending => None,
            }
        };
        if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(out));
        }
        match ended {
            Some(Ok(())) => std::task::Poll::Ready(Err(DriverEnded::Closed)),
            Some(Err(e)) => std::task::Poll::Ready(Err(DriverEnded::Failed(e))),
            None if *driver_ended => std::task::Poll::Ready(Err(DriverEnded::Closed)),
            None => std::task::Poll::Pending,
        }
    })
    .await
}

/// A new connection to `target` (its driver is polled by the scrapes).
async fn connect<B: ReqBody>(target: &PlainTarget, shown: &str) -> Result<Conn<B>, ScrapeError> {
    let tcp = match &target.addr {
        HostAddr::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, target.port)).await,
        HostAddr::Name(name) => TcpStream::connect((name.as_str(), target.port)).await,
    }
    .map_err(|e| ScrapeError::Request {
        url: shown.to_string(),
        reason: format!("tcp connect error: {}", error_chain(&e)),
    })?;
    // Nagle only delays the one-packet request.
    let _ = tcp.set_nodelay(true);
    let (sender, driver) = http1::Builder::new()
        .max_buf_size(MAX_BUF_SIZE)
        // Go writes canonical header names; some exporters compare names
        // case-sensitively.
        .title_case_headers(true)
        .handshake::<_, B>(TokioIo::new(tcp))
        .await
        .map_err(|e| request_error(shown, &e))?;
    Ok(Conn {
        sender,
        driver,
        ended: false,
    })
}

/// Whether the connection may carry the next request after this response.
fn allows_keep_alive(resp: &Response<Incoming>) -> bool {
    if resp.version() != Version::HTTP_11 {
        return false;
    }
    !resp.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

fn limit_error(rules: &ScrapeRules<'_>) -> ScrapeError {
    ScrapeError::BodySizeLimit {
        url: rules.shown.to_string(),
        limit: rules.body_size_limit,
    }
}

/// The next data chunk of `body` (trailers skipped), `None` at the end.
async fn next_data(body: &mut Incoming, shown: &str) -> Result<Option<Bytes>, ScrapeError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| request_error(shown, &e))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

async fn read_plain(
    body: &mut Incoming,
    rules: &ScrapeRules<'_>,
    buf: &mut BytesMut,
) -> Result<(), ScrapeError> {
    let limit = rules.body_size_limit;
    reserve_for_body(buf, body.size_hint().exact(), limit);
    while let Some(chunk) = next_data(body, rules.shown).await? {
        if reaches_limit(limit, buf.len() as u64 + chunk.len() as u64) {
            return Err(limit_error(rules));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(())
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
/// and ignored) decompressed into `buf`.
async fn read_gzip(
    body: &mut Incoming,
    rules: &ScrapeRules<'_>,
    buf: &mut BytesMut,
) -> Result<(), ScrapeError> {
    let limit = rules.body_size_limit;
    let max_compressed = compressed_limit(limit);
    let sink = LimitedSink {
        buf,
        limit,
        exceeded: false,
    };
    let mut decoder = flate2::write::GzDecoder::new(sink);
    let mut compressed = 0u64;
    let mut ended = false;
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
    while let Some(chunk) = next_data(body, rules.shown).await? {
        compressed += chunk.len() as u64;
        if limit > 0 && compressed >= max_compressed {
            return Err(limit_error(rules));
        }
        let mut rest = &chunk[..];
        while !ended && !rest.is_empty() {
            match decoder.write(rest) {
                Ok(0) => ended = true,
                Ok(n) => rest = &rest[n..],
                Err(e) => return Err(decode_error(&decoder, e)),
            }
        }
    }
    if compressed == 0 {
        // An empty body is an empty body, encoded or not.
        return Ok(());
    }
    decoder.try_finish().map_err(|e| decode_error(&decoder, e))
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
    fn timeout_header_name_is_the_shared_one() {
        let shared = crate::scrape::TIMEOUT_HEADER;
        assert!(TIMEOUT_HEADER_NAME.as_str().eq_ignore_ascii_case(shared));
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
