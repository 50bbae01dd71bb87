//! Native shards as child processes of this host.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ProvidedShard, ProviderError};
use crate::util::lock;

/// Longest wait between restarts of a shard that keeps dying.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

/// How local shards are started.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The promshard binary (normally `std::env::current_exe()`).
    pub binary: PathBuf,
    /// The prometheus.yml the shards read their global settings and
    /// remote_write from (jobs and targets come from the coordinator).
    pub config_file: PathBuf,
    /// Each shard stores its WAL in `storage_dir/shard-N`.
    pub storage_dir: PathBuf,
    /// The coordinator's gRPC address, as the shards dial it
    /// (`http://127.0.0.1:PORT`).
    pub coordinator_address: String,
    /// The host shards listen on.
    pub listen_host: String,
    pub max_series: u64,
    pub max_samples_per_second: f64,
    /// More arguments for every shard (WAL flags, token file, ...).
    pub extra_args: Vec<String>,
    /// First wait before restarting a shard that died (doubles up to 30 s).
    pub restart_backoff: Duration,
    /// Environment variables for the shards (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

/// Runs native shards `shard-0 .. shard-(n-1)` as child processes.
pub struct LocalProvider {
    opts: Arc<LocalOptions>,
    running: Mutex<BTreeMap<usize, Running>>,
}

struct Running {
    /// `Some(grace)` asks the supervisor to stop the shard.
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
    state: Arc<Mutex<ProvidedShard>>,
}

impl LocalProvider {
    pub fn new(opts: LocalOptions) -> Self {
        LocalProvider {
            opts: Arc::new(opts),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn shard_id(ordinal: usize) -> String {
        format!("shard-{ordinal}")
    }

    pub fn shards(&self) -> Vec<ProvidedShard> {
        lock(&self.running)
            .values()
            .map(|r| lock(&r.state).clone())
            .collect()
    }

    pub async fn scale_to(&self, n: usize, grace: Duration) -> Result<(), ProviderError> {
        let to_stop: Vec<Running> = {
            let mut running = lock(&self.running);
            for ordinal in 0..n {
                if running.contains_key(&ordinal) {
                    continue;
                }
                let r = self.start(ordinal)?;
                running.insert(ordinal, r);
            }
            let extra: Vec<usize> = running.range(n..).map(|(o, _)| *o).collect();
            extra.iter().filter_map(|o| running.remove(o)).collect()
        };
        stop_all(to_stop, grace).await;
        Ok(())
    }

    pub async fn shutdown(&self, grace: Duration) {
        let all: Vec<Running> = std::mem::take(&mut *lock(&self.running))
            .into_values()
            .collect();
        stop_all(all, grace).await;
    }

    fn start(&self, ordinal: usize) -> Result<Running, ProviderError> {
        let id = Self::shard_id(ordinal);
        let storage = self.opts.storage_dir.join(&id);
        std::fs::create_dir_all(&storage).map_err(|source| ProviderError::StorageDir {
            path: storage.display().to_string(),
            source,
        })?;
        // One port for the shard's life, so its address survives restarts.
        let listen = free_port(&self.opts.listen_host).map_err(|source| ProviderError::Spawn {
            shard: id.clone(),
            binary: self.opts.binary.display().to_string(),
            source,
        })?;
        let mut args = vec![
            "collector".to_string(),
            format!("--config.file={}", self.opts.config_file.display()),
            format!("--storage.path={}", storage.display()),
            format!("--web.listen-address={listen}"),
            format!("--coordinator.address={}", self.opts.coordinator_address),
            format!("--shard.id={id}"),
            format!("--shard.max-series={}", self.opts.max_series),
            format!(
                "--shard.max-samples-per-second={}",
                self.opts.max_samples_per_second
            ),
        ];
        args.extend(self.opts.extra_args.iter().cloned());
        // Fail early (and clearly) when the binary cannot start at all.
        let first = spawn(&self.opts, &args, &id)?;
        let state = Arc::new(Mutex::new(ProvidedShard {
            id: id.clone(),
            ordinal,
            pid: first.id(),
            restarts: 0,
        }));
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(supervise(
            Arc::clone(&self.opts),
            args,
            first,
            Arc::clone(&state),
            stop_rx,
        ));
        tracing::info!(shard = %id, listen = %listen, storage = %storage.display(), "local shard started");
        Ok(Running { stop, task, state })
    }
}

impl Drop for LocalProvider {
    fn drop(&mut self) {
        // Children are spawned with kill_on_drop; aborting the supervisors
        // drops them.
        for r in lock(&self.running).values() {
            r.task.abort();
        }
    }
}

async fn stop_all(stopping: Vec<Running>, grace: Duration) {
    for r in &stopping {
        let _ = r.stop.send(Some(grace));
    }
    for r in stopping {
        let _ = r.task.await;
    }
}

/// A port on `host` that was free a moment ago.
fn free_port(host: &str) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind((host, 0))?;
    l.local_addr()
}

fn spawn(opts: &LocalOptions, args: &[String], id: &str) -> Result<Child, ProviderError> {
    let binary = &opts.binary;
    let mut cmd = Command::new(binary);
    // If this process dies without stopping its shards (SIGKILL, a crash),
    // they get SIGTERM: they deliver their WALs and exit instead of
    // scraping on with nobody to stop them.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .args(args)
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProviderError::Spawn {
            shard: id.to_string(),
            binary: binary.display().to_string(),
            source,
        })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(out, id.to_string()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(err, id.to_string()));
    }
    Ok(child)
}

/// Copies a child's output to our stderr, each line prefixed with the
/// shard id.
async fn prefix_lines(r: impl AsyncRead + Unpin, id: String) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{id}] {line}");
    }
}

/// Keeps one shard running until told to stop: a shard that exits on its
/// own is restarted after a growing pause.
async fn supervise(
    opts: Arc<LocalOptions>,
    args: Vec<String>,
    mut child: Child,
    state: Arc<Mutex<ProvidedShard>>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let id = lock(&state).id.clone();
    let mut backoff = opts.restart_backoff.max(Duration::from_millis(10));
    loop {
        tokio::select! {
            status = child.wait() => {
                lock(&state).pid = None;
                match status {
                    Ok(s) => tracing::warn!(shard = %id, status = %s, "local shard exited; restarting"),
                    Err(e) => tracing::warn!(shard = %id, error = %e, "local shard: wait failed; restarting"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
                match spawn(&opts, &args, &id) {
                    Ok(c) => {
                        child = c;
                        let mut st = lock(&state);
                        st.pid = child.id();
                        st.restarts += 1;
                    }
                    Err(e) => {
                        tracing::error!(shard = %id, error = %e, "local shard could not be restarted");
                        // Try again after the next pause: wait on a child
                        // that is already gone would spin, so sleep here.
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => return,
                        }
                        continue;
                    }
                }
            }
            changed = stop.changed() => {
                let grace = match changed {
                    Ok(()) => (*stop.borrow()).unwrap_or(Duration::ZERO),
                    // The provider is gone: stop at once.
                    Err(_) => Duration::ZERO,
                };
                terminate(&mut child, grace, &id).await;
                lock(&state).pid = None;
                return;
            }
        }
    }
}

/// SIGTERM, then SIGKILL if the shard is still running after `grace`.
async fn terminate(child: &mut Child, grace: Duration, id: &str) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => tracing::info!(shard = %id, "local shard stopped"),
        Err(_) => {
            tracing::warn!(shard = %id, grace = ?grace, "local shard did not stop within the grace period; killing it");
            let _ = child.kill().await;
        }
    }
}
