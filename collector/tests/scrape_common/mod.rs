//! Test fixtures for the scrape manager: a loopback HTTP server with
//! per-path behaviours, a collecting sink, config and target builders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_collector::pipeline::RefAllocator;
use promshard_collector::scrape::{AppendError, BatchSink, ManagedTarget, ScrapeManager};
use promshard_collector::series::{AppendBatch, is_stale_marker};
use promshard_promlib::config::{Config, load_str};
use promshard_promlib::labels::Labels;
use promshard_promlib::targets::{Populated, Target, populate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a path of the test server answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with this exposition body.
    Body(String),
    /// Accepts the request and never answers.
    Hang,
    /// Headers and a first chunk, then one byte every 20 ms, never ending.
    Trickle,
}

#[derive(Default)]
pub struct ServerState {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    /// (path name, unix ms at request arrival)
    requests: Mutex<Vec<(String, i64)>>,
    inflight: Mutex<HashMap<String, usize>>,
    max_inflight: Mutex<HashMap<String, usize>>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
}

pub use promshard_collector::scrape::schedule::now_ms;

impl Server {
    pub async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_conn(conn, Arc::clone(&st)));
            }
        });
        Server { addr, state }
    }

    pub fn set(&self, name: &str, b: Behaviour) {
        self.state
            .behaviours
            .lock()
            .unwrap()
            .insert(name.to_string(), b);
    }

    /// Request arrival times of `name`.
    pub fn requests(&self, name: &str) -> Vec<i64> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn max_inflight(&self, name: &str) -> usize {
        *self
            .state
            .max_inflight
            .lock()
            .unwrap()
            .get(name)
            .unwrap_or(&0)
    }
}

struct Inflight(Arc<ServerState>, String);

impl Drop for Inflight {
    fn drop(&mut self) {
        if let Some(n) = self.0.inflight.lock().unwrap().get_mut(&self.1) {
            *n -= 1;
        }
    }
}

async fn serve_conn(mut conn: TcpStream, st: Arc<ServerState>) {
    let mut buf = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let name = path.trim_start_matches("/t/").to_string();
        st.requests.lock().unwrap().push((name.clone(), now_ms()));
        let _guard = {
            let mut inf = st.inflight.lock().unwrap();
            let n = inf.entry(name.clone()).or_insert(0);
            *n += 1;
            let mut max = st.max_inflight.lock().unwrap();
            let m = max.entry(name.clone()).or_insert(0);
            *m = (*m).max(*n);
            Inflight(Arc::clone(&st), name.clone())
        };
        let b = st.behaviours.lock().unwrap().get(&name).cloned();
        match b {
            Some(Behaviour::Body(body)) => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
            Some(Behaviour::Hang) => {
                // Wait until the client gives up (EOF) without answering.
                let mut chunk = [0u8; 64];
                let _ = conn.read(&mut chunk).await;
                return;
            }
            Some(Behaviour::Trickle) => {
                let start = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n# HELP x y\n";
                if conn.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if conn.write_all(b"#").await.is_err() {
                        return;
                    }
                }
            }
            None => {
                let resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
                if conn.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One sample as the sink saw it, with its series' labels.
#[derive(Clone, Debug)]
pub struct Seen {
    pub labels: Labels,
    pub ts: i64,
    pub value: f64,
}

#[derive(Default)]
pub struct SinkState {
    /// Series the sink knows (forgettable, as the WAL forgets idle series).
    known: HashMap<u64, Labels>,
    /// Every definition ever seen (for lookups by tests).
    all_defs: HashMap<u64, Labels>,
    samples: Vec<(u64, i64, f64)>,
    pub unknown_refusals: u64,
}

/// Collects batches; refuses, like the WAL, samples of series it does not
/// know with `UnknownSeries`.
#[derive(Default)]
pub struct CollectSink {
    pub state: Mutex<SinkState>,
    pub fail_all: AtomicBool,
    /// Each append sleeps this long first (a slow disk).
    pub append_delay_ms: AtomicU64,
}

impl BatchSink for CollectSink {
    fn append(&self, batch: &AppendBatch) -> Result<(), AppendError> {
        let delay = self.append_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(AppendError::Other("disk full (test)".into()));
        }
        let mut st = self.state.lock().unwrap();
        let defined: HashMap<u64, &Labels> = batch
            .series
            .iter()
            .map(|d| (d.series.0, &d.labels))
            .collect();
        for s in &batch.samples {
            if !defined.contains_key(&s.series.0) && !st.known.contains_key(&s.series.0) {
                st.unknown_refusals += 1;
                return Err(AppendError::UnknownSeries(s.series.0));
            }
        }
        for d in &batch.series {
            st.known.insert(d.series.0, d.labels.clone());
            st.all_defs.insert(d.series.0, d.labels.clone());
        }
        for s in &batch.samples {
            st.samples.push((s.series.0, s.timestamp_ms, s.value));
        }
        Ok(())
    }
}

impl CollectSink {
    /// Forgets every series definition (as the WAL does for idle series).
    pub fn forget_all(&self) {
        self.state.lock().unwrap().known.clear();
    }

    pub fn unknown_refusals(&self) -> u64 {
        self.state.lock().unwrap().unknown_refusals
    }

    /// Samples of series whose labels satisfy `pred`, sorted by time.
    pub fn samples(&self, pred: impl Fn(&Labels) -> bool) -> Vec<Seen> {
        let st = self.state.lock().unwrap();
        let mut out: Vec<Seen> = st
            .samples
            .iter()
            .filter_map(|(r, ts, v)| {
                let l = st.all_defs.get(r)?;
                pred(l).then(|| Seen {
                    labels: l.clone(),
                    ts: *ts,
                    value: *v,
                })
            })
            .collect();
        out.sort_by_key(|s| s.ts);
        out
    }

    /// Samples of metric `name` of test target `t` (label `tname`).
    pub fn metric(&self, t: &str, name: &str) -> Vec<Seen> {
        self.samples(|l| l.get("tname") == Some(t) && l.get("__name__") == Some(name))
    }

    /// Non-stale `up` samples of `t`.
    pub fn ups(&self, t: &str) -> Vec<Seen> {
        self.metric(t, "up")
            .into_iter()
            .filter(|s| !is_stale_marker(s.value))
            .collect()
    }

    /// Stale markers of any series of `t`.
    pub fn stale(&self, t: &str) -> Vec<Seen> {
        self.samples(|l| l.get("tname") == Some(t))
            .into_iter()
            .filter(|s| is_stale_marker(s.value))
            .collect()
    }
}

/// A config with one job per `(name, interval_ms, timeout_ms, extra yaml)`.
pub fn config(jobs: &[(&str, u64, u64, &str)]) -> Config {
    let mut y =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (name, iv, to, extra) in jobs {
        y.push_str(&format!(
            "  - job_name: {name}\n    scrape_interval: {iv}ms\n    scrape_timeout: {to}ms\n"
        ));
        for line in extra.lines() {
            y.push_str("    ");
            y.push_str(line);
            y.push('\n');
        }
    }
    load_str(&y, "test.yml").unwrap_or_else(|e| panic!("{e}\n{y}"))
}

/// A target of `job` served by `server` at `/t/{name}`, labelled
/// `tname={name}`.
pub fn target(cfg: &Config, job: &str, server: &Server, name: &str) -> Target {
    let sc = cfg.job(job).unwrap();
    let discovered = Labels::from_pairs([
        ("__address__", server.addr.to_string()),
        ("__metrics_path__", format!("/t/{name}")),
        ("tname", name.to_string()),
    ]);
    match populate(sc, discovered).unwrap() {
        Populated::Active(t) => t,
        other => panic!("{other:?}"),
    }
}

pub fn managed(t: &Target) -> ManagedTarget {
    ManagedTarget {
        target: t.clone(),
        start_at_ms: None,
    }
}

pub fn manager() -> (ScrapeManager, Arc<CollectSink>) {
    let sink = Arc::new(CollectSink::default());
    let m = ScrapeManager::new(
        Arc::clone(&sink) as Arc<dyn BatchSink>,
        Arc::new(RefAllocator::new(1)),
        std::env::temp_dir(),
    );
    (m, sink)
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A small exposition with a counter and a gauge.
pub fn body(v: u64) -> String {
    format!("# TYPE foo_total counter\nfoo_total {v}\n# TYPE bar gauge\nbar{{k=\"a\"}} 1\n")
}

/// Asserts that consecutive timestamps are exactly one interval apart.
pub fn assert_contiguous(what: &str, ts: &[i64], interval_ms: i64) {
    for w in ts.windows(2) {
        assert_eq!(
            w[1] - w[0],
            interval_ms,
            "{what}: gap or extra scrape between {} and {} in {ts:?}",
            w[0],
            w[1]
        );
    }
}
