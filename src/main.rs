//! The `promshard` command: the CLI front door only.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "promshard", version, about = "Horizontally sharded Prometheus scraping")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate configs or expositions, like promtool.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Load-test parts: a fake target fleet and a checking remote-write sink.
    Loadtest(promshard_loadtest::cli::LoadtestArgs),
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
                println!("SUCCESS: {} is valid prometheus config file syntax", f.display());
            }
            Ok(())
        }
        Command::Loadtest(args) => promshard_loadtest::cli::run(args),
    }
}
