//! Shared by the remote_* tests: an in-test remote write receiver on a
//! loopback port (raw HTTP/1.1 over tokio, one request per connection, so
//! that stopping it really refuses connections), config helpers and
//! input builders.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promshard_collector::series::{AppendBatch, Sample, SeriesDef, SeriesRef};
use promshard_promlib::config::RemoteWriteConfig;
use promshard_promlib::labels::Labels;
use promshard_proto::prometheus::WriteRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub request: WriteRequest,
    /// The status the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn sample_count(&self) -> usize {
        self.request
            .timeseries
            .iter()
            .map(|t| t.samples.len())
            .sum()
    }
}

/// A scripted reply: status and optional Retry-After.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Wait this long before answering (slow receiver).
    pub delay: Duration,
    /// A `Location` header (redirects).
    pub location: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
            location: None,
        }
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Replies used in order; 204 when empty.
    script: VecDeque<Reply>,
    /// Applied to every request when the script is empty.
    default_delay: Duration,
}

/// The receiver; stops (refusing connections) on drop or [`stop`].
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(listener, state.clone()));
        Receiver {
            addr,
            state,
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn set_default_delay(&self, d: Duration) {
        self.state.lock().unwrap().default_delay = d;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Stops listening and kills open connections.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port (retrying the bind for a while).
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.task = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Connections live in the set: aborting this task drops them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    conns.spawn(handle(stream, state.clone()));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Headers.
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        assert!(buf.len() < 1 << 20, "headers too large");
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let _request_line = lines.next();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = &buf[header_end..header_end + len];
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("body is snappy block format");
    let request = WriteRequest::decode(raw.as_slice()).expect("body is a WriteRequest");
    let reply = {
        let mut st = state.lock().unwrap();
        let reply = st.script.pop_front().unwrap_or(Reply {
            status: 204,
            retry_after: None,
            delay: st.default_delay,
            location: None,
        });
        st.received.push(Received {
            at: Instant::now(),
            headers,
            request,
            status: reply.status,
        });
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = format!(
        "HTTP/1.1 {} X\r\nContent-Length: 0\r\nConnection: close\r\n",
        reply.status
    );
    if let Some(ra) = &reply.retry_after {
        resp.push_str(&format!("Retry-After: {ra}\r\n"));
    }
    if let Some(to) = &reply.location {
        resp.push_str(&format!("Location: {to}\r\n"));
    }
    resp.push_str("\r\n");
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A `remote_write` entry for `url` with fast test settings, `extra`
/// (YAML lines, indented 4 spaces) added to the entry.
pub fn remote_config(url: &str, queue: &str, extra: &str) -> RemoteWriteConfig {
    let text = format!(
        "remote_write:\n  - url: {url}\n    remote_timeout: 5s\n    queue_config:\n      min_backoff: 50ms\n      max_backoff: 400ms\n      batch_send_deadline: 100ms\n{queue}{extra}"
    );
    let cfg = promshard_promlib::config::load_str(&text, "test.yml")
        .unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    cfg.remote_write
        .into_iter()
        .next()
        .expect("one remote_write")
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

pub fn def(series: u64, pairs: &[(&str, &str)]) -> SeriesDef {
    SeriesDef {
        series: SeriesRef(series),
        labels: labels(pairs),
    }
}

pub fn sample(series: u64, ts: i64, v: f64) -> Sample {
    Sample {
        series: SeriesRef(series),
        timestamp_ms: ts,
        value: v,
    }
}

pub fn batch(series: Vec<SeriesDef>, samples: Vec<Sample>) -> AppendBatch {
    AppendBatch {
        series,
        samples,
        metadata: Vec::new(),
    }
}

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (labels as name=value strings, [(ts, value bits)]) per accepted series
/// sample, flattened in arrival order.
pub fn accepted_samples(r: &Receiver) -> Vec<(String, i64, u64)> {
    let mut out = Vec::new();
    for req in r.accepted() {
        for ts in &req.request.timeseries {
            let name = ts
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            for s in &ts.samples {
                out.push((name.clone(), s.timestamp, s.value.to_bits()));
            }
        }
    }
    out
}
