//! POSTs to one plain `http://` URL without a proxy (the remote-write fast
//! path): HTTP/1.1 of our own ([`super::wire`]) on connections kept alive
//! in a list of our own.
//!
//! Through reqwest every request passes its redirect, timeout and service
//! layers and hops to the connection's own task and back; at hundreds of
//! requests per second that was a tenth of a collector's CPU. Here a send
//! is one request on one connection, polled where it is awaited.
//!
//! Rules as for scrapes: a connection is put back only after the response
//! body was read to the end and the response allows keep-alive; a send
//! that fails on a reused connection is retried on another one, at last on
//! a fresh one (the server may have closed it while it was idle; a
//! remote-write receiver takes the same samples twice without harm). Idle connections expire after [`IDLE_TIMEOUT`].

use std::sync::Mutex;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderValue};

use super::wire::{Conn, WireError, put_header};
use super::{IDLE_TIMEOUT, Idle, PlainTarget, exchange, request_error};
use crate::config::HttpClientConfig;
use crate::scrape::client::has_proxy;
use crate::scrape::error::ScrapeError;

/// Idle connections kept (one per sending remote-write shard; Prometheus'
/// default `max_shards` is 200).
const MAX_IDLE: usize = 256;

/// Response body bytes kept for the caller (an error message); the rest is
/// read and dropped.
const KEEP_BODY: usize = 4096;

/// A response body longer than this is not read to its end: the
/// connection is closed instead.
const MAX_DRAIN: usize = 1 << 20;

/// The answer to a post.
#[derive(Debug)]
pub struct PostResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The first [`KEEP_BODY`] bytes of the body.
    pub body: Bytes,
}

/// Posts to one URL over kept-alive connections.
pub struct PlainPoster {
    target: PlainTarget,
    /// The URL as errors show it.
    shown: String,
    /// The most recently returned connection last.
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for PlainPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainPoster")
            .field("url", &self.shown)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl PlainPoster {
    /// `None` when the fast path does not apply to `url` with `http`
    /// (not `http://`, credentials in the URL, or a proxy): the caller
    /// uses its general client. `shown`: the URL as errors show it
    /// (password redacted).
    pub fn new(url: &str, shown: &str, http: &HttpClientConfig) -> Option<PlainPoster> {
        if has_proxy(http) {
            return None;
        }
        Some(PlainPoster {
            target: PlainTarget::parse(url)?,
            shown: shown.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while holding the lock leaves only idle connections.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.lock();
        // The oldest are first: drop the expired ones.
        let expired = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) > IDLE_TIMEOUT)
            .count();
        let dropped: Vec<_> = idle.drain(..expired).collect();
        let found = idle.pop().map(|i| i.conn);
        drop(idle);
        drop(dropped);
        found
    }

    fn put(&self, conn: Conn) {
        let mut idle = self.lock();
        let dropped = (idle.len() >= MAX_IDLE).then(|| idle.remove(0));
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        drop(dropped);
    }

    /// One POST of `body` with `headers` and `authorization` (the Host
    /// header is added). Not bounded in time: the caller bounds it.
    pub async fn post(
        &self,
        headers: &HeaderMap,
        authorization: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<PostResponse, ScrapeError> {
        let request = self.request_head(headers, authorization, body.len());
        let mut buf = BytesMut::new();
        let (mut conn, head) = exchange(
            || self.take(),
            &self.target,
            (&request, &body),
            &mut buf,
            &self.shown,
        )
        .await?;
        let complete = match conn
            .read_body(head.framing, &mut buf, MAX_DRAIN as u64)
            .await
        {
            Ok(reusable) => reusable,
            Err(WireError::Limit) => false,
            Err(e) => return Err(request_error(&self.shown, &e)),
        };
        if complete && head.keep_alive {
            self.put(conn);
        }
        buf.truncate(KEEP_BODY);
        Ok(PostResponse {
            status: head.status,
            headers: head.headers,
            body: buf.freeze(),
        })
    }

    /// The request head: Host, `headers` (but Host and Content-Length),
    /// `authorization` and the body's Content-Length.
    fn request_head(
        &self,
        headers: &HeaderMap,
        authorization: Option<&HeaderValue>,
        body_len: usize,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.target.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        put_header(&mut out, HOST.as_str(), self.target.host_header.as_bytes());
        for (name, value) in headers {
            if name == HOST || name == CONTENT_LENGTH {
                continue;
            }
            put_header(&mut out, name.as_str(), value.as_bytes());
        }
        if let Some(auth) = authorization {
            put_header(&mut out, "authorization", auth.as_bytes());
        }
        put_header(
            &mut out,
            CONTENT_LENGTH.as_str(),
            body_len.to_string().as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request on a connection with `status`
    /// (and a short body unless 204), keeping the connection open, and counts the
    /// connections and requests it saw (the request bodies' lengths must
    /// match their Content-Length).
    async fn server(status: &'static str) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let reqs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&conns), Arc::clone(&reqs));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    loop {
                        // Head, then the body by its Content-Length.
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match s.read(&mut tmp).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            match s.read(&mut tmp).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                            }
                        }
                        buf.drain(..head_end + len);
                        r.fetch_add(1, Ordering::SeqCst);
                        // A 204 has no body.
                        let resp = if status.starts_with("204") {
                            format!("HTTP/1.1 {status}\r\n\r\n")
                        } else {
                            format!(
                                "HTTP/1.1 {status}\r\nContent-Length: 5\r\nRetry-After: 7\r\n\r\nhello"
                            )
                        };
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns, reqs)
    }

    #[tokio::test]
    async fn posts_reuse_one_kept_alive_connection() {
        let (addr, conns, reqs) = server("204 No Content").await;
        let url = format!("http://{addr}/api/v1/write");
        let p = PlainPoster::new(&url, &url, &HttpClientConfig::default()).unwrap();
        for _ in 0..3 {
            let r = p
                .post(&HeaderMap::new(), None, Bytes::from_static(b"payload"))
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::NO_CONTENT);
        }
        assert_eq!(reqs.load(Ordering::SeqCst), 3);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(p.idle_count(), 1);
    }

    #[tokio::test]
    async fn an_error_status_comes_back_with_headers_and_body() {
        let (addr, _, _) = server("429 Too Many Requests").await;
        let url = format!("http://{addr}/w");
        let p = PlainPoster::new(&url, &url, &HttpClientConfig::default()).unwrap();
        let r = p
            .post(&HeaderMap::new(), None, Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers.get("retry-after").unwrap(), "7");
        assert_eq!(&r.body[..], b"hello");
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_replaced() {
        // A server that closes every connection after one response.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut tmp = [0u8; 4096];
                    let _ = s.read(&mut tmp).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    // Dropped: closed without `Connection: close`.
                });
            }
        });
        let url = format!("http://{addr}/w");
        let p = PlainPoster::new(&url, &url, &HttpClientConfig::default()).unwrap();
        for _ in 0..3 {
            let r = p
                .post(&HeaderMap::new(), None, Bytes::from_static(b"x"))
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::NO_CONTENT);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn applies_to_plain_http_only() {
        let http = HttpClientConfig::default();
        assert!(PlainPoster::new("https://h/w", "https://h/w", &http).is_none());
        assert!(PlainPoster::new("http://u:p@h/w", "http://u:<secret>@h/w", &http).is_none());
        assert!(PlainPoster::new("http://h:9/w", "http://h:9/w", &http).is_some());
        let proxied = HttpClientConfig {
            proxy_url: Some("http://proxy:3128".to_string()),
            ..HttpClientConfig::default()
        };
        assert!(PlainPoster::new("http://h:9/w", "http://h:9/w", &proxied).is_none());
    }
}
