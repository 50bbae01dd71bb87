//! What the benchmark reads from `/proc`: CPU time of a process or of this
//! process's named threads, its memory high-water mark, and the machine's
//! busy time.

use std::path::{Path, PathBuf};

/// A `/proc` file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process may have exited).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file did not hold what the kernel documents.
    #[error("cannot parse {}: {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was missing or malformed.
        what: String,
    },
}

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Clock ticks per second, the unit of CPU times in `/proc/*/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `utime + stime` (ticks) from the text of a `/proc/.../stat` file.
fn stat_cpu_ticks(text: &str) -> Option<u64> {
    // The command name in parentheses may hold spaces and parentheses;
    // fields are counted after the last ')'. There, index 0 is the state
    // (field 3), so utime (field 14) is index 11 and stime index 12.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system, all threads) process `pid` has used, in ticks.
pub fn process_cpu_ticks(pid: u32) -> Result<u64, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = read(&path)?;
    stat_cpu_ticks(&text).ok_or_else(|| ProcError::Parse {
        path,
        what: "no utime/stime fields".into(),
    })
}

/// CPU time, in ticks, of this process's threads whose name starts with
/// each of `prefixes` (threads that already exited are not counted), from
/// one walk of `/proc/self/task`.
pub fn own_threads_cpu_ticks<const N: usize>(prefixes: [&str; N]) -> Result<[u64; N], ProcError> {
    let dir = Path::new("/proc/self/task");
    let entries = std::fs::read_dir(dir).map_err(|source| ProcError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut totals = [0; N];
    for entry in entries.flatten() {
        let task = entry.path();
        // A thread may exit between listing and reading: skip it.
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        let Some(i) = prefixes.iter().position(|p| comm.trim_end().starts_with(p)) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(task.join("stat")) {
            totals[i] += stat_cpu_ticks(&stat).unwrap_or(0);
        }
    }
    Ok(totals)
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Result<u64, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    status_field_bytes(&text, field).ok_or_else(|| ProcError::Parse {
        path,
        what: format!("no {field} line in kB"),
    })
}

fn status_field_bytes(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let mut words = line.split(':').nth(1)?.split_ascii_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib * 1024)
}

/// The machine's CPU time so far, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// Ticks of every kind, all CPUs.
    pub total: u64,
    /// Ticks idle or waiting for I/O.
    pub idle: u64,
}

impl MachineCpu {
    /// Reads `/proc/stat`.
    pub fn now() -> Result<MachineCpu, ProcError> {
        let path = Path::new("/proc/stat");
        let text = read(path)?;
        parse_machine_cpu(&text).ok_or_else(|| ProcError::Parse {
            path: path.to_owned(),
            what: "no aggregate cpu line".into(),
        })
    }

    /// Fraction (0..=1) of the machine busy between `self` and `later`.
    pub fn busy_fraction_until(self, later: MachineCpu) -> f64 {
        let total = later.total.saturating_sub(self.total);
        let idle = later.idle.saturating_sub(self.idle);
        if total == 0 {
            return 0.0;
        }
        1.0 - idle as f64 / total as f64
    }
}

fn parse_machine_cpu(text: &str) -> Option<MachineCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already inside user and nice.
    let counted = values.len().min(8);
    if counted < 5 {
        return None;
    }
    Some(MachineCpu {
        total: values[..counted].iter().sum(),
        idle: values[3] + values[4],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_after_an_odd_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    70 30 5 6 20 0 8 0 123 456 789";
        assert_eq!(stat_cpu_ticks(stat), Some(100));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1 2"), None);
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tvmagent\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_field_bytes(status, "VmHWM"), Some(200 << 20));
        assert_eq!(status_field_bytes(status, "VmRSS"), Some(100 << 20));
        assert_eq!(status_field_bytes(status, "VmSwap"), None);
    }

    #[test]
    fn machine_busy_fraction_leaves_idle_and_iowait_out() {
        let a = parse_machine_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        let b = parse_machine_cpu("cpu  200 0 200 800 200 0 0 0 0 0\n").unwrap();
        assert_eq!(
            a,
            MachineCpu {
                total: 1000,
                idle: 800
            }
        );
        assert!((a.busy_fraction_until(b) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn named_threads_cpu_is_counted_and_others_are_not() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (spun_tx, spun_rx) = std::sync::mpsc::channel::<()>();
        let burner = std::thread::Builder::new()
            .name("procfs-burn".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                spun_tx.send(()).unwrap();
                // Stay alive until read: exited threads are not counted.
                done_rx.recv().unwrap();
                x
            })
            .unwrap();
        spun_rx.recv().unwrap();
        let [burnt, none] = own_threads_cpu_ticks(["procfs-burn", "no-such-thread"]).unwrap();
        done_tx.send(()).unwrap();
        burner.join().unwrap();
        // 300 ms of spinning is 30 ticks at 100 Hz; allow a loaded machine
        // to have given the thread less than half of it.
        assert!(
            burnt * 1000 >= clock_ticks_per_second() * 100,
            "{burnt} ticks"
        );
        assert_eq!(none, 0);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(status_bytes(pid, "VmHWM").unwrap() > 0);
        process_cpu_ticks(pid).unwrap();
        assert!(clock_ticks_per_second() > 0);
    }
}
