//! The processes of a scenario: `promshard coordinator`, `promshard
//! collector` shards and `promshard local` as children of this process
//! (logs in the run directory, SIGKILLed on drop and when this process
//! dies), and the coordinator's admin API seen through HTTP only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ScenarioError;
use crate::bench::{die_with_parent, summarize_log};

/// A child process with its output appended to a log file; SIGKILLed and
/// reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// Dropped with SIGTERM first (see [`Proc::terminate`]).
    graceful: bool,
}

impl Proc {
    /// Starts `binary args`, output appended to `log`. Call from the
    /// thread that lives as long as the run: the child gets SIGKILL when
    /// that thread ends.
    pub fn spawn(
        name: &str,
        binary: &Path,
        args: Vec<String>,
        log: &Path,
    ) -> Result<Proc, ScenarioError> {
        let mut p = Proc {
            name: name.to_owned(),
            binary: binary.to_path_buf(),
            args,
            child: None,
            log: log.to_path_buf(),
            graceful: false,
        };
        p.start()?;
        Ok(p)
    }

    fn start(&mut self) -> Result<(), ScenarioError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ScenarioError::Io { what, path, source }
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("cannot open the log", &self.log))?;
        let err = out
            .try_clone()
            .map_err(io("cannot duplicate the log", &self.log))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(io("cannot start", &self.binary.clone()))?;
        tracing::debug!(name = %self.name, pid = child.id(), "started");
        self.child = Some(child);
        Ok(())
    }

    /// Stop it with SIGTERM (waiting up to 20 s) rather than SIGKILL when
    /// dropped.
    pub fn set_graceful(&mut self, graceful: bool) {
        self.graceful = graceful;
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(why)` once it has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            None => Some("not running".into()),
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => Some(format!(
                "{} exited ({status}): {}",
                self.name,
                summarize_log(&self.log_text())
            )),
            Some(Err(e)) => Some(format!("{} cannot be waited for: {e}", self.name)),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace` (for
    /// `promshard local`: its shards are its children without a parent
    /// death signal, so only an orderly stop ends them).
    pub fn terminate(&mut self, grace: Duration) {
        let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet
        // (we hold its Child), so it cannot name another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!(name = %self.name, "did not stop on SIGTERM within {grace:?}; SIGKILL");
        self.kill();
    }

    /// Starts it again with the same arguments (after [`Proc::kill`]).
    pub fn restart(&mut self) -> Result<(), ScenarioError> {
        self.kill();
        self.start()
    }

    /// The log's text so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.graceful {
            self.terminate(Duration::from_secs(20));
        }
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; a child binding it
/// later may lose a race, which the callers retry).
pub fn free_port() -> Result<u16, ScenarioError> {
    let io = |source| ScenarioError::Io {
        what: "cannot find a free port on",
        path: PathBuf::from("127.0.0.1"),
        source,
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

/// The admin HTTP API of a coordinator (`promshard coordinator` or
/// `promshard local`).
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

/// One target as `/api/v1/targets` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    /// The `instance` label.
    pub instance: String,
    /// The shard scraping it.
    pub shard: Option<String>,
    /// assigned, unassigned, migrating, oversized.
    pub state: String,
    /// Series in the load model.
    pub series: u64,
}

impl TargetView {
    /// On a shard and not moving (assigned, or oversized on a shard of
    /// its own).
    pub fn settled(&self) -> bool {
        self.shard.is_some() && (self.state == "assigned" || self.state == "oversized")
    }
}

/// One shard as `/api/v1/shards` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardView {
    /// Its id.
    pub id: String,
    /// up, ... .
    pub health: String,
    /// Load over capacity.
    pub utilization: f64,
    /// Series of its targets.
    pub series: u64,
    /// Its targets.
    pub targets: u64,
}

impl Admin {
    /// The API on 127.0.0.1:`port`.
    pub fn new(port: u16) -> Admin {
        Admin {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str) -> Option<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }

    async fn get_json(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&self.get(path).await?).ok()
    }

    /// True once `/-/healthy` answers 200.
    pub async fn healthy(&self) -> bool {
        self.get("/-/healthy").await.is_some()
    }

    /// Active targets, or `None` when the API does not answer.
    pub async fn targets(&self) -> Option<Vec<TargetView>> {
        let v = self.get_json("/api/v1/targets").await?;
        let list = v.pointer("/data/activeTargets")?.as_array()?;
        Some(
            list.iter()
                .filter_map(|t| {
                    Some(TargetView {
                        instance: t.pointer("/labels/instance")?.as_str()?.to_owned(),
                        shard: t.get("shard").and_then(Value::as_str).map(String::from),
                        state: t.get("state")?.as_str()?.to_owned(),
                        series: t.get("series").and_then(Value::as_u64).unwrap_or(0),
                    })
                })
                .collect(),
        )
    }

    /// Shards, or `None` when the API does not answer.
    pub async fn shards(&self) -> Option<Vec<ShardView>> {
        let v = self.get_json("/api/v1/shards").await?;
        let list = v.get("data")?.as_array()?;
        Some(
            list.iter()
                .filter_map(|s| {
                    Some(ShardView {
                        id: s.get("id")?.as_str()?.to_owned(),
                        health: s.get("health")?.as_str()?.to_owned(),
                        utilization: s.get("utilization").and_then(Value::as_f64).unwrap_or(0.0),
                        series: s.get("series").and_then(Value::as_u64).unwrap_or(0),
                        targets: s.get("targets").and_then(Value::as_u64).unwrap_or(0),
                    })
                })
                .collect(),
        )
    }

    /// Shards whose health is up, or `None` when the API does not answer.
    pub async fn shards_up(&self) -> Option<usize> {
        Some(
            self.shards()
                .await?
                .iter()
                .filter(|s| s.health == "up")
                .count(),
        )
    }

    /// `/api/v1/scale` data: (current, desired) shards.
    pub async fn scale(&self) -> Option<(u64, u64)> {
        let v = self.get_json("/api/v1/scale").await?;
        let d = v.get("data").unwrap_or(&v);
        Some((
            d.get("currentShards")?.as_u64()?,
            d.get("desiredShards")?.as_u64()?,
        ))
    }

    /// `promshard_coordinator_moves_total` by reason.
    pub async fn moves(&self) -> Option<BTreeMap<String, f64>> {
        let body = self.get("/metrics").await?;
        let mut out = BTreeMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix("promshard_coordinator_moves_total") else {
                continue;
            };
            let reason = rest
                .split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned();
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *out.entry(reason).or_default() += v;
            }
        }
        Some(out)
    }

    /// Waits (at most `timeout`) until `/-/healthy` answers.
    pub async fn wait_healthy(&self, proc: &mut Proc, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(why) = proc.exited() {
                return Err(why);
            }
            if self.healthy().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("not healthy within {timeout:?}"))
    }
}

/// Waits until `/-/healthy` on 127.0.0.1:`port` answers 200.
pub async fn wait_port_healthy(
    port: u16,
    proc: &mut Proc,
    timeout: Duration,
) -> Result<(), String> {
    Admin::new(port).wait_healthy(proc, timeout).await
}
