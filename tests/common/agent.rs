//! A scraping agent under test: real Prometheus in agent mode, or
//! `promshard collector`. Both get the same kind of flags:
//!
//! - Prometheus: `--enable-feature=agent --config.file=F
//!   --storage.agent.path=DIR --web.listen-address=127.0.0.1:P
//!   --web.enable-lifecycle`
//! - promshard: `collector --config.file=F --storage.path=DIR
//!   --web.listen-address=127.0.0.1:P [--shutdown.grace=D]`
//!
//! The process is killed (SIGKILL) on drop and, on Linux, when the thread
//! that started it dies (PR_SET_PDEATHSIG).
//!
//! `PROMSHARD_DIFFTEST_OURS=prometheus` runs Prometheus in place of
//! promshard: a self-check of the harness (both sides must then agree).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::prom;

/// Which program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prometheus,
    Promshard,
}

impl Kind {
    /// The side under test: promshard, unless the self-check env var says
    /// otherwise.
    pub fn ours() -> Kind {
        match std::env::var("PROMSHARD_DIFFTEST_OURS").as_deref() {
            Ok("prometheus") => Kind::Prometheus,
            _ => Kind::Promshard,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Prometheus => "prometheus",
            Kind::Promshard => "promshard",
        }
    }
}

/// A running agent.
pub struct Agent {
    pub kind: Kind,
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// Extra flags for promshard.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--shutdown.grace`, e.g. `"10s"`.
    pub shutdown_grace: Option<String>,
}

impl Agent {
    /// Writes `config` to `dir/<kind>.yml` and starts the agent with its
    /// storage in `dir/<kind>-storage` and log appended to `dir/<kind>.log`;
    /// waits (bounded) for `/-/ready`.
    pub fn start(kind: Kind, dir: &Path, config: &str) -> Agent {
        Self::start_with(kind, dir, config, &Options::default())
    }

    pub fn start_with(kind: Kind, dir: &Path, config: &str, opts: &Options) -> Agent {
        let cfg = dir.join(format!("{}.yml", kind.name()));
        std::fs::write(&cfg, config).expect("write agent config");
        let storage = dir.join(format!("{}-storage", kind.name()));
        let log_path = dir.join(format!("{}.log", kind.name()));
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = prom::free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open agent log");
            let log2 = log.try_clone().expect("clone log");
            let mut cmd = match kind {
                Kind::Prometheus => {
                    let mut c = Command::new(prom::prometheus_bin());
                    c.arg("--enable-feature=agent")
                        .arg(format!("--config.file={}", cfg.display()))
                        .arg(format!("--storage.agent.path={}", storage.display()))
                        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                        .arg("--web.enable-lifecycle")
                        .arg("--log.level=info");
                    c
                }
                Kind::Promshard => {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_promshard"));
                    c.arg("collector")
                        .arg(format!("--config.file={}", cfg.display()))
                        .arg(format!("--storage.path={}", storage.display()))
                        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
                    if let Some(g) = &opts.shutdown_grace {
                        c.arg(format!("--shutdown.grace={g}"));
                    }
                    c.env(
                        "RUST_LOG",
                        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                    );
                    c
                }
            };
            cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
            prom::set_parent_death_signal(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            let mut a = Agent {
                kind,
                child,
                port,
                dir: dir.to_path_buf(),
            };
            match a.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return a,
                Err(e) => {
                    last_err = e;
                    let exited = a.child.try_wait().ok().flatten().is_some();
                    let log = a.log();
                    // Only a port taken between free_port() and bind is
                    // worth another try.
                    if !exited || !log.to_ascii_lowercase().contains("already in use") {
                        panic!("{} not ready: {last_err}\n--- log ---\n{log}", kind.name());
                    }
                }
            }
        }
        panic!(
            "{} failed to start 3 times: {last_err}\n--- log ---\n{}",
            kind.name(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early with {status}"));
            }
            if let Ok((200, _)) = prom::http("GET", self.port, "/-/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/-/ready not 200 after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The agent's log so far (all runs in this dir).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.kind.name())))
            .unwrap_or_default()
    }

    /// GET `path` on the agent's web port: status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        prom::http("GET", self.port, path)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `VmRSS` and `VmHWM` (peak) from /proc, in KiB.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// SIGTERM, then waits up to `timeout` for the exit; `None` if it did
    /// not exit in time (it is then killed).
    pub fn terminate(mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
