//! [`Agent`]: the shard's end of promshard.v1. It connects (bounded
//! exponential backoff), says Hello, then applies job definitions and
//! assignment deltas in order, acknowledges every version, answers pings,
//! reports load every `report_interval` and follows redirects. When the
//! coordinator is gone the backend keeps scraping its last assignment; the
//! agent reconnects and says Hello again with what it scrapes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use promshard_proto::v1;
use promshard_proto::v1::coordinator_client::CoordinatorClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::backend::{Backend, BackendError};
use crate::native::now_ms;

/// At most this many reasons are spelled out in one Ack's error.
const MAX_REASONS_IN_ACK: usize = 20;
/// Redirects followed in a row before going back to the configured address.
const MAX_REDIRECTS: u32 = 5;
/// Bound on one message from the coordinator (a full assignment of a large
/// shard is big).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// TLS towards the coordinator (used with an `https://` address).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM CA bundle to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Server name to verify instead of the address' host.
    pub domain: Option<String>,
}

/// How the agent connects and what it announces.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub coordinator: String,
    pub shard_id: String,
    pub max_series: u64,
    pub max_samples_per_second: f64,
    /// Where this shard's own HTTP API is reachable (sent in Hello).
    pub address: String,
    pub version: String,
    /// File holding a bearer token for the coordinator (re-read at every
    /// connect, so it can be rotated).
    pub token_file: Option<PathBuf>,
    pub tls: TlsOptions,
    pub report_interval: Duration,
    /// Deadline of connecting plus opening the stream.
    pub connect_timeout: Duration,
    /// Deadline of handing one message to the stream (a coordinator that
    /// stops reading ends the session).
    pub send_timeout: Duration,
    /// End the session when nothing arrives for this long (the
    /// coordinator pings); `None`: rely on HTTP/2 keepalive only.
    pub idle_timeout: Option<Duration>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl AgentOptions {
    pub fn new(coordinator: impl Into<String>, shard_id: impl Into<String>) -> AgentOptions {
        AgentOptions {
            coordinator: coordinator.into(),
            shard_id: shard_id.into(),
            max_series: 0,
            max_samples_per_second: 0.0,
            address: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            token_file: None,
            tls: TlsOptions::default(),
            report_interval: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            idle_timeout: None,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What a session ended with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("coordinator address {address:?}: {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("reading the CA file {file}: {source}")]
    CaFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the token file {file}: {source}")]
    TokenFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token in {file} is not a valid header value")]
    TokenValue { file: String },
    #[error("connecting to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("connecting to {address}: no answer within {timeout:?}")]
    ConnectTimeout { address: String, timeout: Duration },
    #[error("opening the stream at {address}: {status}")]
    Attach {
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("stream from {address}: {status}")]
    Stream {
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("{address} closed the stream")]
    Closed { address: String },
    #[error("{address}: nothing received for {timeout:?}")]
    Idle { address: String, timeout: Duration },
    #[error("{address}: a message could not be sent within {timeout:?}")]
    SendTimeout { address: String, timeout: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The agent's state, for logs, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// A stream is open and Hello was sent.
    pub connected: bool,
    /// The address of the current (or last) session.
    pub coordinator: String,
    /// Streams opened so far.
    pub sessions: u64,
    /// The last assignment version applied (0: none).
    pub assignment_version: u64,
    /// Why the last session ended.
    pub last_error: Option<String>,
}

enum SessionEnd {
    Redirect(String),
    Failed { error: AgentError, opened: bool },
}

/// The shard agent over one backend.
pub struct Agent<B: Backend> {
    options: AgentOptions,
    backend: Arc<B>,
    version: u64,
    status: watch::Sender<AgentStatus>,
}

impl<B: Backend> Agent<B> {
    pub fn new(options: AgentOptions, backend: Arc<B>) -> Agent<B> {
        let (status, _) = watch::channel(AgentStatus {
            coordinator: options.coordinator.clone(),
            ..AgentStatus::default()
        });
        Agent {
            options,
            backend,
            version: 0,
            status,
        }
    }

    /// Follows the agent's state.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` completes. The backend is never cleared: what
    /// it scrapes keeps being scraped whatever the coordinator does.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::select! {
            _ = shutdown => {}
            _ = self.run_forever() => {}
        }
        self.status.send_modify(|s| s.connected = false);
    }

    async fn run_forever(&mut self) {
        let mut address = self.options.coordinator.clone();
        let mut backoff = self.options.backoff_initial;
        let mut redirects = 0u32;
        loop {
            match self.session(&address).await {
                SessionEnd::Redirect(to) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        tracing::warn!(
                            redirects,
                            "too many redirects in a row; back to the configured coordinator"
                        );
                        redirects = 0;
                        address = self.options.coordinator.clone();
                        self.wait(&mut backoff).await;
                    } else {
                        tracing::info!(from = %address, to = %to, "redirected to the leader");
                        address = to;
                    }
                }
                SessionEnd::Failed { error, opened } => {
                    tracing::warn!(
                        coordinator = %address,
                        error = %error,
                        "coordinator session ended; scraping goes on, reconnecting"
                    );
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(error.to_string());
                    });
                    if opened {
                        backoff = self.options.backoff_initial;
                        redirects = 0;
                    }
                    if redirects > 0 {
                        // The leader we were sent to is gone: start over.
                        redirects = 0;
                        address = self.options.coordinator.clone();
                    }
                    self.wait(&mut backoff).await;
                }
            }
        }
    }

    async fn wait(&self, backoff: &mut Duration) {
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.options.backoff_max);
    }

    async fn session(&mut self, address: &str) -> SessionEnd {
        let failed = |error| SessionEnd::Failed {
            error,
            opened: false,
        };
        let channel = match self.connect(address).await {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let token = match self.token() {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let mut client =
            CoordinatorClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<v1::ShardMessage>(64);
        let hello = self.hello().await;
        let targets = hello.targets.len();
        if tx
            .send(shard(v1::shard_message::Msg::Hello(hello)))
            .await
            .is_err()
        {
            return failed(AgentError::Closed {
                address: address.to_string(),
            });
        }
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let mut request = tonic::Request::new(outbound);
        if let Some(t) = token {
            request.metadata_mut().insert("authorization", t);
        }
        let timeout = self.options.connect_timeout;
        let mut inbound = match tokio::time::timeout(timeout, client.attach(request)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                return failed(AgentError::Attach {
                    address: address.to_string(),
                    status: Box::new(status),
                });
            }
            Err(_) => {
                return failed(AgentError::ConnectTimeout {
                    address: address.to_string(),
                    timeout,
                });
            }
        };
        tracing::info!(coordinator = %address, targets, version = self.version, "attached to the coordinator");
        self.status.send_modify(|s| {
            s.connected = true;
            s.coordinator = address.to_string();
            s.sessions += 1;
        });
        let opened = |error| SessionEnd::Failed {
            error,
            opened: true,
        };
        let mut reports = tokio::time::interval_at(
            Instant::now() + self.options.report_interval,
            self.options.report_interval,
        );
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = self.options.idle_timeout;
        let mut last_inbound = Instant::now();
        loop {
            let idle_deadline = idle.map(|d| last_inbound + d);
            let reply = tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(msg)) => {
                        last_inbound = Instant::now();
                        match self.handle(msg).await {
                            Ok(Handled::Reply(r)) => Some(r),
                            Ok(Handled::Nothing) => None,
                            Ok(Handled::Redirect(to)) => return SessionEnd::Redirect(to),
                            Err(e) => return opened(e),
                        }
                    }
                    Ok(None) => return opened(AgentError::Closed { address: address.to_string() }),
                    Err(status) => return opened(AgentError::Stream {
                        address: address.to_string(),
                        status: Box::new(status),
                    }),
                },
                _ = reports.tick() => {
                    Some(shard(v1::shard_message::Msg::Report(self.backend.report().await)))
                }
                _ = sleep_until_opt(idle_deadline) => {
                    return opened(AgentError::Idle {
                        address: address.to_string(),
                        timeout: idle.unwrap_or_default(),
                    });
                }
            };
            if let Some(r) = reply {
                let timeout = self.options.send_timeout;
                match tokio::time::timeout(timeout, tx.send(r)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        return opened(AgentError::Closed {
                            address: address.to_string(),
                        });
                    }
                    Err(_) => {
                        return opened(AgentError::SendTimeout {
                            address: address.to_string(),
                            timeout,
                        });
                    }
                }
            }
        }
    }

    async fn connect(&self, address: &str) -> Result<Channel, AgentError> {
        let bad = |source| AgentError::Address {
            address: address.to_string(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(address.to_string())
            .map_err(bad)?
            .connect_timeout(self.options.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if address.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            match &self.options.tls.ca_file {
                Some(f) => {
                    let pem = std::fs::read(f).map_err(|source| AgentError::CaFile {
                        file: f.display().to_string(),
                        source,
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                None => tls = tls.with_native_roots(),
            }
            if let Some(d) = &self.options.tls.domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(bad)?;
        }
        let timeout = self.options.connect_timeout;
        match tokio::time::timeout(timeout, endpoint.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(AgentError::Connect {
                address: address.to_string(),
                detail: error_chain(&e),
            }),
            Err(_) => Err(AgentError::ConnectTimeout {
                address: address.to_string(),
                timeout,
            }),
        }
    }

    /// `Bearer <token>` from the token file (never logged).
    fn token(&self) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, AgentError> {
        let Some(f) = &self.options.token_file else {
            return Ok(None);
        };
        let file = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|source| AgentError::TokenFile {
            file: file.clone(),
            source,
        })?;
        let mut value: MetadataValue<tonic::metadata::Ascii> =
            MetadataValue::try_from(format!("Bearer {}", text.trim()))
                .map_err(|_| AgentError::TokenValue { file })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    async fn hello(&self) -> v1::Hello {
        v1::Hello {
            shard_id: self.options.shard_id.clone(),
            capacity: Some(v1::Capacity {
                max_series: self.options.max_series,
                max_samples_per_second: self.options.max_samples_per_second,
            }),
            backend: self.backend.kind() as i32,
            targets: self.backend.current_targets().await,
            address: self.options.address.clone(),
            version: self.options.version.clone(),
            assignment_version: self.version,
            job_config_hashes: self.backend.job_config_hashes().await.into_iter().collect(),
        }
    }

    async fn handle(&mut self, msg: v1::CoordinatorMessage) -> Result<Handled, AgentError> {
        use v1::coordinator_message::Msg;
        match msg.msg {
            Some(Msg::Jobs(defs)) => {
                let jobs = defs.jobs.len();
                let removed = defs.removed_jobs.len();
                let outcome = self.backend.apply_jobs(defs).await?;
                tracing::info!(
                    jobs,
                    removed,
                    refused = outcome.job_errors.len(),
                    global_refused = outcome.global_error.is_some(),
                    "job definitions applied"
                );
                Ok(Handled::Nothing)
            }
            Some(Msg::Assignment(delta)) => Ok(Handled::Reply(shard(v1::shard_message::Msg::Ack(
                self.apply_assignment(delta).await?,
            )))),
            Some(Msg::Ping(p)) => Ok(Handled::Reply(shard(v1::shard_message::Msg::Pong(
                v1::Pong {
                    ping_unix_ms: p.unix_ms,
                    unix_ms: now_ms(),
                },
            )))),
            Some(Msg::Redirect(r)) => {
                let to = r.leader_address.trim().to_string();
                if to.starts_with("http://") || to.starts_with("https://") {
                    Ok(Handled::Redirect(to))
                } else {
                    tracing::warn!(leader = %to, "redirect to an address that is not http(s)://; ignored");
                    Ok(Handled::Nothing)
                }
            }
            None => {
                tracing::warn!("coordinator message without content; ignored");
                Ok(Handled::Nothing)
            }
        }
    }

    /// Applies one delta if it follows the last applied version (or is
    /// full) and builds its Ack. `ok=false` means the version was not
    /// applied (the coordinator should send a full assignment); targets
    /// refused within an applied version are listed in
    /// `rejected_target_ids` with `ok=true`.
    async fn apply_assignment(
        &mut self,
        delta: v1::AssignmentDelta,
    ) -> Result<v1::Ack, AgentError> {
        let have = self.version;
        if !delta.full {
            if delta.version == have && have != 0 {
                return Ok(v1::Ack {
                    assignment_version: delta.version,
                    ok: true,
                    error: String::new(),
                    rejected_target_ids: Vec::new(),
                });
            }
            if delta.base_version != have {
                tracing::warn!(
                    version = delta.version,
                    base = delta.base_version,
                    have,
                    "assignment delta does not follow the applied version; asking for a full one"
                );
                return Ok(v1::Ack {
                    assignment_version: delta.version,
                    ok: false,
                    error: format!(
                        "delta {} is based on version {}, but this shard has applied version {have}; send a full assignment",
                        delta.version, delta.base_version
                    ),
                    rejected_target_ids: Vec::new(),
                });
            }
        }
        let outcome = self.backend.apply_delta(&delta).await?;
        self.version = delta.version;
        self.status
            .send_modify(|s| s.assignment_version = delta.version);
        let mut error = String::new();
        for (i, r) in outcome.rejected.iter().enumerate() {
            if i == MAX_REASONS_IN_ACK {
                error.push_str(&format!(
                    "; and {} more",
                    outcome.rejected.len() - MAX_REASONS_IN_ACK
                ));
                break;
            }
            if !error.is_empty() {
                error.push_str("; ");
            }
            error.push_str(&format!("target {:#018x}: {}", r.target_id, r.reason));
        }
        tracing::info!(
            version = delta.version,
            full = delta.full,
            add = delta.add.len(),
            remove = delta.remove.len(),
            rejected = outcome.rejected.len(),
            "assignment applied"
        );
        if !outcome.rejected.is_empty() {
            tracing::warn!(version = delta.version, reasons = %error, "targets refused");
        }
        Ok(v1::Ack {
            assignment_version: delta.version,
            ok: true,
            error,
            rejected_target_ids: outcome.rejected.iter().map(|r| r.target_id).collect(),
        })
    }
}

enum Handled {
    Reply(v1::ShardMessage),
    Redirect(String),
    Nothing,
}

/// `e: cause: cause...` (tonic's transport errors say little at the top).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

fn shard(msg: v1::shard_message::Msg) -> v1::ShardMessage {
    v1::ShardMessage { msg: Some(msg) }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
