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
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate prometheus.yml files.
    Config { files: Vec<std::path::PathBuf> },
    /// Lint an exposition read from stdin. Prints `line N: message` for
    /// each problem. Exit codes as promtool: 0 clean, 1 parse errors (the
    /// scrape would fail), 3 lint warnings only.
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
            for f in files {
                promshard_promlib::config::load_file(&f)?;
                println!("SUCCESS: {} is valid prometheus config file syntax", f.display());
            }
            Ok(())
        }
        Command::Check(CheckCommand::Metrics { format }) => check_metrics(format.as_deref()),
    }
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
    if problems.iter().any(|p| p.severity == Severity::Error) {
        std::process::exit(1);
    }
    if !problems.is_empty() {
        std::process::exit(3);
    }
    Ok(())
}
