//! The standard set of figures of a batch run, written into one folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::barrier_steps::barrier_vs_step;
use super::basin_tree::basin_tree;
use super::error::FigureError;
use super::generalization::generalization_by_basin;
use super::heatmap::barrier_heatmap_scaled;
use super::interpolation::interpolation_curves;
use super::training::training_curves;
use crate::methods::basins::BarrierMatrix;
use crate::methods::interpolation::BarrierKind;
use crate::names::Named;
use crate::output::tables::{BarrierRow, EvalRow, GeneralizationRow, InterpolationRow};
use crate::pipeline::basins_over_time::BasinsOverTime;
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::Sweep;

/// What [`write_all_figures`] draws from: the sweep's rows and the basins over time, as the
/// analysis computed them (leaf orders and colour scale included).
#[derive(Debug, Clone, Copy)]
pub struct FigureInputs<'a> {
    /// Run names in the order that fixes their colours (empty: sorted names from the evals and the
    /// history).
    pub runs: &'a [String],
    /// `evals` rows.
    pub evals: &'a [EvalRow],
    /// `interpolation` rows.
    pub interpolation: &'a [InterpolationRow],
    /// `barriers` rows.
    pub barriers: &'a [BarrierRow],
    /// Basins over time.
    pub basins: &'a BasinsOverTime,
    /// `generalization` rows (empty: no `generalization_by_basin` figure).
    pub generalization: &'a [GeneralizationRow],
}

impl<'a> FigureInputs<'a> {
    /// The inputs of a sweep and its basins; `runs` as in [`FigureInputs::runs`].
    pub fn new(sweep: &'a Sweep, basins: &'a BasinsOverTime, runs: &'a [String]) -> Self {
        Self {
            runs,
            evals: &sweep.evals,
            interpolation: &sweep.interpolation,
            barriers: &sweep.barriers,
            basins,
            generalization: &[],
        }
    }
}

/// Options of [`write_all_figures`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureOptions {
    /// Log-scale step axes; `None` decides automatically (log when the positive steps span at least
    /// two decades, see [`auto_log_x`]).
    pub log_x: Option<bool>,
    /// Steps of the heatmaps and interpolation figures; `None`: the first, middle and last step with
    /// a barrier matrix (or, without matrices, with interpolation rows).
    pub steps: Option<Vec<u64>>,
    /// Barrier definition of the heatmap titles and the barrier-vs-step figure (default: segment,
    /// the one the basins are clustered with by default).
    pub barrier_kind: BarrierKind,
    /// Pair kind of the interpolation figures (default: seed pairs).
    pub pair_kind: PairKind,
}

impl Default for FigureOptions {
    fn default() -> Self {
        Self {
            log_x: None,
            steps: None,
            barrier_kind: BarrierKind::Segment,
            pair_kind: PairKind::Seeds,
        }
    }
}

/// Whether steps are better shown on a log axis: the largest step is at least 100 times the smallest
/// positive one.
pub fn auto_log_x(steps: impl IntoIterator<Item = u64>) -> bool {
    let (mut min, mut max) = (u64::MAX, 0);
    for s in steps.into_iter().filter(|&s| s > 0) {
        min = min.min(s);
        max = max.max(s);
    }
    max > 0 && max / min >= 100
}

/// First, middle and last of sorted unique `steps` (fewer when there are fewer steps).
pub fn default_figure_steps(steps: &[u64]) -> Vec<u64> {
    let unique: Vec<u64> = steps.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let Some(&last) = unique.last() else { return Vec::new() };
    let chosen: BTreeSet<u64> = [unique[0], unique[(unique.len() - 1) / 2], last].into_iter().collect();
    chosen.into_iter().collect()
}

/// Writes the standard figures into `dir` (created if missing) and returns every file written:
///
/// - `basin_tree.{svg,png}`: [`basin_tree()`];
/// - `barrier_heatmap_step<N>.{svg,png}` per chosen step: [`barrier_heatmap_scaled`] in average-linkage
///   leaf order, with one colour scale (0 to the largest barrier of all steps) so steps compare by
///   colour (a chosen step without a matrix gives a "no data" heatmap);
/// - `interpolation_step<N>.{svg,png}` per chosen step: [`interpolation_curves`] of `pair_kind`;
/// - `barrier_vs_step.{svg,png}`: [`barrier_vs_step`] of `barrier_kind`;
/// - `training_curves.{svg,png}`: [`training_curves`];
/// - `generalization_by_basin.{svg,png}` when there are generalization rows: [`generalization_by_basin`].
///
/// Figures with empty inputs say "no data" (see the module documentation), so the fixed-name files
/// always exist; the per-step files exist for each chosen step (none when no step has data).
/// `lineage batch` passes `OUT/figures`.
pub fn write_all_figures(
    dir: &Path,
    inputs: &FigureInputs,
    options: &FigureOptions,
) -> Result<Vec<PathBuf>, FigureError> {
    std::fs::create_dir_all(dir).map_err(|e| FigureError::io(dir, e))?;
    let runs = run_order(inputs);
    let all_steps: Vec<u64> = inputs
        .evals
        .iter()
        .map(|e| e.step)
        .chain(inputs.barriers.iter().map(|b| b.step))
        .chain(inputs.basins.history.steps.iter().map(|s| s.step))
        .collect();
    let log_x = options.log_x.unwrap_or_else(|| auto_log_x(all_steps.iter().copied()));
    let steps = match &options.steps {
        Some(s) => s.clone(),
        None => {
            let matrix_steps = inputs.basins.steps();
            if matrix_steps.is_empty() {
                let interp: Vec<u64> = inputs
                    .interpolation
                    .iter()
                    .filter(|r| r.pair == options.pair_kind)
                    .map(|r| r.step)
                    .collect();
                default_figure_steps(&interp)
            } else {
                default_figure_steps(&matrix_steps)
            }
        }
    };

    let basins = inputs.basins;
    let mut written = basin_tree(
        &basins.tree,
        &basins.history,
        &runs,
        &basins.diverged,
        &basins.uncertain,
        log_x,
        &dir.join("basin_tree"),
    )?;
    let title = format!("Seed-pair loss barrier ({} barrier)", options.barrier_kind.name());
    for &step in &steps {
        // A chosen step without a matrix gives a "no data" heatmap.
        let empty = BarrierMatrix {
            step,
            runs: Vec::new(),
            values: Vec::new(),
        };
        let (matrix, order) = basins.at(step).unwrap_or((&empty, &[]));
        let stem = dir.join(format!("barrier_heatmap_step{step}"));
        let co_membership = basins.co_membership_at(step);
        written.extend(barrier_heatmap_scaled(
            matrix,
            order,
            &title,
            basins.colour_max,
            co_membership,
            &stem,
        )?);
    }
    for &step in &steps {
        let stem = dir.join(format!("interpolation_step{step}"));
        written.extend(interpolation_curves(
            inputs.interpolation,
            step,
            options.pair_kind,
            &stem,
        )?);
    }
    written.extend(barrier_vs_step(
        inputs.barriers,
        options.barrier_kind,
        log_x,
        &dir.join("barrier_vs_step"),
    )?);
    written.extend(training_curves(
        inputs.evals,
        &runs,
        log_x,
        &dir.join("training_curves"),
    )?);
    if !inputs.generalization.is_empty() {
        let mut sets: Vec<&str> = Vec::new();
        for r in inputs.generalization {
            if !sets.contains(&r.set.as_str()) {
                sets.push(&r.set);
            }
        }
        written.extend(generalization_by_basin(
            inputs.generalization,
            &basins.layout.lanes,
            &sets,
            log_x,
            &dir.join("generalization_by_basin"),
        )?);
    }
    Ok(written)
}

/// The caller's run order, or the sorted runs of the evals and the history.
fn run_order(inputs: &FigureInputs) -> Vec<String> {
    if !inputs.runs.is_empty() {
        return inputs.runs.to_vec();
    }
    let mut runs: BTreeSet<String> = inputs.evals.iter().map(|e| e.run.clone()).collect();
    for s in &inputs.basins.history.steps {
        for b in &s.basins {
            runs.extend(b.members.iter().cloned());
        }
    }
    runs.into_iter().collect()
}
