//! Writing an analysis to an output folder: the Parquet tables, the figures and `report.json`.
//! Shared by `lineage batch`, `lineage merge` and the desktop app's export menu.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lineage_core::output::figures::{FigureInputs, FigureOptions, write_all_figures};
use lineage_core::output::report::Report;
use lineage_core::output::tables;
use lineage_core::pipeline::basins_over_time::BasinAnalysis;
use lineage_core::pipeline::sweep::BatchResult;

/// Writes the tables and `report.json` into `out` and, when the basins are known (not for a shard),
/// the standard figures into `out/figures`. Returns every file written.
pub fn write_outputs(
    out: &Path,
    result: &BatchResult,
    basins: Option<&BasinAnalysis>,
    report: &Report,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = write_tables(out, result, basins)?;
    let report_path = out.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("{}: cannot write", report_path.display()))?;
    written.push(report_path);
    if let Some(basins) = basins {
        written.extend(write_figures(&out.join("figures"), result, basins)?);
    }
    Ok(written)
}

/// Writes the Parquet tables (the basin tables only when `basins` is given) into `out`.
pub fn write_tables(out: &Path, result: &BatchResult, basins: Option<&BasinAnalysis>) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let mut frames = vec![
        ("checkpoints", tables::checkpoints_frame(&result.checkpoints)?),
        ("evals", tables::evals_frame(&result.evals)?),
        ("interpolation", tables::interpolation_frame(&result.interpolation)?),
        ("barriers", tables::barriers_frame(&result.barriers)?),
    ];
    if let Some(basins) = basins {
        frames.push(("clusters", tables::clusters_frame(&basins.clusters)?));
        frames.push(("timeline", tables::timeline_frame(&basins.timeline)?));
        frames.push(("tree_edges", tables::tree_edges_frame(&basins.tree_edges)?));
    }
    let mut written = Vec::new();
    for (name, mut frame) in frames {
        let path = out.join(format!("{name}.parquet"));
        tables::write_parquet(&path, &mut frame)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the standard figures (SVG and PNG) of an analysis into `dir`; runs are coloured in sorted
/// order, as in the desktop app.
pub fn write_figures(dir: &Path, result: &BatchResult, basins: &BasinAnalysis) -> anyhow::Result<Vec<PathBuf>> {
    let inputs = FigureInputs::from_analysis(result, basins, &[]);
    write_all_figures(dir, &inputs, &FigureOptions::default())
        .with_context(|| format!("{}: cannot write the figures", dir.display()))
}
