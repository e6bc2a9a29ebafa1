//! `lineage export OUT --to FILE.parquet`: the cluster timeline of a batch output as one table.

use std::path::PathBuf;
use std::process::ExitCode;

use lineage_core::output::export::export_cluster_timeline;

/// Arguments of `lineage export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output folder of `lineage batch` (holds clusters.parquet and timeline.parquet).
    pub out: PathBuf,
    /// Parquet file to write: step, run, basin, basin_size, event, parent_basin.
    #[arg(long)]
    pub to: PathBuf,
}

/// Runs the command.
pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let rows = export_cluster_timeline(&args.out, &args.to)?;
    println!("{rows} rows (step x run) written to {}", args.to.display());
    Ok(ExitCode::SUCCESS)
}
