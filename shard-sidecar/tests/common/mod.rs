//! Harness of the agent tests: a fake coordinator (a tonic server of
//! `Coordinator.Attach` on loopback), a metrics fixture, a remote-write
//! capture, and an embedded collector in coordinated mode.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use promshard_collector::run::{Collector, CollectorOptions, TargetSource};
use promshard_collector::wal::WalOptions;
use promshard_promlib::labels::{Labels, target_id};
use promshard_proto::v1;
use promshard_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use promshard_sidecar::{Agent, AgentOptions, AgentStatus, NativeBackend};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

pub const STALE_NAN_BITS: u64 = promshard_proto::STALE_NAN_BITS;

pub use promshard_collector::scrape::schedule::now_ms;

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- fake coordinator

type Outbound = mpsc::Sender<Result<v1::CoordinatorMessage, Status>>;

#[derive(Clone)]
struct Svc {
    inbound: mpsc::UnboundedSender<v1::ShardMessage>,
    sessions: mpsc::UnboundedSender<Outbound>,
    token: Option<String>,
}

#[tonic::async_trait]
impl Coordinator for Svc {
    type AttachStream =
        Pin<Box<dyn Stream<Item = Result<v1::CoordinatorMessage, Status>> + Send + 'static>>;

    async fn attach(
        &self,
        req: Request<Streaming<v1::ShardMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if let Some(t) = &self.token {
            let got = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if got != format!("Bearer {t}") {
                return Err(Status::unauthenticated("bad token"));
            }
        }
        let mut stream = req.into_inner();
        let (otx, orx) = mpsc::channel(64);
        let _ = self.sessions.send(otx);
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if inbound.send(m).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(orx))))
    }
}

/// A fake coordinator on loopback. Every session's outbound sender and
/// every shard message are handed to the test.
pub struct FakeCoordinator {
    pub addr: SocketAddr,
    inbound: mpsc::UnboundedReceiver<v1::ShardMessage>,
    sessions: mpsc::UnboundedReceiver<Outbound>,
    current: Option<Outbound>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeCoordinator {
    pub async fn start(addr: SocketAddr, token: Option<&str>) -> FakeCoordinator {
        Self::start_with_tls(addr, token, None).await
    }

    /// `tls`: PEM certificate chain and key of the server.
    pub async fn start_with_tls(
        addr: SocketAddr,
        token: Option<&str>,
        tls: Option<(String, String)>,
    ) -> FakeCoordinator {
        // The port may still be held by the previous server for a moment.
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("bind the fake coordinator");
        let addr = listener.local_addr().unwrap();
        let (itx, inbound) = mpsc::unbounded_channel();
        let (stx, sessions) = mpsc::unbounded_channel();
        let svc = Svc {
            inbound: itx,
            sessions: stx,
            token: token.map(str::to_string),
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = tls {
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .expect("server TLS config");
        }
        let server = tokio::spawn(async move {
            let _ = builder
                .add_service(CoordinatorServer::new(svc))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        FakeCoordinator {
            addr,
            inbound,
            sessions,
            current: None,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the next session and its Hello.
    pub async fn accept(&mut self, timeout: Duration) -> v1::Hello {
        let s = tokio::time::timeout(timeout, self.sessions.recv())
            .await
            .expect("a shard attaches in time")
            .expect("sessions channel open");
        self.current = Some(s);
        match self.next(timeout).await.msg {
            Some(v1::shard_message::Msg::Hello(h)) => h,
            other => panic!("first message is not Hello: {other:?}"),
        }
    }

    pub async fn send(&self, msg: v1::coordinator_message::Msg) {
        self.current
            .as_ref()
            .expect("a session")
            .send(Ok(v1::CoordinatorMessage { msg: Some(msg) }))
            .await
            .expect("session open");
    }

    pub async fn next(&mut self, timeout: Duration) -> v1::ShardMessage {
        tokio::time::timeout(timeout, self.inbound.recv())
            .await
            .expect("a shard message in time")
            .expect("inbound open")
    }

    /// The next Ack (skipping reports and pongs).
    pub async fn ack(&mut self, timeout: Duration) -> v1::Ack {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(v1::shard_message::Msg::Ack(a)) = self.next(left).await.msg {
                return a;
            }
        }
    }

    /// The next Report whose targets satisfy `cond`.
    pub async fn report_where(
        &mut self,
        timeout: Duration,
        cond: impl Fn(&v1::Report) -> bool,
    ) -> v1::Report {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(v1::shard_message::Msg::Report(r)) = self.next(left).await.msg
                && cond(&r)
            {
                return r;
            }
        }
    }

    /// Stops the server and ends every session (as a crash would).
    pub async fn kill(mut self) -> SocketAddr {
        self.server.abort();
        let _ = (&mut self.server).await;
        self.current = None;
        while self.sessions.try_recv().is_ok() {}
        self.addr
    }
}

// ---------------------------------------------------------------- fixture + capture

#[derive(Default)]
struct FixtureState {
    hits: Vec<i64>,
}

/// Serves `/m` with a small text body; remembers when each scrape came.
pub struct Fixture {
    pub addr: SocketAddr,
    state: Arc<Mutex<FixtureState>>,
    task: tokio::task::JoinHandle<()>,
}

pub const FIXTURE_BODY: &str = "# TYPE fx_a gauge\nfx_a 1\nfx_b{k=\"1\"} 2\nfx_b{k=\"2\"} 3\n";

impl Fixture {
    pub async fn start() -> Fixture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FixtureState::default()));
        let s = state.clone();
        let app = axum::Router::new().route(
            "/m",
            axum::routing::get(move || {
                let s = s.clone();
                async move {
                    s.lock().unwrap().hits.push(now_ms());
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        FIXTURE_BODY,
                    )
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fixture { addr, state, task }
    }

    pub fn hits(&self) -> Vec<i64> {
        self.state.lock().unwrap().hits.clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One received sample: series labels, timestamp, value bits.
pub type Sample = (Vec<(String, String)>, i64, u64);

/// A remote-write receiver keeping every sample.
pub struct Capture {
    pub addr: SocketAddr,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    pub async fn start() -> Capture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let s = samples.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |body: Bytes| {
                let s = s.clone();
                async move {
                    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let Ok(req) = promshard_proto::prometheus::WriteRequest::decode(&raw[..])
                    else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let mut g = s.lock().unwrap();
                    for ts in req.timeseries {
                        let labels: Vec<(String, String)> =
                            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                        for smp in ts.samples {
                            g.push((labels.clone(), smp.timestamp, smp.value.to_bits()));
                        }
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Capture {
            addr,
            samples,
            task,
        }
    }

    /// Samples of series with `__name__ = name`.
    pub fn named(&self, name: &str) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _, _)| l.iter().any(|(n, v)| n == "__name__" && v == name))
            .cloned()
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- shard

pub const JOB: &str = "fx";
pub const INTERVAL: &str = "500ms";
pub const INTERVAL_MS: i64 = 500;

pub fn job_yaml(name: &str) -> String {
    format!(
        "job_name: {name}\nscrape_interval: {INTERVAL}\nscrape_timeout: 400ms\nmetrics_path: /m\n"
    )
}

pub fn jobs_msg(defs: &[(&str, &str)]) -> v1::coordinator_message::Msg {
    v1::coordinator_message::Msg::Jobs(v1::JobDefinitions {
        jobs: defs
            .iter()
            .map(|(name, yaml)| v1::JobDefinition {
                job_name: name.to_string(),
                config_hash: format!("h-{}", yaml.len()),
                scrape_config_yaml: yaml.to_string(),
            })
            .collect(),
        removed_jobs: Vec::new(),
        global_config_yaml: String::new(),
    })
}

/// The protocol form of the target of `job` with final `labels` (its id
/// computed as the coordinator does).
pub fn proto_target(job: &str, labels: Labels) -> v1::Target {
    promshard_promlib::targets::Target {
        id: target_id(job, &labels),
        job_name: job.to_string(),
        discovered_labels: labels.clone(),
        labels,
    }
    .to_proto()
}

/// The target of job `job` at `addr`, with its final labels and id.
pub fn target(job: &str, addr: SocketAddr) -> v1::Target {
    let labels = Labels::from_pairs([
        ("__address__", addr.to_string()),
        ("__metrics_path__", "/m".to_string()),
        ("__scheme__", "http".to_string()),
        ("__scrape_interval__", INTERVAL.to_string()),
        ("__scrape_timeout__", "400ms".to_string()),
        ("instance", addr.to_string()),
        ("job", job.to_string()),
    ]);
    proto_target(job, labels)
}

pub fn delta(
    version: u64,
    base: u64,
    add: Vec<v1::TargetAdd>,
    remove: Vec<v1::TargetRemove>,
) -> v1::coordinator_message::Msg {
    v1::coordinator_message::Msg::Assignment(v1::AssignmentDelta {
        version,
        base_version: base,
        full: false,
        add,
        remove,
    })
}

pub fn add(t: v1::Target) -> v1::TargetAdd {
    v1::TargetAdd {
        target: Some(t),
        start_at_unix_ms: 0,
    }
}

/// An embedded collector in coordinated mode with its agent.
pub struct Shard {
    pub collector: Option<Collector>,
    pub agent: tokio::task::JoinHandle<()>,
    pub status: watch::Receiver<AgentStatus>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Shard {
    pub async fn start(
        coordinator: &str,
        capture: &Capture,
        token_file: Option<std::path::PathBuf>,
    ) -> Shard {
        Self::start_with(coordinator, capture, |o| o.token_file = token_file).await
    }

    /// With the agent's options adjusted by `adjust`.
    pub async fn start_with(
        coordinator: &str,
        capture: &Capture,
        adjust: impl FnOnce(&mut AgentOptions),
    ) -> Shard {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  external_labels:\n    shard: s1\n\
                 scrape_configs:\n  - job_name: from_file\n    static_configs:\n      - targets: ['127.0.0.1:1']\n\
                 remote_write:\n  - url: http://{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 100ms\n      \
                 min_backoff: 50ms\n      max_backoff: 500ms\n    metadata_config:\n      send: false\n",
                capture.addr
            ),
        )
        .unwrap();
        let options = CollectorOptions {
            config_file: cfg,
            storage_path: dir.path().join("data"),
            listen_address: "127.0.0.1:0".parse().unwrap(),
            wal: WalOptions::default(),
        };
        let collector = Collector::start_with(options, TargetSource::External)
            .await
            .expect("collector starts");
        let backend = Arc::new(NativeBackend::new(collector.handle()).await);
        let mut opts = AgentOptions::new(coordinator, "s1");
        opts.max_series = 1000;
        opts.max_samples_per_second = 100.0;
        opts.address = format!("http://{}", collector.local_addr());
        opts.report_interval = Duration::from_millis(300);
        opts.connect_timeout = Duration::from_secs(2);
        opts.send_timeout = Duration::from_secs(2);
        opts.backoff_initial = Duration::from_millis(100);
        opts.backoff_max = Duration::from_millis(500);
        adjust(&mut opts);
        let agent = Agent::new(opts, backend);
        let status = agent.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        Shard {
            collector: Some(collector),
            agent,
            status,
            stop: Some(stop),
            _dir: dir,
        }
    }

    pub fn statuses(&self) -> Vec<promshard_collector::scrape::TargetStatus> {
        self.collector
            .as_ref()
            .unwrap()
            .handle()
            .scrape_manager()
            .statuses()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.agent).await;
        if let Some(c) = self.collector.take() {
            c.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// A CA and a server certificate for `localhost` signed by it:
/// (ca pem, server cert pem, server key pem).
pub fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "promshard test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
