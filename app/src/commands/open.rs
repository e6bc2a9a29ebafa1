//! `lineage` / `lineage open [DIR] [--data FILE]`: the desktop app.

use std::path::PathBuf;
use std::process::ExitCode;

use lineage_core::AnalysisOptions;

use crate::options::ComputeArgs;

/// Arguments of `lineage open`.
#[derive(Debug, Default, clap::Args)]
pub struct OpenArgs {
    /// Checkpoint folder to open (analysed at once when eval data is found next to it or given).
    pub dir: Option<PathBuf>,
    /// Eval data file [default: eval.safetensors / .npz / .parquet in DIR or its parent].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: &OpenArgs) -> anyhow::Result<ExitCode> {
    // An unusable device is an error here, before a window opens.
    let mut options = AnalysisOptions::default();
    if let Some(device) = &args.compute.device {
        options.device = device.clone();
    }
    if let Some(matmul) = args.compute.matmul {
        options.matmul = matmul;
    }
    lineage_core::models::transformer::device(&options.device)?;
    crate::gui::run(args.dir.clone(), args.data.clone(), options)?;
    Ok(ExitCode::SUCCESS)
}
