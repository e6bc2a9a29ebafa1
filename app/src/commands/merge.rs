//! `lineage merge SHARD_OUT... --out OUT`: combine `lineage batch --shard K/N` outputs into the tables a
//! single run gives, find the basins, and compute the representation and dynamics views of the whole
//! zoo (shards do not compute them) when the zoo and eval data the shards read are readable here.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::options::{BasinArgs, ComputeArgs, Plan, RepresentationArgs, analysis_options};
use crate::summary::{print_warnings, summary};
use crate::terminal_progress::TerminalProgress;

/// Arguments of `lineage merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Output folders of the shards.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Folder for the merged tables, figures and report.json.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub basins: BasinArgs,
    #[command(flatten)]
    pub views: RepresentationArgs,
    /// Where and how the transformer families run for the views.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let options = analysis_options(&args.basins, &args.views, &args.compute, &Plan::default())?;
    let _claim = lineage_core::output::lock::OutputLock::claim(&args.out)?;
    let analysis = lineage_core::merge(&args.shards, &options, &TerminalProgress::new())?;
    analysis.write(&args.out)?;
    print_warnings(&analysis, None);
    print!("{}", summary(&analysis, &args.out));
    Ok(ExitCode::SUCCESS)
}
