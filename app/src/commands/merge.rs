//! `lineage merge SHARD_OUT... --out OUT`: combine `lineage batch --shard K/N` outputs into the tables a
//! single run gives, find the basins, and compute the representation and dynamics views of the whole
//! zoo (shards do not compute them) when the zoo and eval data the shards read are readable here.

use std::path::PathBuf;
use std::process::ExitCode;

use lineage_core::evaluator_on;
use lineage_core::models::transformer;
use lineage_core::output::report::{BasinSummary, Report};
use lineage_core::pipeline::basins_over_time::analyse_basins;
use lineage_core::pipeline::merge::merge_shards;
use lineage_core::pipeline::sweep::BatchOptions;
use lineage_loaders::discover;

use super::batch::{BasinArgs, Plan, summary};
use super::views::ViewArgs;
use crate::outputs::write_outputs;
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
    pub views: ViewArgs,
    /// Where the transformer families run for the views: cpu, cuda or cuda:N [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
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
    let mut report = Report::new(
        &zoo,
        &data,
        &options,
        &result,
        Some(BasinSummary::new(&basin_options, &basins)),
        elapsed,
    );
    let views = match args.views.options(None, None, options.pairs, &options.cache_dir) {
        Some(view_options) => {
            let listing = discover(&zoo);
            if listing.runs.is_empty() || !data.is_file() {
                eprintln!(
                    "warning: views skipped: the zoo {} or the eval data {} that the shards read is not readable here",
                    zoo.display(),
                    data.display()
                );
                None
            } else {
                let device = transformer::device(args.device.as_deref().unwrap_or("cpu"))?;
                Some(super::views::compute_into_report(
                    &listing,
                    &data,
                    &view_options,
                    &evaluator_on(device),
                    &result.evals,
                    &TerminalProgress::new(),
                    &mut report,
                )?)
            }
        }
        None => None,
    };
    write_outputs(&args.out, &result, Some(&basins), &report)?;
    let mut text = summary(&result, Some(&basins), &args.out, elapsed);
    if let Some(views) = &views {
        text += &super::views::write(&args.out, views)?;
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn read_report(dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}
