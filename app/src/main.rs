//! `lineage`: track loss-surface basins of neural networks over training.
//!
//! GUI by default; headless subcommands for batch work.

mod commands;
mod terminal_progress;

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
    /// Evaluate checkpoints and interpolation paths; write Parquet tables and report.json.
    Batch(commands::batch::BatchArgs),
    /// Train a small zoo on built-in data (UCI digits) and analyse it: works offline, in seconds.
    Demo(commands::demo::DemoArgs),
    /// Export the cluster timeline of a batch output folder to one Parquet file.
    Export(commands::export::ExportArgs),
    /// Combine the outputs of `lineage batch --shard K/N` runs into the tables of a single run.
    Merge(commands::merge::MergeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inspect(args)) => commands::inspect::run(&args),
        Some(Command::Batch(args)) => commands::batch::run(&args),
        Some(Command::Demo(args)) => commands::demo::run(&args),
        Some(Command::Export(args)) => commands::export::run(&args),
        Some(Command::Merge(args)) => commands::merge::run(&args),
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
