//! `lineage merge SHARD_OUT... --out OUT`: combine `lineage batch --shard K/N` outputs into the tables a
//! single run gives, then find the basins.

use std::path::PathBuf;
use std::process::ExitCode;

use lineage_core::basin_analysis::analyse_basins;
use lineage_core::batch::BatchOptions;
use lineage_core::merge::merge_shards;
use lineage_core::report::{BasinSummary, Report};

use super::batch::{BasinArgs, Plan, summary};
use crate::outputs::write_outputs;

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
}

/// Runs the command.
pub fn run(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let result = merge_shards(&args.shards)?;
    let basin_options = args.basins.options(&Plan::default())?;
    let basins = analyse_basins(&result, &basin_options)?;
    let first = read_report(&args.shards[0])?;
    let options: BatchOptions = serde_json::from_value(first["options"].clone())?;
    let options = BatchOptions { shard: None, ..options };
    let zoo = PathBuf::from(first["zoo"].as_str().unwrap_or_default());
    let data = PathBuf::from(first["data"].as_str().unwrap_or_default());
    let elapsed = started.elapsed();
    let report = Report::new(
        &zoo,
        &data,
        &options,
        &result,
        Some(BasinSummary::new(&basin_options, &basins)),
        elapsed,
    );
    write_outputs(&args.out, &result, Some(&basins), &report)?;
    print!("{}", summary(&result, Some(&basins), &args.out, elapsed));
    Ok(ExitCode::SUCCESS)
}

fn read_report(dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}
