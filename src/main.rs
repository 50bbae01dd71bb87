//! The `promshard` command: the CLI front door only.

mod collector_cmd;
mod coordinator_cmd;
mod demo_cmd;
mod sidecar_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "promshard",
    version,
    about = "Horizontally sharded Prometheus scraping"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate configs or expositions, like promtool.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Run discovery and relabeling once; print the targets as Prometheus'
    /// `/api/v1/targets?state=any` JSON.
    Targets(TargetsArgs),
    /// A built-in fleet of fake targets, a verifying sink and a native
    /// collector on loopback, with a live status line.
    Demo(demo_cmd::DemoArgs),
    /// A standalone native shard: scrape the config's targets, write them to
    /// a WAL, remote-write them (a drop-in for Prometheus agent mode).
    Collector(collector_cmd::CollectorArgs),
    /// The coordinator: discovers targets, places them on the shards that
    /// attach to it, moves them without gaps.
    Coordinator(coordinator_cmd::CoordinatorArgs),
    /// The coordinator plus N native shards on this host (no Kubernetes
    /// needed).
    Local(coordinator_cmd::LocalArgs),
    /// The shard agent next to an unmodified Prometheus or vmagent: writes
    /// its config, serves its http_sd and proxies its scrapes.
    Sidecar(sidecar_cmd::SidecarArgs),
    /// Load-test parts: a fake target fleet and a checking remote-write sink.
    Loadtest(promshard_loadtest::cli::LoadtestArgs),
}

#[derive(clap::Args)]
struct TargetsArgs {
    /// The prometheus.yml to read.
    #[arg(long = "config.file")]
    config_file: std::path::PathBuf,
    /// Only this job.
    #[arg(long)]
    job: Option<String>,
}

/// `promshard targets`: failed targets go to stderr as Prometheus logs them
/// and appear in neither list.
fn run_targets(args: TargetsArgs) -> Result<()> {
    use promshard_promlib::api;
    // Discovery logs unreadable sd files (naming the file) on stderr.
    init_logging_at("warn");
    let cfg = promshard_promlib::config::load_file(&args.config_file)?;
    let (data, failures) = api::targets_once(&cfg, args.job.as_deref())?;
    for f in &failures {
        eprintln!(
            "level=error scrape_pool={} msg=\"Creating target failed\" err={:?}",
            f.job,
            f.to_string()
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&api::ApiResponse::success(data))?
    );
    Ok(())
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate prometheus.yml files (exit 1 if any is invalid).
    Config {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Lint an exposition read from stdin. Prints `line N: message` for
    /// each problem. Exit codes as promtool: 0 clean, 1 parse errors (the
    /// scrape would fail) or, for OpenMetrics, any break of an OpenMetrics
    /// 1.0 MUST rule (strict validation), 3 lint warnings only.
    Metrics {
        /// `text` or `openmetrics`; default: OpenMetrics when the body has
        /// a `# EOF` line, text otherwise.
        #[arg(long, value_parser = ["text", "openmetrics"])]
        format: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(CheckCommand::Config { files }) => {
            if !check_config(&files) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Targets(args) => {
            if let Err(e) = run_targets(args) {
                eprintln!("Error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check(CheckCommand::Metrics { format }) => check_metrics(format.as_deref()),
        Command::Demo(args) => {
            init_logging_at("warn");
            demo_cmd::run(args)
        }
        Command::Collector(args) => {
            init_logging();
            collector_cmd::run(args)
        }
        Command::Coordinator(args) => {
            init_logging();
            coordinator_cmd::run_coordinator(args)
        }
        Command::Local(args) => {
            init_logging();
            coordinator_cmd::run_local(args)
        }
        Command::Sidecar(args) => {
            init_logging();
            sidecar_cmd::run(args)
        }
        Command::Loadtest(args) => {
            init_logging();
            promshard_loadtest::cli::run(args)
        }
    }
}

/// `check config`: like `promtool check config`, one report per file;
/// errors go to stderr as `FILE:LINE:COL: message`. True if all are valid.
fn check_config(files: &[std::path::PathBuf]) -> bool {
    let mut all_ok = true;
    for f in files {
        println!("Checking {}", f.display());
        match promshard_promlib::config::load_file(f) {
            Ok(cfg) => {
                let n = cfg.scrape_configs.len();
                println!(
                    " SUCCESS: {} is valid prometheus config file syntax ({n} scrape config{} found)",
                    f.display(),
                    if n == 1 { "" } else { "s" }
                );
            }
            Err(e) => {
                all_ok = false;
                println!("  FAILED");
                eprintln!("{e}");
            }
        }
        println!();
    }
    all_ok
}

/// `promshard check metrics`: lint stdin, exit like `promtool check metrics`.
fn check_metrics(format: Option<&str>) -> Result<()> {
    use promshard_promlib::exposition::{Format, Severity, lint};
    use std::io::Read;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let format = match format {
        Some("openmetrics") => Format::OpenMetrics,
        Some(_) => Format::Text,
        None => {
            let has_eof = body.split(|&c| c == b'\n').any(|l| l == b"# EOF");
            if has_eof {
                Format::OpenMetrics
            } else {
                Format::Text
            }
        }
    };
    let problems = lint(&body, format);
    for p in &problems {
        println!("{p}");
    }
    // OpenMetrics bodies are checked strictly: a broken MUST rule of the
    // specification is an error, though Prometheus 2.42 would ingest it.
    if problems.iter().any(|p| p.severity >= Severity::Violation) {
        std::process::exit(1);
    }
    if !problems.is_empty() {
        std::process::exit(3);
    }
    Ok(())
}

/// Clap value parser for a Prometheus duration flag (`30s`, `1h30m`, `0s`).
fn prom_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<promshard_promlib::duration::Duration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

/// Logs to stderr; `RUST_LOG` overrides the level.
fn init_logging_at(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .try_init();
}

fn init_logging() {
    init_logging_at("info");
}
