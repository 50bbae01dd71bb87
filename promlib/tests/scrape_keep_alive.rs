//! Keep-alive of plain `http://` scrapes (the fast path's own connection
//! pool) against an in-test HTTP/1.1 server on loopback that keeps
//! connections open and counts them. Every server task and every scrape is
//! bounded in time.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use promshard_promlib::config::HttpClientConfig;
use promshard_promlib::scrape::{ScrapeClient, ScrapeError, ScrapeUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
enum Action {
    /// Writes the bytes, keeps the connection for the next request.
    Respond(Vec<u8>),
    /// Writes the bytes, then closes after the delay.
    RespondThenClose(Vec<u8>, Duration),
    /// Closes without answering.
    Close,
    /// Writes the bytes, then stays silent for seconds.
    Stall(Vec<u8>),
}

/// Decides per request: (request number over all connections, request
/// number on this connection), both from 0.
type Plan = dyn Fn(usize, usize) -> Action + Send + Sync;

struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Every request head as received.
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(plan: impl Fn(usize, usize) -> Action + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let plan: Arc<Plan> = Arc::new(plan);
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let (acc, reqs, hs) = (accepted.clone(), requests.clone(), heads.clone());
    tokio::spawn(async move {
        for _ in 0..50 {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, Ordering::SeqCst);
            let (plan, reqs, hs) = (plan.clone(), reqs.clone(), hs.clone());
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(20),
                serve_conn(conn, plan, reqs, hs),
            ));
        }
    });
    Server {
        addr,
        accepted,
        requests,
        heads,
    }
}

async fn serve_conn(
    mut conn: TcpStream,
    plan: Arc<Plan>,
    reqs: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut data = Vec::new();
    let mut b = [0u8; 4096];
    for on_conn in 0..100 {
        // One GET head (no body).
        let end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&b[..n]),
            }
        };
        let head = data.drain(..end).collect::<Vec<u8>>();
        heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).to_string());
        let n = reqs.fetch_add(1, Ordering::SeqCst);
        match plan(n, on_conn) {
            Action::Respond(bytes) => {
                if conn.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Action::RespondThenClose(bytes, after) => {
                let _ = conn.write_all(&bytes).await;
                tokio::time::sleep(after).await;
                return;
            }
            Action::Close => return,
            Action::Stall(bytes) => {
                let _ = conn.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                return;
            }
        }
    }
}

fn ok(body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn client(limit: u64) -> ScrapeClient {
    ScrapeClient::from_http_config(
        &HttpClientConfig::default(),
        std::path::Path::new("."),
        limit,
    )
    .unwrap()
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn second_scrape_reuses_the_connection() {
    let server = serve(|n, _| Action::Respond(ok(format!("up {n}\n").as_bytes(), &[]))).await;
    let c = client(0);
    let mut buf = BytesMut::new();
    for i in 0..5 {
        let r = c
            .scrape_into(&ScrapeUrl::new(&server.url()), T, &mut buf)
            .await
            .unwrap();
        assert_eq!(r.body, format!("up {i}\n").as_bytes());
    }
    assert_eq!(server.requests(), 5);
    assert_eq!(server.accepted(), 1, "all five scrapes on one connection");

    // Clones share the pool.
    let c2 = c.clone();
    c2.scrape(&server.url(), T).await.unwrap();
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn request_line_and_host_header_on_the_fast_path() {
    let server = serve(|_, _| Action::Respond(ok(b"a 1\n", &[]))).await;
    let url = format!("http://{}/metrics?x=1&y=%20#frag", server.addr);
    client(0).scrape(&url, T).await.unwrap();
    let head = server.heads.lock().unwrap()[0].clone();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("GET /metrics?x=1&y=%20 HTTP/1.1"));
    let names: Vec<&str> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            if k == "Host" {
                assert_eq!(v, server.addr.to_string());
            }
            k
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "Accept",
            "Accept-Encoding",
            "Host",
            "User-Agent",
            "X-Prometheus-Scrape-Timeout-Seconds"
        ]
    );
}

#[tokio::test]
async fn chunked_bodies_keep_the_connection_too() {
    let body = b"a_total 1\n".repeat(500);
    let reply = chunked(&body);
    let server = serve(move |_, _| Action::Respond(reply.clone())).await;
    let c = client(0);
    for _ in 0..3 {
        let r = c.scrape(&server.url(), T).await.unwrap();
        assert_eq!(&r.body[..], &body[..]);
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn connection_close_response_is_not_reused() {
    let server = serve(|_, _| {
        Action::RespondThenClose(ok(b"a 1\n", &[("Connection", "close")]), Duration::ZERO)
    })
    .await;
    let c = client(0);
    for _ in 0..3 {
        c.scrape(&server.url(), T).await.unwrap();
    }
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn server_closing_an_idle_connection_still_gives_the_next_scrape() {
    // Keep-alive response, then the server closes the connection shortly
    // after: the client learns of it while the connection is idle.
    let server =
        serve(|_, _| Action::RespondThenClose(ok(b"a 1\n", &[]), Duration::from_millis(50))).await;
    let c = client(0);
    c.scrape(&server.url(), T).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.scrape(&server.url(), T).await.unwrap();
    assert_eq!(&r.body[..], b"a 1\n");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn reused_connection_dropped_at_the_next_request_is_retried_on_a_new_one() {
    // The server answers the first request of each connection and closes
    // at the second without answering (the race of an idle timeout on the
    // server side): the scrape is retried once on a fresh connection.
    let server = serve(|_, on_conn| match on_conn {
        0 => Action::Respond(ok(b"a 1\n", &[])),
        _ => Action::Close,
    })
    .await;
    let c = client(0);
    for i in 0..3 {
        let r = c.scrape(&server.url(), T).await;
        assert_eq!(&r.unwrap().body[..], b"a 1\n", "scrape {i}");
    }
    assert_eq!(server.accepted(), 3);
    // 3 answered + 2 refused on a reused connection.
    assert_eq!(server.requests(), 5);
}

#[tokio::test]
async fn fresh_connection_failure_is_not_retried() {
    let server = serve(|_, _| Action::Close).await;
    let err = client(0).scrape(&server.url(), T).await.unwrap_err();
    assert!(matches!(err, ScrapeError::Request { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("Get \"{}\": ", server.url()))
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn scrape_cut_by_its_timeout_does_not_poison_the_next() {
    // Request 1 gets half a body and then silence; every other request a
    // full answer.
    let server = serve(|n, _| {
        let body = format!("req {n}\n").repeat(100).into_bytes();
        if n == 1 {
            let mut partial = ok(&body, &[]);
            partial.truncate(partial.len() - body.len() / 2);
            Action::Stall(partial)
        } else {
            Action::Respond(ok(&body, &[]))
        }
    })
    .await;
    let c = client(0);
    let r = c.scrape(&server.url(), T).await.unwrap();
    assert_eq!(&r.body[..], "req 0\n".repeat(100).as_bytes());
    let err = c
        .scrape(&server.url(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, ScrapeError::Timeout { .. }), "{err:?}");
    // The cut connection is gone: the next scrape opens a new one and gets
    // its own complete body, not the rest of the stalled one.
    for n in 2..4 {
        let r = c.scrape(&server.url(), T).await.unwrap();
        assert_eq!(&r.body[..], format!("req {n}\n").repeat(100).as_bytes());
    }
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn error_status_then_success() {
    let server = serve(|n, _| {
        if n == 0 {
            Action::Respond(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nnope".to_vec(),
            )
        } else {
            Action::Respond(ok(b"a 1\n", &[]))
        }
    })
    .await;
    let c = client(0);
    let err = c.scrape(&server.url(), T).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "server returned HTTP status 503 Service Unavailable"
    );
    c.scrape(&server.url(), T).await.unwrap();
    c.scrape(&server.url(), T).await.unwrap();
    assert!(server.accepted() <= 2, "{}", server.accepted());
}

#[tokio::test]
async fn gzip_with_the_body_size_limit_over_keep_alive() {
    let plain = b"# TYPE a counter\na_total 1\n".repeat(4000);
    let n = plain.len() as u64;
    let packed = gzip(&plain);
    assert!((packed.len() as u64) < n / 10);
    let reply = ok(
        &packed,
        &[("Content-Encoding", "gzip"), ("Content-Type", "text/plain")],
    );
    let server = serve(move |_, _| Action::Respond(reply.clone())).await;

    // Under the limit: decoded, and the connection is kept.
    let c = client(n + 1);
    for _ in 0..3 {
        let r = c.scrape(&server.url(), T).await.unwrap();
        assert_eq!(r.body_size as u64, n);
        assert_eq!(&r.body[..], &plain[..]);
        assert_eq!(r.content_type, "text/plain");
    }
    assert_eq!(server.accepted(), 1);

    // Exactly the limit fails (as Prometheus), and so does less.
    for limit in [n, n - 1, 1000] {
        let err = client(limit).scrape(&server.url(), T).await.unwrap_err();
        assert!(
            matches!(err, ScrapeError::BodySizeLimit { limit: l, .. } if l == limit),
            "limit {limit}: {err:?}"
        );
        assert_eq!(err.url(), server.url());
    }
}

#[tokio::test]
async fn corrupt_gzip_is_a_request_error_naming_the_url() {
    let mut packed = gzip(&b"a 1\n".repeat(100));
    let len = packed.len();
    packed[len - 6] ^= 0xff; // the CRC
    let reply = ok(&packed, &[("Content-Encoding", "gzip")]);
    let server = serve(move |_, _| Action::Respond(reply.clone())).await;
    let url = server.url();
    let err = client(0).scrape(&url, T).await.unwrap_err();
    assert!(matches!(err, ScrapeError::Request { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("Get \"{url}\": ")),
        "{err}"
    );
}

#[tokio::test]
async fn concurrent_scrapes_of_one_target_each_get_their_own_body() {
    let server = serve(|n, _| Action::Respond(ok(format!("n {n}\n").as_bytes(), &[]))).await;
    let c = client(0);
    let url = server.url();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let futs = (0..8).map(|_| c.scrape(&url, T));
        for r in futures_util::future::join_all(futs).await {
            seen.push(String::from_utf8(r.unwrap().body.to_vec()).unwrap());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 24, "every scrape its own response");
    assert!(server.accepted() <= 24);
}
