//! Shared test harness: a real Prometheus 2.42 process on a loopback port.
//!
//! ```ignore
//! mod common;
//! let prom = common::Prometheus::start("scrape_configs: []\n");
//! let v = prom.get_json("/api/v1/status/config");
//! ```
//!
//! - Binary: `$PROMETHEUS_BIN` or `/usr/bin/prometheus`; a missing binary
//!   FAILS the test (CI installs it), it never skips.
//! - Flags: `--config.file`, `--storage.tsdb.path` (temp dir),
//!   `--web.listen-address=127.0.0.1:<free port>`,
//!   `--web.enable-remote-write-receiver`, `--web.enable-lifecycle`
//!   (so [`Prometheus::reload`] works).
//! - Waits for `/-/ready` (bounded). Killed on drop, also when the test
//!   panics; the child also gets SIGKILL if the thread that started it dies
//!   (PR_SET_PDEATHSIG), so start and use it within one test.
//! - Many cases on ONE process: put one job per case into one config, write
//!   the sd files under [`Prometheus::dir`] (before [`Prometheus::start_in`])
//!   and use [`Prometheus::wait_for_pools`] / [`Prometheus::targets`].
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promshard_promlib::api::{self, ApiResponse, TargetDiscovery};

/// Where the real Prometheus is expected.
pub const DEFAULT_PROMETHEUS: &str = "/usr/bin/prometheus";

/// The Prometheus binary to use; panics with a clear message if missing.
pub fn prometheus_bin() -> PathBuf {
    let p = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PROMETHEUS));
    assert!(
        p.is_file(),
        "Prometheus binary not found at {} (set PROMETHEUS_BIN or install Prometheus 2.42, e.g. `apt-get install prometheus`); these differential tests need the real Prometheus and never skip",
        p.display()
    );
    p
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) in a new temp dir.
    pub fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config)
    }

    /// Starts Prometheus with `config` written to `dir/prometheus.yml`, the
    /// TSDB in `dir/data`. Write sd files into `dir` first and refer to them
    /// by absolute path (or relative to `dir`).
    pub fn start_in(mut dir: tempfile::TempDir, config: &str) -> Prometheus {
        let bin = prometheus_bin();
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, config).expect("write prometheus.yml");
        let mut last_log = String::new();
        // A port can be taken between free_port() and bind: retry a few times.
        for _attempt in 0..3 {
            let port = free_port();
            // The log lives in its own subdirectory: a file_sd directory
            // watch on `dir` must not see every log write (Prometheus
            // re-reads on any event there, logs errors, and loops).
            let run_dir = dir.path().join("run");
            std::fs::create_dir_all(&run_dir).expect("create run dir");
            let log_path = run_dir.join("prometheus.log");
            let log = std::fs::File::create(&log_path).expect("create log");
            let log2 = log.try_clone().expect("clone log");
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", cfg_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .arg("--web.enable-lifecycle")
                .arg("--log.level=info")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            set_parent_death_signal(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut p = Prometheus { child, port, dir };
            match p.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return p,
                Err(why) => {
                    last_log = p.log();
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    if !why.contains("exited") {
                        panic!("Prometheus not ready: {why}\n--- log ---\n{last_log}");
                    }
                    // Take the dir back for the next attempt.
                    dir = std::mem::replace(&mut p.dir, tempfile::tempdir().expect("temp dir"));
                }
            }
        }
        panic!("Prometheus failed to start 3 times\n--- log ---\n{last_log}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Prometheus exited early with {status}"));
            }
            if let Ok((200, _)) = http("GET", self.port, "/-/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("/-/ready not 200 after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temp dir holding the config (`prometheus.yml`), the TSDB
    /// (`data/`) and the log (`run/prometheus.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Prometheus' log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/prometheus.log")).unwrap_or_default()
    }

    /// GET `path_and_query`, parsed as JSON; panics on non-200.
    pub fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = http("GET", self.port, path_and_query)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {body}"))
    }

    /// Rewrites the config and reloads (`POST /-/reload`).
    pub fn reload(&self, config: &str) {
        std::fs::write(self.dir.path().join("prometheus.yml"), config).expect("write config");
        let (status, body) = http("POST", self.port, "/-/reload").expect("POST /-/reload");
        assert_eq!(
            status,
            200,
            "reload failed: {body}\n--- log ---\n{}",
            self.log()
        );
    }

    /// `/api/v1/targets?state=any`, optionally of one scrape pool.
    pub fn targets(&self, pool: Option<&str>) -> TargetDiscovery {
        let mut q = "/api/v1/targets?state=any".to_string();
        if let Some(p) = pool {
            q.push_str("&scrapePool=");
            q.push_str(&percent_encode(p));
        }
        let v = self.get_json(&q);
        let r: ApiResponse<TargetDiscovery> =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{q}: {e}: {v}"));
        assert_eq!(r.status, "success", "{q}: {v}");
        r.data
    }

    /// Waits (bounded) until `/api/v1/targets?state=any` lists every pool
    /// in `jobs` (as an active target's pool or a dropped target's `job`).
    /// Returns the pools still missing at the deadline (empty on success).
    pub fn wait_for_pools(&self, jobs: &[&str], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: HashSet<String> = api::pools(&self.targets(None));
            let missing: Vec<String> = jobs
                .iter()
                .filter(|j| !seen.contains(**j))
                .map(|j| j.to_string())
                .collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the child get SIGKILL when the thread that spawned it dies
/// (PR_SET_PDEATHSIG); also used by the root e2e harness (`tests/common`).
#[cfg(target_os = "linux")]
pub fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_parent_death_signal(_cmd: &mut Command) {}

/// Percent-encodes `s` for a URL query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port` (no chunking, the server
/// closes the connection). Returns the status and body.
pub fn http(method: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let req =
        format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((status, body.to_string()))
}
