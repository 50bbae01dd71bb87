//! Harness for the pipeline differential test: a loopback target serving a
//! scripted sequence of responses, a remote-write receiver that records
//! every sample, a real `prometheus --enable-feature=agent` scraping the
//! target, and the same responses fed through `TargetPipeline` at the
//! timestamps Prometheus used. Everything is std threads and blocking I/O.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promshard_collector::pipeline::{JobSettings, RefAllocator, TargetPipeline};
use promshard_collector::series::AppendBatch;
use promshard_promlib::exposition::Format;
use promshard_promlib::labels::Labels;
use promshard_proto::prometheus::WriteRequest;
use prost::Message;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const STALE: u64 = promshard_proto::STALE_NAN_BITS;
const JOB: &str = "diff";
/// Prometheus' scrape interval and timeout in the test config.
const INTERVAL_MS: u64 = 500;
const TIMEOUT_MS: u64 = 400;

/// One scripted response of the target.
#[derive(Clone, Debug)]
pub enum Step {
    /// 200 with `Content-Type: text/plain; version=0.0.4`.
    Text(String),
    /// 200 with the OpenMetrics 1.0 Content-Type.
    OpenMetrics(String),
    /// HTTP 500 with an empty body.
    Status500,
    /// No answer until well past the scrape timeout.
    Hang,
}

impl Step {
    fn content_type(&self) -> &'static str {
        match self {
            Step::OpenMetrics(_) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            _ => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One sample as received or produced: sorted labels, timestamp, value bits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Obs {
    pub labels: Vec<(String, String)>,
    pub ts: i64,
    pub bits: u64,
}

impl Obs {
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for Obs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ls: Vec<String> = self
            .labels
            .iter()
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect();
        let v = if self.bits == STALE {
            "StaleNaN".to_string()
        } else {
            format!("{} ({:#x})", f64::from_bits(self.bits), self.bits)
        };
        write!(f, "{{{}}} @{} = {v}", ls.join(", "), self.ts)
    }
}

/// A scenario: extra lines for the job's scrape config (indented under
/// the job), global external labels, and the target's responses.
pub struct Scenario {
    pub name: &'static str,
    pub job_extra: String,
    pub external_labels: Vec<(&'static str, &'static str)>,
    pub steps: Vec<Step>,
    /// After the last step was served, remove the target from file SD:
    /// Prometheus writes end-of-run stale markers, the pipeline gets
    /// `on_stop` at their timestamp.
    pub remove_after: bool,
    /// Extra target labels (static `labels:` of the target group).
    pub target_labels: Vec<(&'static str, &'static str)>,
}

/// What both sides produced for the scripted scrapes.
pub struct Outcome {
    /// Scrape timestamps Prometheus used: one per step, then those of the
    /// scrapes after the last step (HTTP 500) that are compared.
    pub scrape_ts: Vec<i64>,
    /// The end-of-run staleness timestamp (`remove_after`).
    pub stop_ts: Option<i64>,
    /// Per scrape: the samples at that scrape's timestamp.
    pub prometheus: Vec<Vec<Obs>>,
    pub pipeline: Vec<Vec<Obs>>,
    /// Samples at timestamps that are no compared scrape's (explicit
    /// timestamps, end-of-run stale markers).
    pub prometheus_explicit: Vec<Obs>,
    pub pipeline_explicit: Vec<Obs>,
    /// The target's labels as Prometheus sets them.
    pub instance: String,
    /// How many scripted steps there were.
    pub steps: usize,
}

pub use promshard_collector::scrape::schedule::now_ms;

/// Kills the process on drop (by its PID) and reaps it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets the flag on drop so server threads stop accepting.
struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn read_request_head(r: &mut BufReader<TcpStream>) -> Option<usize> {
    let mut content_length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let l = line.trim_end();
        if l.is_empty() {
            if first {
                continue;
            }
            return Some(content_length);
        }
        first = false;
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
}

/// Serves `steps[i]` to the i-th request, HTTP 500 after the last step.
fn serve_target(
    listener: TcpListener,
    steps: Arc<Vec<Step>>,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    accept_loop(listener, stop, move |stream| {
        let mut r = BufReader::new(stream.try_clone().unwrap());
        if read_request_head(&mut r).is_none() {
            return;
        }
        let i = served.fetch_add(1, Ordering::SeqCst);
        let mut w = stream;
        let step = steps.get(i).cloned().unwrap_or(Step::Status500);
        let resp = match &step {
                Step::Text(b) | Step::OpenMetrics(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    step.content_type(),
                    b.len()
                ),
                Step::Status500 => {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                }
                Step::Hang => {
                    std::thread::sleep(Duration::from_millis(TIMEOUT_MS * 3));
                    return;
                }
            };
        let _ = w.write_all(resp.as_bytes());
        let _ = w.flush();
    });
}

/// Records every sample of every remote-write request.
fn serve_receiver(listener: TcpListener, got: Arc<Mutex<Vec<Obs>>>, stop: Arc<AtomicBool>) {
    accept_loop(listener, stop, move |stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        while let Some(len) = read_request_head(&mut r) {
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy body");
            let req = WriteRequest::decode(raw.as_slice()).expect("WriteRequest");
            {
                let mut g = got.lock().unwrap();
                for ts in req.timeseries {
                    let mut labels: Vec<(String, String)> =
                        ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                    labels.sort();
                    for s in ts.samples {
                        g.push(Obs {
                            labels: labels.clone(),
                            ts: s.timestamp,
                            bits: s.value.to_bits(),
                        });
                    }
                }
            }
            if w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
    });
}

/// Accepts connections on `listener` until `stop` is set; each one is
/// handled by `handle` (on a blocking stream) on its own thread.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Clone + Send + 'static,
) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let handle = handle.clone();
        std::thread::spawn(move || handle(stream));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_yaml(sc: &Scenario, target: &str, receiver: &str, sd_file: &Path) -> String {
    let mut y = String::new();
    y.push_str(&format!(
        "global:\n  scrape_interval: {INTERVAL_MS}ms\n  scrape_timeout: {TIMEOUT_MS}ms\n"
    ));
    if !sc.external_labels.is_empty() {
        y.push_str("  external_labels:\n");
        for (k, v) in &sc.external_labels {
            y.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    y.push_str(&format!("scrape_configs:\n  - job_name: {JOB}\n"));
    for line in sc.job_extra.lines() {
        if !line.trim().is_empty() {
            y.push_str(&format!("    {line}\n"));
        }
    }
    if sc.remove_after {
        y.push_str(&format!(
            "    file_sd_configs:\n      - files: ['{}']\n",
            sd_file.display()
        ));
    } else {
        y.push_str(&format!(
            "    static_configs:\n      - targets: ['{target}']\n"
        ));
        if !sc.target_labels.is_empty() {
            y.push_str("        labels:\n");
            for (k, v) in &sc.target_labels {
                y.push_str(&format!("          {k}: {v:?}\n"));
            }
        }
    }
    y.push_str(&format!(
        "remote_write:\n  - url: http://{receiver}/write\n    queue_config:\n      batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n    metadata_config:\n      send: false\n"
    ));
    y
}

/// Runs Prometheus on the scenario, then the pipeline on the same
/// responses at Prometheus' scrape timestamps.
pub fn run(sc: &Scenario) -> Outcome {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is not installed (the Debian prometheus package)"
    );
    let n = sc.steps.len();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopFlag(Arc::clone(&stop));

    let target_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = target_l.local_addr().unwrap().to_string();
    let served = Arc::new(AtomicUsize::new(0));
    {
        let (steps, served, stop) = (
            Arc::new(sc.steps.clone()),
            Arc::clone(&served),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || serve_target(target_l, steps, served, stop));
    }
    let recv_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = recv_l.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::<Obs>::new()));
    {
        let (got, stop) = (Arc::clone(&got), Arc::clone(&stop));
        std::thread::spawn(move || serve_receiver(recv_l, got, stop));
    }

    let dir = tempfile::tempdir().unwrap();
    let sd_file = dir.path().join("targets.json");
    let write_sd = |targets: &str| {
        let tmp = dir.path().join("targets.json.tmp");
        std::fs::write(&tmp, format!("[{{\"targets\": [{targets}]}}]")).unwrap();
        std::fs::rename(&tmp, &sd_file).unwrap();
    };
    assert!(
        sc.target_labels.is_empty() || !sc.remove_after,
        "target labels with file SD are not supported by the harness"
    );
    write_sd(&format!("\"{target}\""));
    let yaml = config_yaml(sc, &target, &receiver, &sd_file);
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, &yaml).unwrap();
    let data = dir.path().join("data");
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(PROMETHEUS)
        .arg("--enable-feature=agent")
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.agent.path={}", data.display()))
        .arg(format!("--web.listen-address={web}"))
        .arg("--log.level=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start prometheus");
    let mut guard = ChildGuard(child);

    // Wait for the scripted scrapes plus one more (whose `up` follows all
    // scripted samples in the WAL) to arrive at the receiver.
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_millis(INTERVAL_MS * n as u64 * 2);
    // With `remove_after`: for the end-of-run stale marker of `up`.
    let mut removed = false;
    loop {
        let (ups, stale_up) = {
            let g = got.lock().unwrap();
            let ups = g
                .iter()
                .filter(|o| o.name() == "up" && o.bits != STALE)
                .count();
            let stale = g.iter().any(|o| o.name() == "up" && o.bits == STALE);
            (ups, stale)
        };
        if sc.remove_after {
            if !removed && served.load(Ordering::SeqCst) >= n {
                write_sd("");
                removed = true;
            }
            if stale_up {
                break;
            }
        } else if ups > n {
            break;
        }
        if let Ok(Some(status)) = guard.0.try_wait() {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!(
                "{}: prometheus exited ({status}):\n{log}\nconfig:\n{yaml}",
                sc.name
            );
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!(
                "{}: timed out: {ups} up samples, {} requests served\n{log}",
                sc.name,
                served.load(Ordering::SeqCst)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the last batch of samples arrive.
    std::thread::sleep(Duration::from_millis(400));
    drop(guard);
    let received = std::mem::take(&mut *got.lock().unwrap());
    if std::env::var_os("PIPEDIFF_LOG").is_some() {
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        eprintln!("--- {} prometheus log\n{log}", sc.name);
    }

    // Scrape timestamps: the `up` samples (every scrape writes one).
    let all_scrape_ts: BTreeSet<i64> = received
        .iter()
        .filter(|o| o.name() == "up" && o.bits != STALE)
        .map(|o| o.ts)
        .collect();
    let stop_ts = received
        .iter()
        .find(|o| o.name() == "up" && o.bits == STALE)
        .map(|o| o.ts);
    let scrape_ts: Vec<i64> = if sc.remove_after {
        all_scrape_ts.iter().copied().collect()
    } else {
        all_scrape_ts.iter().copied().take(n + 1).collect()
    };
    assert!(scrape_ts.len() > n, "{}: scrape timestamps", sc.name);
    let n = scrape_ts.len();

    let pipeline_out = run_pipeline(sc, &yaml, &target, &scrape_ts, stop_ts);

    let bucket = |obs: Vec<Obs>| -> (Vec<Vec<Obs>>, Vec<Obs>) {
        let index: BTreeMap<i64, usize> =
            scrape_ts.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let mut per = vec![Vec::new(); n];
        let mut explicit = Vec::new();
        for o in obs {
            if let Some(&i) = index.get(&o.ts) {
                per[i].push(o);
            } else if !all_scrape_ts.contains(&o.ts) {
                explicit.push(o);
            }
        }
        for p in &mut per {
            p.sort();
        }
        explicit.sort();
        (per, explicit)
    };
    let (prometheus, prometheus_explicit) = bucket(received);
    let (pipeline, pipeline_explicit) = bucket(pipeline_out);
    Outcome {
        scrape_ts,
        stop_ts,
        prometheus,
        pipeline,
        prometheus_explicit,
        pipeline_explicit,
        instance: target,
        steps: sc.steps.len(),
    }
}

/// Feeds step i at Prometheus' i-th scrape timestamp (HTTP 500 after the
/// last step, as the target answers), then `on_stop` at `stop_ts`.
fn run_pipeline(
    sc: &Scenario,
    yaml: &str,
    target: &str,
    scrape_ts: &[i64],
    stop_ts: Option<i64>,
) -> Vec<Obs> {
    let cfg = promshard_promlib::config::load_str(yaml, "prometheus.yml").expect("config");
    let settings = Arc::new(JobSettings::new(
        &cfg.scrape_configs[0],
        &cfg.global.external_labels,
    ));
    let mut target_labels = Labels::from_pairs([("instance", target), ("job", JOB)]);
    for (k, v) in &sc.target_labels {
        target_labels.insert(*k, *v);
    }
    let mut p = TargetPipeline::new(settings, target_labels, Arc::new(RefAllocator::new(1)));
    let mut defs: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut batches: Vec<AppendBatch> = Vec::new();
    for (i, &ts) in scrape_ts.iter().enumerate() {
        let step = sc.steps.get(i).unwrap_or(&Step::Status500);
        let mut batch = AppendBatch::default();
        let d = Duration::from_millis(3);
        match step {
            Step::Text(b) => {
                p.on_scrape(b.as_bytes(), Format::Text, ts, d, &mut batch);
            }
            Step::OpenMetrics(b) => {
                p.on_scrape(b.as_bytes(), Format::OpenMetrics, ts, d, &mut batch);
            }
            Step::Status500 => {
                p.on_failure(
                    "server returned HTTP status 500 Internal Server Error",
                    ts,
                    d,
                    &mut batch,
                );
            }
            Step::Hang => {
                p.on_failure("context deadline exceeded", ts, d, &mut batch);
            }
        }
        batches.push(batch);
    }
    if let Some(ts) = stop_ts {
        let mut batch = AppendBatch::default();
        p.on_stop(ts, false, &mut batch);
        batches.push(batch);
    }
    for batch in batches {
        for def in &batch.series {
            let mut ls: Vec<(String, String)> = def
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            ls.sort();
            defs.insert(def.series.0, ls);
        }
        for s in &batch.samples {
            let labels = defs
                .get(&s.series.0)
                .unwrap_or_else(|| panic!("{}: sample of undefined ref {}", sc.name, s.series.0))
                .clone();
            out.push(Obs {
                labels,
                ts: s.timestamp_ms,
                bits: on_the_wire(s.value).to_bits(),
            });
        }
    }
    out
}

/// `v` after a trip through remote write's protobuf encoding (prost, as
/// promshard's sender uses): proto3 leaves out a zero double, so -0 arrives
/// as +0 from any sender.
fn on_the_wire(v: f64) -> f64 {
    let s = promshard_proto::prometheus::Sample {
        value: v,
        timestamp: 1,
    };
    promshard_proto::prometheus::Sample::decode(s.encode_to_vec().as_slice())
        .expect("sample round trip")
        .value
}

/// Names whose values depend on timing and are compared for presence and
/// staleness only.
pub const TIMING: [&str; 1] = ["scrape_duration_seconds"];

fn masked(v: &[Obs]) -> Vec<Obs> {
    let mut v: Vec<Obs> = v
        .iter()
        .map(|o| {
            let mut o = o.clone();
            if TIMING.contains(&o.name()) && o.bits != STALE {
                o.bits = 0;
            }
            o
        })
        .collect();
    v.sort();
    v
}

fn diff(a: &[Obs], b: &[Obs]) -> (Vec<Obs>, Vec<Obs>) {
    // Multiset difference (both sorted).
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.clone());
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

impl Outcome {
    /// Every difference between Prometheus and the pipeline, as text
    /// (empty: identical).
    pub fn differences(&self) -> String {
        let mut s = String::new();
        let mut section = |title: String, a: &[Obs], b: &[Obs]| {
            let (only_p, only_q) = diff(&masked(a), &masked(b));
            if only_p.is_empty() && only_q.is_empty() {
                return;
            }
            s.push_str(&format!("{title}:\n"));
            for o in only_p {
                s.push_str(&format!("  only prometheus: {o}\n"));
            }
            for o in only_q {
                s.push_str(&format!("  only pipeline:   {o}\n"));
            }
        };
        for i in 0..self.prometheus.len() {
            section(
                format!("scrape {i} @{} ({})", self.scrape_ts[i], self.step_name(i)),
                &self.prometheus[i],
                &self.pipeline[i],
            );
        }
        section(
            format!(
                "other timestamps (explicit; end of run @{:?})",
                self.stop_ts
            ),
            &self.prometheus_explicit,
            &self.pipeline_explicit,
        );
        s
    }

    /// Panics with the differences and both sides' samples if any.
    pub fn assert_same(&self, name: &str) {
        let d = self.differences();
        if !d.is_empty() {
            let mut dump = String::new();
            for (i, v) in self.prometheus.iter().enumerate() {
                dump.push_str(&format!("prometheus scrape {i}:\n"));
                for o in v {
                    dump.push_str(&format!("  {o}\n"));
                }
            }
            panic!("{name}: pipeline differs from prometheus 2.42 agent\n{d}\n{dump}");
        }
    }

    fn step_name(&self, i: usize) -> String {
        if i < self.steps {
            format!("step {i}")
        } else {
            "after the steps: HTTP 500".to_string()
        }
    }

    /// The outcome without the samples `skip` matches, on both sides (for
    /// a known, asserted divergence).
    pub fn without(&self, skip: impl Fn(&Obs) -> bool) -> Outcome {
        let keep = |v: &Vec<Obs>| v.iter().filter(|o| !skip(o)).cloned().collect::<Vec<_>>();
        Outcome {
            scrape_ts: self.scrape_ts.clone(),
            stop_ts: self.stop_ts,
            steps: self.steps,
            prometheus: self.prometheus.iter().map(keep).collect(),
            pipeline: self.pipeline.iter().map(keep).collect(),
            prometheus_explicit: keep(&self.prometheus_explicit),
            pipeline_explicit: keep(&self.pipeline_explicit),
            instance: self.instance.clone(),
        }
    }

    /// Prometheus' value of a synthetic series at scrape `i`.
    pub fn synthetic(&self, i: usize, name: &str) -> Option<f64> {
        self.prometheus[i]
            .iter()
            .find(|o| o.name() == name)
            .map(|o| f64::from_bits(o.bits))
    }
}
