//! The scrapers compared, and the command line each runs with.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scraper the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ContenderKind {
    /// `promshard collector`.
    Promshard,
    /// VictoriaMetrics' `vmagent`.
    Vmagent,
    /// `prometheus --enable-feature=agent`.
    Prometheus,
}

impl ContenderKind {
    /// Every contender, in the order they run.
    pub const ALL: [ContenderKind; 3] = [
        ContenderKind::Promshard,
        ContenderKind::Vmagent,
        ContenderKind::Prometheus,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ContenderKind::Promshard => "promshard",
            ContenderKind::Vmagent => "vmagent",
            ContenderKind::Prometheus => "prometheus",
        }
    }
}

/// Where each contender's binary is.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `promshard` binary (run as `promshard collector`).
    pub promshard: PathBuf,
    /// `vmagent`.
    pub vmagent: PathBuf,
    /// `prometheus`.
    pub prometheus: PathBuf,
}

impl Binaries {
    /// The Debian packages' paths, and `promshard` as given.
    pub fn with_promshard(promshard: PathBuf) -> Binaries {
        Binaries {
            promshard,
            vmagent: PathBuf::from("/usr/bin/vmagent"),
            prometheus: PathBuf::from("/usr/bin/prometheus"),
        }
    }

    /// The binary of `kind`.
    pub fn of(&self, kind: ContenderKind) -> &Path {
        match kind {
            ContenderKind::Promshard => &self.promshard,
            ContenderKind::Vmagent => &self.vmagent,
            ContenderKind::Prometheus => &self.prometheus,
        }
    }
}

/// What one contender run is given.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The binary.
    pub binary: &'a Path,
    /// prometheus.yml: the scrape job and a `remote_write` to the sink.
    pub config: &'a Path,
    /// An empty directory for the contender's WAL or buffer.
    pub data_dir: &'a Path,
    /// The sink's write URL (vmagent takes it as a flag).
    pub write_url: &'a str,
    /// `127.0.0.1:PORT` for the contender's own HTTP listener.
    pub listen: &'a str,
}

/// The command that runs `kind` (stdout and stderr not yet redirected).
///
/// All three read the same prometheus.yml. vmagent ignores its
/// `remote_write` section (and would refuse it without
/// `-promscrape.config.strictParse=false`), so it gets the same URL as a
/// flag; every other setting is each scraper's default, stale markers
/// included, since the others cannot switch theirs off.
pub fn command(kind: ContenderKind, launch: &Launch<'_>) -> Command {
    let mut cmd = Command::new(launch.binary);
    match kind {
        ContenderKind::Promshard => {
            cmd.arg("collector")
                .arg(format!("--config.file={}", launch.config.display()))
                .arg(format!("--storage.path={}", launch.data_dir.display()))
                .arg(format!("--web.listen-address={}", launch.listen));
        }
        ContenderKind::Vmagent => {
            cmd.arg(format!("-promscrape.config={}", launch.config.display()))
                .arg("-promscrape.config.strictParse=false")
                .arg(format!("-remoteWrite.url={}", launch.write_url))
                .arg(format!(
                    "-remoteWrite.tmpDataPath={}",
                    launch.data_dir.display()
                ))
                .arg(format!("-httpListenAddr={}", launch.listen));
        }
        ContenderKind::Prometheus => {
            cmd.arg("--enable-feature=agent")
                .arg(format!("--config.file={}", launch.config.display()))
                .arg(format!(
                    "--storage.agent.path={}",
                    launch.data_dir.display()
                ))
                .arg(format!("--web.listen-address={}", launch.listen));
        }
    }
    cmd
}

/// `cmd` as one shell-like line, for the report.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contender_reads_the_one_config_and_its_own_dir() {
        let launch = Launch {
            binary: Path::new("/bin/x"),
            config: Path::new("/tmp/p.yml"),
            data_dir: Path::new("/tmp/d"),
            write_url: "http://127.0.0.1:9/api/v1/write",
            listen: "127.0.0.1:8",
        };
        for kind in ContenderKind::ALL {
            let line = command_line(&command(kind, &launch));
            assert!(line.starts_with("/bin/x "), "{line}");
            assert!(line.contains("/tmp/p.yml"), "{line}");
            assert!(line.contains("/tmp/d"), "{line}");
            assert!(line.contains("127.0.0.1:8"), "{line}");
        }
        let vm = command_line(&command(ContenderKind::Vmagent, &launch));
        assert!(vm.contains("-remoteWrite.url=http://127.0.0.1:9/api/v1/write"));
        let ps = command_line(&command(ContenderKind::Promshard, &launch));
        assert!(ps.starts_with("/bin/x collector "), "{ps}");
    }
}
