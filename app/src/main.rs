//! `lineage`: track loss-surface basins of neural networks over training.
//!
//! The desktop app by default (`lineage` / `lineage open DIR`); headless subcommands for batch work.

mod commands;
mod gui;
mod options;
mod summary;
mod terminal_progress;

use clap::{Parser, Subcommand};

/// An allocator that reuses the large temporary tensors' memory (forward passes allocate and free
/// many) instead of returning it to the system after every operation: on the transformer path
/// benchmark this is worth about a quarter of the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Track how training runs fall into loss-surface basins, checkpoint by checkpoint.
#[derive(Debug, Parser)]
#[command(name = "lineage", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open the desktop app, optionally on a checkpoint folder (the default without a subcommand).
    Open(commands::open::OpenArgs),
    /// Show the discovered runs x steps grid, formats, dtypes, parameter counts and problems.
    Inspect(commands::inspect::InspectArgs),
    /// Evaluate checkpoints and interpolation paths; write Parquet tables and report.json.
    Batch(Box<commands::batch::BatchArgs>),
    /// Train a small zoo on built-in data (UCI digits) and analyse it: works offline, in seconds.
    Demo(commands::demo::DemoArgs),
    /// Export the cluster timeline of a batch output folder to one Parquet file.
    Export(commands::export::ExportArgs),
    /// Combine the outputs of `lineage batch --shard K/N` runs into the tables of a single run.
    Merge(commands::merge::MergeArgs),
}

fn main() -> std::process::ExitCode {
    // SAFETY: nothing else runs yet.
    unsafe { lineage_core::runtime::configure_process() };
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Open(args)) => commands::open::run(&args),
        Some(Command::Inspect(args)) => commands::inspect::run(&args),
        Some(Command::Batch(args)) => commands::batch::run(&args),
        Some(Command::Demo(args)) => commands::demo::run(&args),
        Some(Command::Export(args)) => commands::export::run(&args),
        Some(Command::Merge(args)) => commands::merge::run(&args),
        None => commands::open::run(&commands::open::OpenArgs::default()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lineage: error: {}", describe(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: a cause the message above it already spells out (core's
/// errors name their source) is not repeated.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}
