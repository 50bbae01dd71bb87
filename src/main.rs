//! The `promshard` command: the CLI front door only.

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
    /// Validate prometheus.yml files.
    Config { files: Vec<std::path::PathBuf> },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(CheckCommand::Config { files }) => {
            for f in files {
                promshard_promlib::config::load_file(&f)?;
                println!(
                    "SUCCESS: {} is valid prometheus config file syntax",
                    f.display()
                );
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
    }
}
