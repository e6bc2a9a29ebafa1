//! `lineage` / `lineage open [DIR] [--data FILE]`: the desktop app.

use std::path::PathBuf;
use std::process::ExitCode;

use lineage_core::AnalysisOptions;

/// Arguments of `lineage open`.
#[derive(Debug, Default, clap::Args)]
pub struct OpenArgs {
    /// Checkpoint folder to open (analysed at once when eval data is found next to it or given).
    pub dir: Option<PathBuf>,
    /// Eval data file [default: eval.safetensors / .npz / .parquet in DIR or its parent].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the transformer families run: cpu, cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`) [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
}

/// Runs the command.
pub fn run(args: &OpenArgs) -> anyhow::Result<ExitCode> {
    // An unusable device is an error here, before a window opens.
    let mut options = AnalysisOptions::default();
    if let Some(device) = &args.device {
        options.device = device.clone();
    }
    lineage_core::models::transformer::device(&options.device)?;
    crate::gui::run(args.dir.clone(), args.data.clone(), options)?;
    Ok(ExitCode::SUCCESS)
}
