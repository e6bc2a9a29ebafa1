//! The representation and dynamics views of `lineage batch` (issue 8): options and output tables.

use std::path::Path;

use anyhow::Context;
use lineage_core::output::report::{Report, ViewsSummary};
use lineage_core::output::tables::{EvalRow, write_parquet};
use lineage_core::output::tables_representations;
use lineage_core::pipeline::plan::PairSets;
use lineage_core::pipeline::representations::{ViewOptions, ViewsResult, run_views};
use lineage_core::pipeline::sweep::EvaluatorFactory;
use lineage_core::progress::Progress;
use lineage_loaders::Zoo;

/// Flags of the views (flattened into `lineage batch`).
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// Hidden layer (0-based) for representation similarity and probes [default: the last hidden layer].
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,
    /// Skip the representation and dynamics views (similarity, probes, trajectories, code length, training map).
    #[arg(long)]
    pub no_views: bool,
    /// Skip the linear probes (one logistic regression per checkpoint).
    #[arg(long)]
    pub no_probes: bool,
}

impl ViewArgs {
    /// The view options, or None when skipped. `layer` and `views` may also come from a plan.
    pub fn options(
        &self,
        planned_layer: Option<usize>,
        planned_views: Option<bool>,
        pairs: PairSets,
        cache_dir: &Path,
    ) -> Option<ViewOptions> {
        if self.no_views || planned_views == Some(false) {
            return None;
        }
        let mut options = ViewOptions::all(pairs, cache_dir.to_path_buf());
        options.layer = self.layer.or(planned_layer);
        options.probes = !self.no_probes;
        Some(options)
    }
}

/// Computes the views (warnings go to stderr).
pub fn compute(
    zoo: &Zoo,
    data: &Path,
    options: &ViewOptions,
    evaluators: &EvaluatorFactory,
    evals: &[EvalRow],
    progress: &dyn Progress,
) -> anyhow::Result<ViewsResult> {
    let views = run_views(zoo, data, options, evaluators, evals, progress)?;
    for warning in &views.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(views)
}

/// Computes the views (as [`compute`]) and records their summary in `report`.
pub fn compute_into_report(
    zoo: &Zoo,
    data: &Path,
    options: &ViewOptions,
    evaluators: &EvaluatorFactory,
    evals: &[EvalRow],
    progress: &dyn Progress,
    report: &mut Report,
) -> anyhow::Result<ViewsResult> {
    let views = compute(zoo, data, options, evaluators, evals, progress)?;
    report.views = Some(ViewsSummary::new(options, &views));
    Ok(views)
}

/// Writes the views' tables to `out` ([`write_tables`]) and returns their summary line.
pub fn write(out: &Path, views: &ViewsResult) -> anyhow::Result<String> {
    write_tables(out, views)?;
    Ok(summary(views))
}

/// The summary line of the views.
pub fn summary(views: &ViewsResult) -> String {
    let layer = views.layer.map_or("-".to_string(), |l| l.to_string());
    format!(
        "views (layer {layer}): {} similarity rows, {} probes, {} trajectory points, {} runs with code lengths \
         ({} units computed, {} from cache)\n",
        views.similarity.len(),
        views.probes.len(),
        views.trajectories.len(),
        views
            .code_length
            .iter()
            .filter(|r| r.prequential_bits.is_some())
            .count(),
        views.computed,
        views.cached
    )
}

/// Writes the `similarity`, `probes`, `trajectories`, `weight_norms`, `code_length`,
/// `training_map` and `training_map_transitions` tables.
pub fn write_tables(out: &Path, views: &ViewsResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let frames = [
        (
            "similarity",
            tables_representations::similarity_frame(&views.similarity)?,
        ),
        ("probes", tables_representations::probes_frame(&views.probes)?),
        (
            "trajectories",
            tables_representations::trajectories_frame(&views.trajectories)?,
        ),
        (
            "weight_norms",
            tables_representations::weight_norms_frame(&views.weight_norms)?,
        ),
        (
            "code_length",
            tables_representations::code_length_frame(&views.code_length)?,
        ),
        (
            "training_map",
            tables_representations::training_map_frame(&views.training_map)?,
        ),
        (
            "training_map_transitions",
            tables_representations::map_transitions_frame(&views.map_transitions)?,
        ),
    ];
    for (name, mut frame) in frames {
        write_parquet(&out.join(format!("{name}.parquet")), &mut frame)?;
    }
    Ok(())
}
