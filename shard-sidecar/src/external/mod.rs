//! [`ExternalBackend`]: the shard agent next to an unmodified Prometheus
//! (agent or server mode) or vmagent.
//!
//! How it drives the backend:
//! - **Config, once per job change.** The backend's config file
//!   (`config_out`) holds the shard's `global` and `remote_write` (from the
//!   sidecar's own config file, or the coordinator's global config when it
//!   sends one; vmagent gets only `global`, its remote write comes from its
//!   `-remoteWrite.url` flags) and every job of the coordinator with its
//!   service discovery (`static_configs`, `*_sd_configs`), its
//!   `relabel_configs`, `params` and proxy settings removed and one
//!   `http_sd_configs` entry added: `http://<sd address>/http_sd/<job>`.
//!   The file is rewritten, and the backend reloaded (`POST /-/reload`, or
//!   SIGHUP to a pid), only when that text changes: when job definitions or
//!   the global config change, never when targets move.
//! - **Targets, through http_sd.** `/http_sd/<job>` lists the job's
//!   assigned targets with their final labels (see [`http_sd`]): with no
//!   `relabel_configs` the backend ends up with the same target labels as
//!   the native collector, and stores the same series.
//! - **Load, through a proxy.** The served `__address__` is the sidecar,
//!   `__metrics_path__` `/proxy/<id>`; the proxy forwards each scrape to
//!   the real URL and counts what streams through (see [`proxy`]). This
//!   works the same for Prometheus in agent mode (no query API) and for
//!   vmagent (no per-target series count).
//!
//! ## The bounded overlap (what a non-native backend costs)
//!
//! The backend sees assignment changes only when it next polls http_sd:
//! Prometheus after up to `refresh_interval` plus its discovery manager's
//! 5 s update throttle, then from the target's next slot; vmagent after up
//! to its `-promscrape.httpSDCheckInterval` (it ignores
//! `refresh_interval`; default 1m, set it to the refresh interval). Call
//! that delay the pickup lag `L` ([`ExternalOptions::pickup_lag`]). The
//! slot protocol cannot be honoured, so the sidecar biases every move
//! towards overlap instead of a gap:
//! - an add with `start_at` is served from `start_at - L`, so the backend
//!   starts somewhere in `[start_at - L, start_at]` (at once without
//!   `start_at`);
//! - a remove with `stop_after` is served until `stop_after`, so the
//!   backend stops somewhere in `[stop_after, stop_after + L]`; without
//!   `stop_after` it goes at once (stops within `L`).
//!
//! During a handover both shards may therefore scrape the target for up to
//! about `2 L` (plus one interval): the remote storage receives the same
//! series from both (duplicates or out-of-order samples, which Prometheus-
//! compatible storage drops or rejects), and the old backend writes
//! staleness markers when the target leaves its http_sd answer (an
//! unmodified backend cannot be told "handover, no markers"); the new
//! shard's next sample follows them. The proxy keeps forwarding a removed
//! target's scrapes for `2 L` after it left the answer, so the backend's
//! last scrapes before it notices do not fail.
//!
//! ## Other limits
//!
//! - vmagent answers `/-/reload` before it reads the file and logs a
//!   refused config instead of answering with an error. Prometheus'
//!   refusal comes back as [`JobsOutcome::global_error`] (the agent logs
//!   it) and the next job change writes and reloads again.
//! - The file holds the jobs' credentials as the coordinator sent them
//!   (written with the process' umask); Prometheus sends them to the proxy
//!   over loopback, which forwards `Authorization` to the target.
//! - After a sidecar restart the backend keeps its file until the
//!   coordinator's jobs arrive; until the coordinator has sent the
//!   assignment again, http_sd answers empty lists, and a backend that
//!   polls in that window drops the targets (with staleness markers).
//! - The sidecar's own config file is read once at start.

pub mod http_sd;
pub mod proxy;
pub mod render;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use promshard_promlib::config::{self, Config, ScrapeConfig};
use promshard_promlib::scrape::{HttpClient, error_chain};
use promshard_promlib::targets::Target;
use promshard_proto::v1;
use serde_json::Value;

use crate::backend::{Backend, BackendError, DeltaOutcome, JobsOutcome};
use crate::jobs;
use crate::native::now_ms;
use crate::target;
use proxy::{StatsMap, Upstream};

/// Prometheus' discovery manager sends target updates at most every 5 s.
pub const PROMETHEUS_DISCOVERY_THROTTLE: Duration = Duration::from_secs(5);

/// Which backend runs next to the sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalKind {
    Prometheus,
    Vmagent,
}

impl ExternalKind {
    pub fn name(self) -> &'static str {
        match self {
            ExternalKind::Prometheus => "prometheus",
            ExternalKind::Vmagent => "vmagent",
        }
    }

    fn proto(self) -> v1::BackendKind {
        match self {
            ExternalKind::Prometheus => v1::BackendKind::Prometheus,
            ExternalKind::Vmagent => v1::BackendKind::Vmagent,
        }
    }
}

/// How the sidecar reaches and configures its backend.
#[derive(Clone, Debug)]
pub struct ExternalOptions {
    pub kind: ExternalKind,
    /// The sidecar's own prometheus.yml: its `global` and `remote_write`
    /// go into the backend's file (its jobs are ignored). Relative
    /// `*_file` paths resolve against its directory.
    pub config_file: Option<PathBuf>,
    /// The backend's config file, written by the sidecar.
    pub config_out: PathBuf,
    /// Base URL of the backend (`http://127.0.0.1:9090`) for
    /// `POST /-/reload`.
    pub backend_url: Option<String>,
    /// Reload by SIGHUP to this pid instead of HTTP.
    pub backend_pid: Option<u32>,
    /// `host:port` at which the backend reaches the sidecar's HTTP server
    /// (http_sd and proxy).
    pub sd_address: String,
    /// `refresh_interval` of the http_sd entries.
    pub refresh_interval: Duration,
    /// How late the backend sees an http_sd change (see the module docs).
    pub pickup_lag: Duration,
    /// Bound on one reload request.
    pub reload_timeout: Duration,
}

impl ExternalOptions {
    pub fn new(
        kind: ExternalKind,
        config_out: impl Into<PathBuf>,
        sd_address: impl Into<String>,
    ) -> ExternalOptions {
        let refresh = Duration::from_secs(5);
        ExternalOptions {
            kind,
            config_file: None,
            config_out: config_out.into(),
            backend_url: None,
            backend_pid: None,
            sd_address: sd_address.into(),
            refresh_interval: refresh,
            pickup_lag: default_pickup_lag(kind, refresh),
            reload_timeout: Duration::from_secs(30),
        }
    }
}

/// The pickup lag of `kind` polling http_sd every `refresh`.
pub fn default_pickup_lag(kind: ExternalKind, refresh: Duration) -> Duration {
    match kind {
        ExternalKind::Prometheus => refresh + PROMETHEUS_DISCOVERY_THROTTLE,
        ExternalKind::Vmagent => refresh,
    }
}

/// Why the backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("reading the config file {file}: {source}")]
    ReadConfig {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("writing the backend's config file {file}: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the reload client: {0}")]
    Client(String),
}

/// One job in force.
struct Job {
    hash: String,
    def: v1::JobDefinition,
    /// Typed and validated (intervals, the proxy's URL and client).
    config: ScrapeConfig,
    /// As received, for the backend's file.
    tree: Value,
    client: reqwest::Client,
}

/// One assigned (or recently removed) target.
struct Entry {
    proto: v1::Target,
    built: Target,
    serve_from_ms: i64,
    /// Set when removed: served until then, forwarded for `2 L` more.
    serve_until_ms: Option<i64>,
    /// Where the proxy sends its scrapes and the timeout without the
    /// backend's header: from its labels and its job's config, computed
    /// when either changes, not per scrape.
    url: String,
    timeout: Duration,
}

/// The URL and default timeout of `built` under its job's `config`.
fn aim(built: &Target, config: &ScrapeConfig) -> (String, Duration) {
    let timeout = built
        .timeout()
        .map_or(config.timeout().to_std(), |d| d.to_std());
    (built.url(config), timeout)
}

impl Entry {
    fn served_at(&self, now: i64) -> bool {
        self.serve_from_ms <= now && self.serve_until_ms.is_none_or(|u| now <= u)
    }
}

struct State {
    /// The sidecar file's config (typed) and its sections for the backend.
    file_config: Config,
    file_sections: Value,
    /// The coordinator's global config: YAML as received, typed, sections.
    coordinator_global: Option<(String, Config, Value)>,
    jobs: BTreeMap<String, Job>,
    job_errors: BTreeMap<String, String>,
    targets: HashMap<u64, Entry>,
    /// The text last written to `config_out`.
    written: String,
}

impl State {
    fn base(&self) -> (&Config, &Value) {
        match &self.coordinator_global {
            Some((_, c, v)) => (c, v),
            None => (&self.file_config, &self.file_sections),
        }
    }
}

struct Shared {
    options: ExternalOptions,
    base_dir: PathBuf,
    state: Mutex<State>,
    stats: StatsMap,
    /// Serializes `apply_jobs` (write + reload).
    apply: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    reloads: AtomicU64,
    writes: AtomicU64,
}

/// A Prometheus or vmagent next to the sidecar, as a [`Backend`].
pub struct ExternalBackend {
    shared: Arc<Shared>,
}

/// What a reload did.
enum Reload {
    Done,
    /// Nobody answered: the backend reads the file when it starts.
    Unreachable(String),
    /// The backend answered with an error (the config was refused).
    Refused(String),
}

impl ExternalBackend {
    /// Reads the sidecar's config file and, when `config_out` does not
    /// exist yet, writes the backend's first config (its global and remote
    /// write, no jobs); does not reload.
    pub fn new(options: ExternalOptions) -> Result<ExternalBackend, ExternalError> {
        let (file_config, file_sections, base_dir) = match &options.config_file {
            Some(f) => {
                let text =
                    std::fs::read_to_string(f).map_err(|source| ExternalError::ReadConfig {
                        file: f.display().to_string(),
                        source,
                    })?;
                let mut cfg = config::load_file(f)?;
                cfg.scrape_configs.clear();
                let dir = f
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                let dir = std::path::absolute(&dir).unwrap_or(dir);
                let tree = render::parse_yaml(&text, &f.display().to_string())?;
                (cfg, render::base_sections(&tree, &dir), dir)
            }
            None => {
                let dir = options
                    .config_out
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (
                    Config::default(),
                    Value::Object(Default::default()),
                    std::path::absolute(&dir).unwrap_or(dir),
                )
            }
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(options.reload_timeout)
            .build()
            .map_err(|e| ExternalError::Client(error_chain(&e)))?;
        // A file left by an earlier run stays until the coordinator's jobs
        // arrive (a running backend keeps its jobs meanwhile); a missing
        // one is written now so that the backend can start.
        let (text, writes) = if options.config_out.exists() {
            (String::new(), 0)
        } else {
            let text = render::config_text(options.kind, &file_sections, Vec::new());
            write_atomically(&options.config_out, &text)?;
            (text, 1)
        };
        Ok(ExternalBackend {
            shared: Arc::new(Shared {
                base_dir,
                state: Mutex::new(State {
                    file_config,
                    file_sections,
                    coordinator_global: None,
                    jobs: BTreeMap::new(),
                    job_errors: BTreeMap::new(),
                    targets: HashMap::new(),
                    written: text,
                }),
                stats: Arc::new(Mutex::new(HashMap::new())),
                apply: tokio::sync::Mutex::new(()),
                http,
                reloads: AtomicU64::new(0),
                writes: AtomicU64::new(writes),
                options,
            }),
        })
    }

    /// Reloads the backend has accepted (or SIGHUPs sent) so far.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Times the backend's config file was written (the first included).
    pub fn config_writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// The sidecar's HTTP API: `GET /http_sd/{job}`, `GET /proxy/{id}`,
    /// `GET /-/healthy`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/http_sd/{job}", axum::routing::get(serve_http_sd))
            .route("/proxy/{id}", axum::routing::get(serve_proxy))
            .route("/-/healthy", axum::routing::get(|| async { "OK\n" }))
            .with_state(self.shared.clone())
    }

    /// Serves [`router`](Self::router) on `listener` until the task is
    /// aborted.
    pub fn spawn_server(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the sidecar's HTTP server stopped");
            }
        })
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ExternalError> {
    let err = |source| ExternalError::Write {
        file: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl Shared {
    async fn reload(&self) -> Reload {
        if let Some(pid) = self.options.backend_pid {
            let Ok(pid_t) = libc::pid_t::try_from(pid) else {
                return Reload::Refused(format!("pid {pid} is out of range"));
            };
            // SAFETY: kill(2) with a plain pid and signal has no memory
            // effects on this process.
            let rc = unsafe { libc::kill(pid_t, libc::SIGHUP) };
            if rc != 0 {
                return Reload::Unreachable(format!(
                    "SIGHUP to pid {pid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            self.reloads.fetch_add(1, Ordering::Relaxed);
            return Reload::Done;
        }
        let Some(base) = &self.options.backend_url else {
            return Reload::Unreachable("no backend URL or pid to reload".to_string());
        };
        let url = format!("{}/-/reload", base.trim_end_matches('/'));
        match self.http.post(&url).send().await {
            Ok(r) if r.status().is_success() => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Reload::Done
            }
            Ok(r) => {
                let status = r.status();
                let mut body = r.text().await.unwrap_or_default();
                body.truncate(1024);
                Reload::Refused(format!(
                    "{} refused the reload at {url}: HTTP {status}: {}",
                    self.options.kind.name(),
                    body.trim()
                ))
            }
            Err(e) => Reload::Unreachable(format!(
                "reloading at {url}: {}",
                error_chain(&e.without_url())
            )),
        }
    }

    fn sd_url(&self, job: &str) -> String {
        format!(
            "http://{}/http_sd/{}",
            self.options.sd_address,
            percent_encode_segment(job)
        )
    }

    fn refresh(&self) -> String {
        let ms = self.options.refresh_interval.as_millis().max(1);
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    fn render(&self, st: &State) -> String {
        let (_, sections) = st.base();
        let refresh = match self.options.kind {
            ExternalKind::Prometheus => Some(self.refresh()),
            ExternalKind::Vmagent => None,
        };
        let jobs = st
            .jobs
            .iter()
            .map(|(name, j)| {
                render::backend_job(
                    &j.tree,
                    &self.sd_url(name),
                    refresh.as_deref(),
                    &self.base_dir,
                )
            })
            .collect();
        render::config_text(self.options.kind, sections, jobs)
    }

    /// Forgets removed targets the backend can no longer scrape.
    fn purge(&self, st: &mut State, now: i64) {
        let keep_ms = 2 * self.options.pickup_lag.as_millis() as i64;
        let mut gone = Vec::new();
        st.targets.retain(|id, e| {
            let keep = e
                .serve_until_ms
                .is_none_or(|u| now <= u.saturating_add(keep_ms));
            if !keep {
                gone.push(*id);
            }
            keep
        });
        if !gone.is_empty()
            && let Ok(mut s) = self.stats.lock()
        {
            for id in gone {
                s.remove(&id);
            }
        }
    }
}

/// Job names are label values: anything may occur. Escapes all but
/// unreserved characters.
fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn build_client(cfg: &ScrapeConfig, base_dir: &Path) -> Result<reqwest::Client, String> {
    HttpClient::new(&cfg.http, base_dir)
        .map(|c| c.client().clone())
        .map_err(|e| format!("job {:?}: its HTTP client: {e}", cfg.job_name))
}

async fn serve_http_sd(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath(job): UrlPath<String>,
) -> Response {
    let now = now_ms();
    let groups: Vec<Value> = {
        let Ok(st) = shared.state.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let mut entries: Vec<&Entry> = st
            .targets
            .values()
            .filter(|e| e.proto.job_name == job && e.served_at(now))
            .collect();
        entries.sort_by_key(|e| e.proto.id);
        entries
            .iter()
            .map(|e| http_sd::group(&shared.options.sd_address, e.proto.id, &e.built.labels))
            .collect()
    };
    axum::Json(groups).into_response()
}

async fn serve_proxy(
    AxState(shared): AxState<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = http_sd::parse_proxy_id(&id) else {
        return (
            StatusCode::BAD_REQUEST,
            "the target id is not 16 hex digits\n",
        )
            .into_response();
    };
    let upstream = {
        let Ok(st) = shared.state.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        st.targets.get(&id).and_then(|e| {
            let job = st.jobs.get(&e.proto.job_name)?;
            Some(Upstream {
                id,
                url: e.url.clone(),
                client: job.client.clone(),
                timeout: e.timeout,
            })
        })
    };
    match upstream {
        Some(up) => proxy::forward(up, &headers, shared.stats.clone()).await,
        None => (
            StatusCode::NOT_FOUND,
            format!("target {id:016x} is not assigned to this shard\n"),
        )
            .into_response(),
    }
}

impl Backend for ExternalBackend {
    fn kind(&self) -> v1::BackendKind {
        self.shared.options.kind.proto()
    }

    async fn current_targets(&self) -> Vec<v1::Target> {
        let Ok(st) = self.shared.state.lock() else {
            return Vec::new();
        };
        let mut out: Vec<v1::Target> = st
            .targets
            .values()
            .filter(|e| e.serve_until_ms.is_none())
            .map(|e| e.proto.clone())
            .collect();
        out.sort_by_key(|t| t.id);
        out
    }

    async fn job_config_hashes(&self) -> BTreeMap<String, String> {
        let Ok(st) = self.shared.state.lock() else {
            return BTreeMap::new();
        };
        st.jobs
            .iter()
            .map(|(n, j)| (n.clone(), j.hash.clone()))
            .collect()
    }

    async fn apply_jobs(&self, defs: v1::JobDefinitions) -> Result<JobsOutcome, BackendError> {
        let shared = &self.shared;
        let _serial = shared.apply.lock().await;
        let mut outcome = JobsOutcome::default();
        let text = {
            let mut st = shared
                .state
                .lock()
                .map_err(|_| BackendError::ShuttingDown)?;
            let old_global = st.base().0.global.clone();
            let wanted = defs.global_config_yaml.trim();
            let same = match &st.coordinator_global {
                Some((y, _, _)) => y == wanted,
                None => wanted.is_empty(),
            };
            if !same {
                if wanted.is_empty() {
                    st.coordinator_global = None;
                } else {
                    let parsed = jobs::parse_global(wanted, &shared.base_dir)
                        .map_err(|e| e.to_string())
                        .and_then(|cfg| {
                            render::parse_yaml(wanted, "global config from the coordinator")
                                .map(|tree| (cfg, render::base_sections(&tree, &shared.base_dir)))
                                .map_err(|e| e.to_string())
                        });
                    match parsed {
                        Ok((cfg, sections)) => {
                            st.coordinator_global = Some((wanted.to_string(), cfg, sections));
                        }
                        Err(e) => outcome.global_error = Some(e),
                    }
                }
            }
            if st.base().0.global != old_global {
                // Interval/timeout defaults come from `global`.
                recompile(shared, &mut st, &mut outcome);
            }
            for name in &defs.removed_jobs {
                st.jobs.remove(name);
                st.job_errors.remove(name);
            }
            let global = st.base().0.global.clone();
            for def in defs.jobs {
                let unchanged = st
                    .jobs
                    .get(&def.job_name)
                    .is_some_and(|j| !def.config_hash.is_empty() && j.hash == def.config_hash);
                if unchanged {
                    continue;
                }
                match make_job(shared, def, &global) {
                    Ok(job) => {
                        st.job_errors.remove(&job.def.job_name);
                        st.jobs.insert(job.def.job_name.clone(), job);
                    }
                    Err((name, e)) => {
                        tracing::warn!(job = %name, reason = %e, "job definition refused");
                        st.job_errors.insert(name.clone(), e.clone());
                        outcome.job_errors.insert(name, e);
                    }
                }
            }
            // Targets of jobs that are gone leave with their job (the
            // backend ends them with staleness markers).
            let State { targets, jobs, .. } = &mut *st;
            targets.retain(|_, e| match jobs.get(&e.proto.job_name) {
                Some(job) => {
                    // The job's params, scheme or timeout may have changed.
                    (e.url, e.timeout) = aim(&e.built, &job.config);
                    true
                }
                None => false,
            });
            let text = shared.render(&st);
            (text != st.written).then_some(text)
        };
        if let Some(text) = text {
            if let Err(e) = write_atomically(&shared.options.config_out, &text) {
                outcome.global_error = Some(e.to_string());
                return Ok(outcome);
            }
            shared.writes.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut st) = shared.state.lock() {
                st.written = text;
            }
            match shared.reload().await {
                Reload::Done => {
                    tracing::info!(backend = shared.options.kind.name(), "backend reloaded")
                }
                Reload::Unreachable(e) => {
                    tracing::warn!(error = %e, "backend not reloaded; it reads the new config when it starts")
                }
                Reload::Refused(e) => {
                    tracing::warn!(error = %e, "backend refused the new config");
                    outcome.global_error = Some(e);
                    // Write and reload again at the next job change, even
                    // if the text comes out the same.
                    if let Ok(mut st) = shared.state.lock() {
                        st.written.clear();
                    }
                }
            }
        }
        Ok(outcome)
    }

    async fn apply_delta(&self, delta: &v1::AssignmentDelta) -> Result<DeltaOutcome, BackendError> {
        let shared = &self.shared;
        let mut st = shared
            .state
            .lock()
            .map_err(|_| BackendError::ShuttingDown)?;
        let now = now_ms();
        let lag_ms = shared.options.pickup_lag.as_millis() as i64;
        let mut outcome = DeltaOutcome::default();
        if delta.full {
            let keep: HashSet<u64> = delta
                .add
                .iter()
                .filter_map(|a| a.target.as_ref().map(|t| t.id))
                .collect();
            for (id, e) in st.targets.iter_mut() {
                if !keep.contains(id) && e.serve_until_ms.is_none() {
                    e.serve_until_ms = Some(now);
                }
            }
        }
        for r in &delta.remove {
            if let Some(e) = st.targets.get_mut(&r.target_id)
                && e.serve_until_ms.is_none()
            {
                e.serve_until_ms = Some(if r.stop_after_unix_ms > 0 {
                    r.stop_after_unix_ms
                } else {
                    now
                });
            }
        }
        for a in &delta.add {
            match target::check_add(a, &st.jobs, &st.job_errors) {
                Ok((t, built)) => {
                    // check_add found the job.
                    let Some(job) = st.jobs.get(&t.job_name) else {
                        continue;
                    };
                    let (url, timeout) = aim(&built, &job.config);
                    let serve_from_ms = if a.start_at_unix_ms > 0 {
                        a.start_at_unix_ms.saturating_sub(lag_ms)
                    } else {
                        0
                    };
                    st.targets.insert(
                        t.id,
                        Entry {
                            proto: t.clone(),
                            built,
                            serve_from_ms,
                            serve_until_ms: None,
                            url,
                            timeout,
                        },
                    );
                }
                Err(rejected) => outcome.rejected.push(rejected),
            }
        }
        shared.purge(&mut st, now);
        Ok(outcome)
    }

    async fn report(&self) -> v1::Report {
        let shared = &self.shared;
        let now = now_ms();
        let mut report = v1::Report {
            unix_ms: now,
            ..v1::Report::default()
        };
        let Ok(mut st) = shared.state.lock() else {
            return report;
        };
        shared.purge(&mut st, now);
        let stats = match shared.stats.lock() {
            Ok(s) => s.clone(),
            Err(_) => HashMap::new(),
        };
        let mut ids: Vec<u64> = st
            .targets
            .iter()
            .filter(|(_, e)| e.serve_until_ms.is_none())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let Some(e) = st.targets.get(&id) else {
                continue;
            };
            let interval = e
                .built
                .interval()
                .map(|d| d.to_std())
                .or_else(|| {
                    st.jobs
                        .get(&e.proto.job_name)
                        .map(|j| j.config.interval().to_std())
                })
                .unwrap_or_default()
                .as_secs_f64();
            let mut tr = v1::TargetReport {
                target_id: id,
                health: v1::TargetHealth::Unknown as i32,
                interval_seconds: interval,
                ..v1::TargetReport::default()
            };
            if let Some(s) = stats.get(&id) {
                tr.series = s.series;
                tr.samples_per_scrape = s.samples_per_scrape;
                tr.scrape_duration_seconds = s.duration.as_secs_f64();
                tr.health = s.health as i32;
                tr.last_error = s.last_error.clone();
                tr.last_scrape_unix_ms = s.last_scrape_unix_ms;
            }
            report.total_series += tr.series;
            if interval > 0.0 {
                report.total_samples_per_second += tr.samples_per_scrape as f64 / interval;
            }
            report.targets.push(tr);
        }
        report
    }
}

/// Recompiles every job's typed config with a changed `global`.
fn recompile(shared: &Shared, st: &mut State, outcome: &mut JobsOutcome) {
    let global = st.base().0.global.clone();
    for job in st.jobs.values_mut() {
        match jobs::compile(&job.def, &global, &shared.base_dir) {
            Ok(sc) => job.config = sc,
            Err(e) => {
                outcome
                    .job_errors
                    .insert(job.def.job_name.clone(), e.to_string());
            }
        }
    }
}

fn make_job(
    shared: &Shared,
    def: v1::JobDefinition,
    global: &config::GlobalConfig,
) -> Result<Job, (String, String)> {
    let name = jobs::reported_name(&def);
    let fail = |e: String| (name.clone(), e);
    let config = jobs::compile(&def, global, &shared.base_dir).map_err(|e| fail(e.to_string()))?;
    let tree = render::parse_yaml(
        &def.scrape_config_yaml,
        &format!("scrape_config of job {name:?}"),
    )
    .map_err(|e| fail(e.to_string()))?;
    let client = build_client(&config, &shared.base_dir).map_err(fail)?;
    Ok(Job {
        hash: def.config_hash.clone(),
        def,
        config,
        tree,
        client,
    })
}
