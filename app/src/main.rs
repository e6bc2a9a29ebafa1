//! `lineage`: track loss-surface basins of neural networks over training.
//!
//! GUI by default; headless subcommands for batch work.

mod commands;

use clap::{Parser, Subcommand};

/// Track how training runs fall into loss-surface basins, checkpoint by checkpoint.
#[derive(Debug, Parser)]
#[command(name = "lineage", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the discovered runs x steps grid, formats, dtypes, parameter counts and problems.
    Inspect(commands::inspect::InspectArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inspect(args)) => commands::inspect::run(&args),
        None => {
            eprintln!("lineage: the desktop app is not built yet; try `lineage inspect DIR` (see --help)");
            Ok(std::process::ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lineage: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
